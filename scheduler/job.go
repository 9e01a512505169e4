package scheduler

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
)

// Priority orders jobs within a class. The zero value is PriorityNormal.
type Priority int8

const (
	PriorityLow    Priority = -1
	PriorityNormal Priority = 0
	PriorityHigh   Priority = 1
)

func (p Priority) String() string {
	switch p {
	case PriorityLow:
		return "low"
	case PriorityNormal:
		return "normal"
	case PriorityHigh:
		return "high"
	}
	return "priority(" + strconv.Itoa(int(p)) + ")"
}

// ParsePriority parses "high", "normal" (or "") and "low".
func ParsePriority(s string) (Priority, bool) {
	switch s {
	case "high":
		return PriorityHigh, true
	case "normal", "":
		return PriorityNormal, true
	case "low":
		return PriorityLow, true
	}
	return 0, false
}

// A Job is one request to run on some key of a model class.
type Job struct {
	// Class is the model class ("text", "image", ...); it must be configured.
	Class string
	// Priority orders the job within its class; the zero value is normal.
	Priority Priority
	// Tokens is the estimated input tokens of the request, checked against
	// the lanes' TPM. 0 means unknown (counted as 0). With a store that
	// shares TPM with other processes (store.Redis), it is what the
	// grants' token budgets are made of: estimate on the high side (see
	// Lease.ReportTokens).
	Tokens int
	// Name is an optional label for events and logs.
	Name string
	// Work makes the request with the key the lease names. Its error is
	// classified (Config.Classifier); nil means success. ctx is cancelled
	// when the job's context ends or the scheduler stops.
	Work func(ctx context.Context, l Lease) error
}

// A Lease is the right to send one request on one lane: the key to use, its
// project and class. It is valid only during the Work call that received it.
type Lease struct {
	Class   string
	KeyID   string
	Project string
	// Attempt counts the tries of this job, from 1.
	Attempt int
	// Slot is the time this request counts from in its lane's 60 s window
	// when the work starts: when the dispatcher stamped it, plus the
	// class's WindowMargin. The margin's first half is for the time until
	// the request is written (handed to the network), its second half for
	// the time from the write until the API has it: the request should be
	// written before Slot minus half the margin and reach the API within
	// half the margin after its write. One written later must say so with
	// Wrote (package gemini does), which moves its slot later, else it may
	// meet a per-minute 429. Slot itself is not updated by Wrote.
	Slot time.Time

	st *leaseState // nil in a Lease not made by a Scheduler
}

// leaseState is what a Lease's methods share with the worker that runs it.
type leaseState struct {
	tokens atomic.Int64 // actual tokens reported by the work; -1 when none
	// slot is where the lease's window slot is, in Unix nanoseconds: Slot,
	// or later after Wrote. Read without the lock: a write within the
	// margin costs one atomic load.
	slot   atomic.Int64
	margin int64 // half the class's WindowMargin (bucket.Class.WriteMargin), in nanoseconds

	mu    sync.Mutex
	done  bool // the work returned: Wrote does nothing
	r     *runner
	lease bucket.Lease
}

// ReportTokens records the actual input tokens the request used (from the
// answer's usage metadata), so the lane's TPM accounting is reconciled.
// With a store that shares TPM (store.Redis), a count above the job's
// Tokens is added to the shared TPM window at this process's next grant of
// the lane or heartbeat (store.Redis.Overran); a count below gives nothing
// back there.
func (l Lease) ReportTokens(n int) {
	if l.st != nil && n >= 0 {
		l.st.tokens.Store(int64(n))
	}
}

// Wrote reports that the lease's request was written at at (the time its
// last byte was handed to the network: package gemini reports the end of
// each write of the request's bytes to its connection, see gemini.Client).
// When at plus half the class's
// WindowMargin (bucket.Class.WriteMargin) is later than the lease's slot
// (Slot, or where an earlier Wrote moved it), the slot moves there, in this
// process's lane window and in a shared store's (store.Redis.Restamped: a
// lock, or one Redis round trip, synchronous, bounded to 2 s), so the
// request counts from when it can reach the API, not from its dispatch. A
// write within the first half of the margin after the dispatch costs one
// atomic load and changes nothing. Several calls keep the latest time (a
// request written again, e.g. on a new connection). A write more than 60 s after the stamp, when
// the slot has left the window, counts the slot again from then (the
// window bound may not hold for that request: other requests may have used
// its slot meanwhile). A call after the work returned, or on a Lease not
// made by a Scheduler (the zero value), does nothing. Safe for concurrent
// use.
func (l Lease) Wrote(at time.Time) {
	st := l.st
	if st == nil {
		return
	}
	n := at.UnixNano() + st.margin
	if n <= st.slot.Load() {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done || n <= st.slot.Load() {
		return
	}
	from := time.Unix(0, st.slot.Load())
	// Where the slot is now: moved to at plus the write margin, or already
	// later than that in the lane's window.
	if to, _ := st.r.s.ledger.restamp(st.r.class, st.lease, from, at); to.UnixNano() > st.slot.Load() {
		st.slot.Store(to.UnixNano())
	}
}

// MovesSlot reports whether Wrote(at) would move the lease's slot now: at
// plus half the class's WindowMargin is later than where the slot is. It
// moves nothing and costs one atomic load, no lock and no round trip, so a
// caller can check every write of a request and call Wrote, which may wait
// for a shared store (up to 2 s), only when it would act, e.g. from another
// goroutine than the one writing. It does not check whether the work has
// returned (Wrote then does nothing). False on a Lease not made by a
// Scheduler. Safe for concurrent use.
func (l Lease) MovesSlot(at time.Time) bool {
	st := l.st
	return st != nil && at.UnixNano()+st.margin > st.slot.Load()
}

// end marks the work returned: Wrote does nothing from then on.
func (st *leaseState) end() {
	st.mu.Lock()
	st.done = true
	st.mu.Unlock()
}

// State is the life-cycle stage of a submitted job.
type State int32

const (
	StateQueued State = iota
	StateRunning
	StateDone
	StateFailed
	StateCanceled
)

func (s State) String() string {
	switch s {
	case StateQueued:
		return "queued"
	case StateRunning:
		return "running"
	case StateDone:
		return "done"
	case StateFailed:
		return "failed"
	case StateCanceled:
		return "canceled"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Final reports whether s is an end state.
func (s State) Final() bool { return s >= StateDone }

// EventKind names what an Event reports.
type EventKind int

const (
	// EventDispatched: a job was handed to a worker with a lease.
	EventDispatched EventKind = iota
	// EventFinished: one attempt of a job ended; Err holds its classified
	// outcome (nil on success), Final whether the job ended with it.
	EventFinished
	// EventLaneCooled: a lane cools down until Until after a rate limit.
	EventLaneCooled
	// EventLaneExhausted: a lane is out for the day, until Until.
	EventLaneExhausted
	// EventKeyDisabled: a key was disabled on every class (Reason says why).
	EventKeyDisabled
	// EventRetry: a job goes back to its queue; Until is when it may run again.
	EventRetry
	// EventLaneStopped: a lane serves nothing until an operator resumes it
	// or the class's configuration changes (Reason says why, e.g.
	// ReasonNoQuota).
	EventLaneStopped
	// EventWaiting: the class's queued jobs wait for quota for at least
	// WaitReportAfter, or the kind of their wait changed; Reason words it
	// (see Wait), Until is the estimated start.
	EventWaiting
	// EventResumed: a job of the class started after a reported wait;
	// Waited is how long the wait lasted, Reason its kind.
	EventResumed
)

func (k EventKind) String() string {
	switch k {
	case EventDispatched:
		return "dispatched"
	case EventFinished:
		return "finished"
	case EventLaneCooled:
		return "lane_cooled"
	case EventLaneExhausted:
		return "lane_exhausted"
	case EventKeyDisabled:
		return "key_disabled"
	case EventRetry:
		return "retry"
	case EventLaneStopped:
		return "lane_stopped"
	case EventWaiting:
		return "waiting"
	case EventResumed:
		return "resumed"
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// An Event is what the scheduler reports to its Observer. Fields that do not
// apply to a kind are zero. It never carries a secret: keys appear by id.
type Event struct {
	Kind     EventKind
	Time     time.Time
	Class    string
	JobID    uint64
	JobName  string
	Priority Priority
	KeyID    string
	Project  string
	Attempt  int
	// Outcome is "ok", "rate_limited", "key", "transient", "permanent",
	// "canceled" or "not_sent" for EventFinished.
	Outcome string
	Scope   Scope
	Err     error
	Final   bool
	Until   time.Time
	Reason  string
	// Waited is, for EventDispatched, the time the job spent queued since it
	// was (re)queued; Latency, for EventFinished, how long the work ran.
	Waited  time.Duration
	Latency time.Duration
}

// An Observer receives the scheduler's events, synchronously: it must be
// quick and must not call back into the scheduler. Safe implementations log
// or update metrics.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

func (f ObserverFunc) Observe(e Event) { f(e) }
