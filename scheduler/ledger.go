package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// ledger is the quota ledger of a Scheduler: the one place where the lanes'
// pure state (package bucket) meets their durable records (package store).
// The dispatchers only ask it for capacity and report outcomes:
//
//   - acquire: a lease on a ready lane of a class, or when to ask again;
//   - commit: make the lease's reservation durable (write-ahead) and stamp
//     its window slot, as late as possible before the request leaves;
//     abandon: give back a lease that will not be sent;
//   - sent, notSent: the request left (tokens reconciled) or never did
//     (window slot and day unit come back);
//   - coolUntil: when a lane that got a per-minute 429 may serve again;
//   - settle: at a clean stop, give back the reserved day units not used and
//     store every lane's exact window log;
//   - restore: at start, the day counts and the windows of the last 60 s,
//     exact after a clean stop and rebuilt on the safe side after a crash.
//
// Durable records go through store.Ledger when the Store implements it (Bolt
// and Memory do): Reserve for each write-ahead record, Settle at a clean
// stop, LedgerRecords at start. A shared store (Redis grants, as in
// Doorman) plugs in there: its Reserve is the grant of Units day units for
// Covers requests until Until, recorded in the shared window as sent at
// Until plus the margin (with TPM, also the record's token budget,
// Lease.Budget, in a shared token window; sent reports actual counts above
// the estimates to it: shared_tokens.go), and told of each lease stamped
// (stamper) it gives a grant's unused slots back once the grant is over;
// Settle gives back what was not used. store.Redis serves a fast lane's
// records from grants it takes ahead in the background, transparently:
// Reserve still returns once the record is granted and durable, and a
// process killed over-counts the shared day by at most two grants per fast
// lane (the one in use and the one taken ahead). A Store that is
// not a Ledger gets AddDaily for each chunk and nothing else: no window
// across restarts and no units given back.
//
// The bound after a crash: a record covers Covers requests stamped between
// its At and the earlier of its Until (At + its life: bucket.ChunkLife, 2 s,
// on a fast lane, up to bucket.MaxChunkLife, 30 s, on a slow one; see
// bucket.RecordLife) and the lane's next record; restore counts them all at
// that latest moment plus the class's WindowMargin (at start time for the
// newest record, when it is earlier), and, with TPM set, the newest record
// as the class's whole TPM. So the rebuilt window never holds less than the
// true one, and a lane is back at full rate 60 s plus WindowMargin after the
// earlier of its last record's Until and the restart: at most 60 s plus
// the margin plus 30 s after its last record on a slow lane
// (TestSlowLaneKilled), 2 s on a fast one.
//
// Pacific midnight: the API counts a request on the day it arrives. Acquire
// holds a lane in its day's last WindowMargin, so a request stamped at once
// counts on one day; one whose slot still moves past midnight (a late stamp
// after a slow record, a late write: Lease.Wrote) is charged on both days
// (bucket.Class.CrossDay): its unit of the old day stays, and one unit of
// the new day is added to the store's count of that day (AddDaily; for a
// dayCharger, store.Redis.ChargeDay, also the shared day count), which a
// restart before midnight restores as the new day's start. A request still
// in flight at midnight (its write not reported yet) holds one unit of the
// new day until its work returns (landed): runMidnights charges and records
// them (preCharge; a dayCharger's shared count too) at the start of the
// day's last margin, before midnight, so every process counts them; one not
// charged so holds a provisional unit in memory from its lane's roll on.
// Its write crossing midnight confirms the unit; landed in time, it is left
// to the lane's next request (a provisional one is given back).
//
// A ledger is safe for concurrent use: its state lives in the bucket classes
// (one lock each) and the store.
type ledger struct {
	store   store.Store
	durable store.Ledger // nil when the store is not a Ledger
	margin  map[string]time.Duration
	tpm     map[string]int
	// shared: Reserve's count is the lane's day count of all the processes
	// sharing it (a sharedDays store), which daily protection counts.
	shared bool
	// stamps is the store told of every lease stamped (store.Redis): it
	// gives a grant's unused window slots back once the grant is over.
	stamps stamper
	// restamps is the store told of every slot moved later (store.Redis).
	restamps restamper
	// upTo is the durable store when it may grant a record fewer Covers, or
	// some of them scheduled for later (store.Redis.ReserveUpTo).
	upTo upToLedger
	// fit is the durable store when it may also grant a record a smaller
	// token budget, for fewer Covers (store.Redis.ReserveFit).
	fit fitLedger
	// days is the store when it shares the day counts (store.Redis): a
	// unit charged on the next Pacific day goes to its shared count too.
	days dayCharger
	log  zerolog.Logger // a day charge that could not be recorded
	// unrecorded holds the next day's units crossDay could not record
	// (the store's own write failed: a bbolt error), retried before each
	// record and at settle; nUnrec is its length, read without the lock
	// on the hot path.
	unrecMu    sync.Mutex
	unrecorded []dayUnit
	nUnrec     atomic.Int32
}

// dayUnit is n units of a lane's day that the ledger charged in memory
// (crossDay, preCharge) and the store has not recorded yet.
type dayUnit struct {
	c    *bucket.Class
	lane store.LaneID
	day  string
	n    int
}

// dayCharger is a shared store that adds units to a lane's day count of all
// the processes sharing it, and to its own durable count, at once
// (store.Redis.ChargeDay): it returns the shared count after.
type dayCharger interface {
	ChargeDay(ctx context.Context, day string, lane store.LaneID, n int) (int, error)
}

// fitLedger is an upToLedger whose grant may also take, for a class with
// TPM, the part of the record's token budget that fits in the shared token
// window (at least its first request's tokens) for as many of its Covers
// as that part holds, rather than refusing it whole (store.Redis).
type fitLedger interface {
	ReserveFit(ctx context.Context, r store.Record, first int64) (store.Fit, error)
}

// upToLedger is a Ledger whose Reserve may grant less than the record's
// Covers now when that is all the room left, and the rest, or part of it,
// as a schedule of times before which they are not sent (store.Redis).
type upToLedger interface {
	ReserveUpTo(ctx context.Context, r store.Record) (count, covers int, schedule []time.Time, err error)
}

// stamper is a shared store that settles its grants from the leases
// stamped under them (store.Redis.Stamped). Its precondition, that a lane's
// leases are stamped in the order they are taken, each after its record,
// holds: one dispatcher per class acquires, commits and stamps each lease
// before its next acquire.
type stamper interface {
	Stamped(lane store.LaneID, at time.Time)
}

// restamper is a shared store told of a stamped lease whose request was
// written late (store.Redis.Restamped): its slot, at from, now counts from
// to, later, and so do its estimated tokens on a lane with TPM.
type restamper interface {
	Restamped(lane store.LaneID, from, to time.Time, tokens int64)
}

func newLedger(st store.Store, classes []ClassConfig) *ledger {
	l := &ledger{store: st, margin: make(map[string]time.Duration), tpm: make(map[string]int)}
	l.durable, _ = st.(store.Ledger)
	_, l.shared = st.(sharedDays)
	l.stamps, _ = st.(stamper)
	l.restamps, _ = st.(restamper)
	l.upTo, _ = st.(upToLedger)
	l.fit, _ = st.(fitLedger)
	l.days, _ = st.(dayCharger)
	l.log = zerolog.Nop()
	for _, c := range classes {
		l.margin[c.Name] = c.WindowMargin
		l.tpm[c.Name] = c.Limits.TPM
	}
	return l
}

// acquire takes capacity for one request of tokens on c, with demand jobs
// waiting for it, this one included (see bucket.Class.AcquireFor).
func (l *ledger) acquire(c *bucket.Class, now time.Time, tokens, demand int) (bucket.Lease, bool, time.Time) {
	return c.AcquireFor(now, tokens, demand)
}

// demandLocked is how many jobs wait in r's queues, the one being
// dispatched included: a slow lane's record covers no more
// (bucket.Class.AcquireFor). Call it with r.mu held.
func (r *runner) demandLocked() int {
	n := 0
	for i := range r.queues {
		n += r.queues[i].live
	}
	return n
}

// commit records the lease's reservation durably when it asks for one, then
// stamps its window slot at the current time (telling a stamper store); it
// returns the time the slot counts from. When recording fails the lease is
// given back and the error returned.
func (l *ledger) commit(ctx context.Context, c *bucket.Class, lease bucket.Lease, now time.Time) (time.Time, error) {
	if lease.Record {
		l.retryDays(ctx, now)
		lane := store.LaneID{Project: lease.Project, Class: lease.Class}
		var err error
		switch {
		case l.durable != nil:
			rec := store.Record{Lane: lane, Day: lease.Day, Units: lease.Chunk,
				Covers: lease.Covers, At: now, Until: lease.Until(), PrevTokens: lease.PrevTokens, Tokens: lease.Budget, PrevUnused: lease.PrevUnused}
			var n int
			if l.fit != nil && lease.Budget > 0 {
				// The same, and a token budget that does not fit
				// whole takes the part that does, for fewer Covers:
				// the lane spends no more than granted.
				var f store.Fit
				f, err = l.fit.ReserveFit(ctx, rec, int64(max(lease.Tokens, 0)))
				n = f.Count
				if err == nil {
					if f.Covers < lease.Covers || len(f.Schedule) > 0 {
						c.Scheduled(lease, f.Covers, f.Schedule)
					}
					c.Budgeted(lease, f.Tokens)
				}
			} else if l.upTo != nil {
				// A shared window with room for this request but not for
				// the lease's Covers grants the others as its slots free
				// (or fewer): the lane takes them no earlier (or records
				// again sooner). The dispatcher acquires the lane's next
				// lease after this returns.
				var covers int
				var sched []time.Time
				n, covers, sched, err = l.upTo.ReserveUpTo(ctx, rec)
				if err == nil && (covers < lease.Covers || len(sched) > 0) {
					c.Scheduled(lease, covers, sched)
				}
			} else {
				n, err = l.durable.Reserve(ctx, rec)
			}
			if err == nil && l.shared {
				c.SharedDayOf(lease, lease.Day, n, now)
			}
		case lease.Chunk > 0:
			_, err = l.store.AddDaily(ctx, lease.Day, lane, lease.Chunk)
		}
		if err != nil {
			l.abandon(c, lease, now)
			return time.Time{}, err
		}
	}
	slot := c.Stamp(lease, time.Now())
	if l.stamps != nil {
		l.stamps.Stamped(store.LaneID{Project: lease.Project, Class: lease.Class}, slot)
	}
	// The acquisition's slot was before the day's end (Acquire holds a
	// lane in its day's last margin): a stamp after a slow record may
	// still move it past midnight.
	l.crossDay(ctx, c, lease, time.Time{}, slot, now)
	return slot, nil
}

// crossDay charges the lease on the next Pacific day when its slot moved
// from from to to across its day's end (bucket.Class.CrossDay), and records
// that unit: in a dayCharger's shared and own counts (the lane's shared
// count of that day then known to daily protection), else with AddDaily.
// A unit the store's own write did not take (a bbolt error) stays charged
// in memory and is written again before the next record and at settle
// (retryDays), so a restart after that finds it; a dayCharger that has it
// in its own store but could not reach the cluster adds it there itself
// (store.Redis.ChargeDay). Either is logged.
func (l *ledger) crossDay(ctx context.Context, c *bucket.Class, lease bucket.Lease, from, to, now time.Time) {
	day, ok := c.CrossDay(lease, from, to)
	if !ok {
		return
	}
	l.record(ctx, dayUnit{c: c, lane: store.LaneID{Project: lease.Project, Class: lease.Class}, day: day, n: 1}, now)
}

// record writes u (recordDay), keeping it for retryDays when the store's
// own write failed; failures are logged.
func (l *ledger) record(ctx context.Context, u dayUnit, now time.Time) {
	err := l.recordDay(ctx, u, now)
	switch {
	case err == nil:
	case l.days != nil && errors.Is(err, store.ErrUnavailable):
		l.log.Warn().Err(err).Str("class", u.lane.Class).Str("project", u.lane.Project).Str("day", u.day).Int("units", u.n).
			Msg("next day's units of requests in flight across midnight are in this process's data directory; the cluster's count gets them when Redis answers again")
	case errors.Is(err, store.ErrInvalid):
		l.log.Error().Err(err).Str("class", u.lane.Class).Str("project", u.lane.Project).Str("day", u.day).Int("units", u.n).
			Msg("recording next day's units of requests in flight across midnight failed; they stay counted in memory")
	default:
		l.unrecMu.Lock()
		l.unrecorded = append(l.unrecorded, u)
		l.nUnrec.Store(int32(len(l.unrecorded)))
		l.unrecMu.Unlock()
		l.log.Error().Err(err).Str("class", u.lane.Class).Str("project", u.lane.Project).Str("day", u.day).Int("units", u.n).
			Msg("recording next day's units of requests in flight across midnight failed; they stay counted in memory and are written again before the next record")
	}
}

// preCharge charges the next day one unit per request of c still in flight
// at now, in its lanes' day's last margin (bucket.Class.PreCharge), in
// memory only: the units it returns are recorded by recordAll.
func (l *ledger) preCharge(c *bucket.Class, now time.Time) []dayUnit {
	var out []dayUnit
	for _, du := range c.PreCharge(now) {
		out = append(out, dayUnit{c: c, lane: store.LaneID{Project: du.Project, Class: c.Name()}, day: du.Day, n: du.Units})
	}
	return out
}

// recordAll records the pre-charged units, the shared store's count
// included, each lane's on its own goroutine, and returns when all are
// recorded: a slow round trip for one lane (up to ChargeDay's 5 s) does
// not hold another lane's units back past midnight, when the other
// processes' grants of the new day must already count them.
func (l *ledger) recordAll(ctx context.Context, units []dayUnit, now time.Time) {
	if len(units) == 1 {
		l.record(ctx, units[0], now)
		return
	}
	var wg sync.WaitGroup
	for _, u := range units {
		wg.Go(func() { l.record(ctx, u, now) })
	}
	wg.Wait()
}

// classList is the scheduler's classes, in configuration order.
func (s *Scheduler) classList() []*bucket.Class {
	out := make([]*bucket.Class, len(s.order))
	for i, r := range s.order {
		out[i] = r.class
	}
	return out
}

// runMidnights pre-charges every class once a day, at its lanes' day's
// last margin (Pacific midnight in loc less the class's WindowMargin, at
// least 1 ms), until ctx ends: every class due is charged in memory first,
// then all are recorded at once (recordAll), so one class's slow record
// does not make another's miss its margin. A timer that fires after the
// midnight it waited for (a loaded machine) charges as at that midnight's
// last instant: the lanes that have not rolled to the new day yet still
// hold their requests in flight, which it charges and records then; a lane
// rolled before (an Acquire after midnight) holds them as provisional
// units in this process's memory only (bucket.Class.Provisional), which
// the cluster's count gets as each of their late writes is reported.
func (l *ledger) runMidnights(ctx context.Context, classes []*bucket.Class, loc *time.Location) {
	done := make(map[*bucket.Class]time.Time, len(classes)) // the midnight each was pre-charged for
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	mid := bucket.NextMidnight(time.Now(), loc) // the midnight waited for
	for {
		all := true
		for _, c := range classes {
			all = all && done[c].Equal(mid)
		}
		if all {
			mid = bucket.NextMidnight(mid, loc)
		}
		now := time.Now()
		at := now
		if !at.Before(mid) {
			at = mid.Add(-time.Nanosecond) // late: as at the day's last instant
		}
		next := mid // at the latest, to move on to the next day
		var units []dayUnit
		for _, c := range classes {
			if done[c].Equal(mid) {
				continue
			}
			from := mid.Add(-max(l.margin[c.Name()], time.Millisecond))
			if now.Before(from) {
				next = earliest(next, from)
				continue
			}
			units = append(units, l.preCharge(c, at)...)
			done[c] = mid
		}
		l.recordAll(ctx, units, now)
		t.Reset(max(time.Until(next), 0))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recordDay writes one unit of u's day: through a dayCharger (its own
// store, then the cluster's count, which daily protection then knows),
// else with AddDaily.
func (l *ledger) recordDay(ctx context.Context, u dayUnit, now time.Time) error {
	if l.days != nil {
		n, err := l.days.ChargeDay(ctx, u.day, u.lane, u.n)
		if err == nil && l.shared {
			u.c.SharedDay(u.lane.Project, u.day, n, now)
		}
		return err
	}
	_, err := l.store.AddDaily(ctx, u.day, u.lane, u.n)
	return err
}

// retryDays writes again the units crossDay could not record; those the
// store still does not take stay for the next call. One atomic load when
// there are none.
func (l *ledger) retryDays(ctx context.Context, now time.Time) {
	if l.nUnrec.Load() == 0 {
		return
	}
	l.unrecMu.Lock()
	defer l.unrecMu.Unlock()
	keep := l.unrecorded[:0]
	for _, u := range l.unrecorded {
		if err := l.recordDay(ctx, u, now); err != nil && !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrInvalid) {
			keep = append(keep, u)
			continue
		}
		l.log.Info().Str("class", u.lane.Class).Str("project", u.lane.Project).Str("day", u.day).
			Msg("the next day's unit of a request that crossed midnight is recorded now")
	}
	clear(l.unrecorded[len(keep):])
	l.unrecorded = keep
	l.nUnrec.Store(int32(len(keep)))
}

// restamp moves a committed lease's window slot, now at from, to wrote
// plus the class's margin when that is later (bucket.Class.Restamp), and
// tells a restamper store (store.Redis.Restamped), which moves it in the
// shared window too. It returns where the slot is and whether it moved.
//
// A slot moved past midnight is charged on the next day too (crossDay),
// recorded before it returns (bounded to 2 s).
func (l *ledger) restamp(c *bucket.Class, lease bucket.Lease, from, wrote time.Time) (time.Time, bool) {
	to, moved := c.Restamp(lease, wrote)
	if moved && l.restamps != nil {
		l.restamps.Restamped(store.LaneID{Project: lease.Project, Class: lease.Class}, from, to, int64(lease.Tokens))
	}
	if moved {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l.crossDay(ctx, c, lease, from, to, wrote)
		cancel()
	}
	return to, moved
}

// landed tells the class that the write time of a committed lease's
// request is known (its work returned, every write reported through
// restamp): a request in flight at its day's end held one provisional unit
// of the next day (bucket.Class.Landed), which comes back unless its slot
// crossed midnight (then crossDay charged and recorded it).
func (l *ledger) landed(c *bucket.Class, lease bucket.Lease) {
	c.Landed(lease)
}

// abandon gives back a lease that was not committed.
func (l *ledger) abandon(c *bucket.Class, lease bucket.Lease, now time.Time) {
	c.ChunkFailed(lease)
	c.Refund(lease, now)
	c.Settled(lease, false, now)
}

// sent ends a committed lease whose request left, with the actual input
// tokens (negative: unknown).
func (l *ledger) sent(c *bucket.Class, lease bucket.Lease, now time.Time, tokens int) {
	c.Release(lease, now, tokens)
	l.overran(lease, tokens)
}

// notSent ends a committed lease whose request never left the process.
func (l *ledger) notSent(c *bucket.Class, lease bucket.Lease, now time.Time) {
	c.Refund(lease, now)
}

// coolUntil returns until when the project's lane of c rests after a
// per-minute 429 that came with no retry delay: until its own window log
// frees a slot, plus the class's margin; fallback when the log is empty.
func (l *ledger) coolUntil(c *bucket.Class, project string, now time.Time, fallback time.Duration) time.Time {
	at := c.SlotFreesAt(project, now)
	if at.IsZero() {
		return now.Add(fallback)
	}
	return at.Add(l.margin[c.Name()])
}

// settle gives back every lane's reserved day units that were not used and
// stores the exact window logs. Call it once the dispatchers and their
// workers have returned.
func (l *ledger) settle(ctx context.Context, classes []*bucket.Class, now time.Time) error {
	l.retryDays(ctx, now)
	if l.durable == nil {
		return nil
	}
	var s store.Settlement
	for _, c := range classes {
		for _, ll := range c.Ledger(now) {
			lane := store.LaneID{Project: ll.Project, Class: c.Name()}
			if unused := ll.Reserved - ll.Used; unused > 0 {
				s.GiveBack = append(s.GiveBack, store.DailyCount{Day: ll.Day, Lane: lane, Count: unused})
			}
			if ll.UnusedTokens > 0 {
				s.Unused = append(s.Unused, store.UnusedTokens{Lane: lane, Tokens: ll.UnusedTokens})
			}
			if len(ll.Window) == 0 {
				continue
			}
			w := store.Window{Lane: lane, Sent: make([]store.Sent, len(ll.Window))}
			for i, e := range ll.Window {
				w.Sent[i] = store.Sent{At: e.At, Tokens: int64(e.Tokens)}
			}
			s.Windows = append(s.Windows, w)
		}
	}
	if err := l.durable.Settle(ctx, s); err != nil {
		return fmt.Errorf("scheduler: settling the quota ledger: %w", err)
	}
	return nil
}

// restore loads today's day counts, tomorrow's (units charged on it before
// it began: crossDay) and the lanes' windows into the classes (the
// scheduler restores cooldowns, exhaustion and stopped lanes).
func (l *ledger) restore(ctx context.Context, classes map[string]*runner, loc *time.Location, now time.Time) error {
	for _, day := range []string{bucket.Day(now, loc), bucket.Day(bucket.NextMidnight(now, loc), loc)} {
		counts, err := l.store.Daily(ctx, day)
		if err != nil {
			return err
		}
		for _, dc := range counts {
			if r := classes[dc.Lane.Class]; r != nil {
				r.class.Restore(dc.Lane.Project, dc.Day, dc.Count, now)
			}
		}
	}
	if l.durable == nil {
		return nil
	}
	recs, err := l.durable.LedgerRecords(ctx)
	if err != nil {
		return err
	}
	for lane, sent := range l.windows(recs, now) {
		r := classes[lane.Class]
		if r == nil {
			continue
		}
		for _, e := range sent {
			r.class.RestoreWindow(lane.Project, e.At, int(e.Tokens))
		}
	}
	return nil
}

// windows merges the stored window logs with the windows rebuilt from the
// records, per lane, oldest first, keeping what is still in a window at now.
func (l *ledger) windows(recs store.LedgerRecords, now time.Time) map[store.LaneID][]store.Sent {
	out := make(map[store.LaneID][]store.Sent)
	for _, w := range recs.Windows {
		out[w.Lane] = append(out[w.Lane], w.Sent...)
	}
	byLane := make(map[store.LaneID][]store.Record)
	for _, r := range recs.Records {
		byLane[r.Lane] = append(byLane[r.Lane], r)
	}
	for lane, rs := range byLane {
		margin := l.margin[lane.Class]
		for i, r := range rs {
			end := r.Until
			var tokens int64
			if i+1 < len(rs) {
				end = earliest(end, rs[i+1].At)
				tokens = rs[i+1].PrevTokens
			} else {
				tokens = int64(l.tpm[lane.Class]) // unknown: the whole TPM, on the safe side
			}
			if end.After(now) {
				end = now
			}
			at := end.Add(margin)
			for k := range r.Covers {
				e := store.Sent{At: at}
				if k == 0 {
					e.Tokens = tokens
				}
				out[lane] = append(out[lane], e)
			}
		}
	}
	cutoff := now.Add(-time.Minute)
	for lane, sent := range out {
		sent = slices.DeleteFunc(sent, func(e store.Sent) bool { return !e.At.After(cutoff) })
		slices.SortStableFunc(sent, func(a, b store.Sent) int { return a.At.Compare(b.At) })
		if len(sent) == 0 {
			delete(out, lane)
			continue
		}
		out[lane] = sent
	}
	return out
}
