package scheduler

import (
	"context"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
)

// Kinds of Wait.
const (
	// WaitDay: every lane of the class is out for the Pacific day (its RPD
	// spent or a per-day 429); work resumes at the next Pacific midnight.
	WaitDay = "day"
	// WaitRPM: the lanes' 60 s windows (or pacing) hold the next request
	// until a slot frees.
	WaitRPM = "rpm"
	// WaitTPM: the class has TPM and every lane that could serve has room
	// in its 60 s window of requests but not in its window of input tokens
	// for the next job's estimate: it waits until enough tokens leave.
	WaitTPM = "tpm"
	// WaitCooldown: every lane that could serve cools down after a 429.
	WaitCooldown = "cooldown"
	// WaitCluster: with a shared Store, every lane that could serve waits
	// for the cluster (a grant refused, no 429: the shared window or token
	// window full, or this process's share used while Redis is
	// unreachable), or cools down and at least one waits for the cluster.
	// The reason says which: "waiting for the cluster's window, next slot
	// in 13s".
	WaitCluster = "cluster"
	// WaitProtected: the class is critical (Config.Critical of its day
	// used) and only jobs of Config.Protect or higher start until the next
	// Pacific midnight.
	WaitProtected = "protected"
)

// WaitReportAfter is the shortest wait that EventWaiting reports: shorter
// ones (the RPM window between two requests of a busy class) are part of
// normal pacing and show only in Summary and Handle.Waiting.
const WaitReportAfter = 10 * time.Second

// Wait says why the queued jobs of a class wait for quota, since when, and
// until when at the earliest.
type Wait struct {
	// Class is the class waited for; "" (absent in JSON) for a job of
	// package pipeline waiting for a max_active slot (kind "slot").
	Class string `json:"class,omitempty"`
	// Kind is WaitDay, WaitRPM, WaitTPM, WaitCooldown, WaitCluster or
	// WaitProtected (package pipeline adds "slot" for a job waiting for a
	// max_active slot).
	Kind string `json:"kind"`
	// Reason says it in words, as of the moment the Wait was read:
	// "image quota of all projects used for today, resets 2026-12-01 00:00
	// PST", "RPM window, next slot in 12s", "TPM window, next slot in 12s",
	// "cooldown after 429, next slot in 20s", "daily protection: ...".
	Reason string `json:"reason"`
	// Since and Until are UTC as Summary, Handle.Waiting and DayWait
	// return them.
	Since time.Time `json:"since"`
	// Until is the estimated start: the earliest moment a lane can take
	// the class's next job (for a job, its own estimated start when later).
	// Zero (absent in JSON) when unknown: a job of package pipeline waiting
	// for a max_active slot (kind "slot").
	Until time.Time `json:"until,omitzero"`

	held string // WaitCluster: the hold's words (a Hold... constant)
}

// reason words the wait at now.
func (w Wait) reason(now time.Time, loc *time.Location) string {
	in := func() string {
		d := w.Until.Sub(now)
		if d <= 0 {
			return "now"
		}
		return "in " + ShortDuration(d)
	}
	switch w.Kind {
	case WaitDay:
		return w.Class + " quota of all projects used for today, resets " + w.Until.In(loc).Format("2006-01-02 15:04 MST")
	case WaitCooldown:
		return "cooldown after 429, next slot " + in()
	case WaitCluster:
		return w.held + ", next slot " + in()
	case WaitTPM:
		return "TPM window, next slot " + in()
	case WaitProtected:
		return "daily protection: " + w.Class + " has used its critical share of today's quota; only high priority starts until " +
			w.Until.In(loc).Format("2006-01-02 15:04 MST")
	}
	return "RPM window, next slot " + in()
}

// waitKind tells why no lane of the class can take a request of tokens
// (the head job's estimate) at now, and for WaitCluster the words of the
// hold that ends first.
func (r *runner) waitKind(now time.Time, tokens int) (string, string) {
	u := r.class.Usage(now)
	open, cooling, held, byTokens := 0, 0, 0, 0
	var first bucket.LaneUsage
	for _, l := range u.Lanes {
		// SharedUsed is DayUsed, or with a shared store the lane's
		// cluster day count when larger: at RPD, the lane is out for the
		// day whether or not a refused grant holds it (a class held by
		// daily protection asks no grant).
		if !l.Enabled || l.Stopped != "" || l.ExhaustedUntil.After(now) || l.SharedUsed >= u.Limits.RPD {
			continue
		}
		open++
		isHeld := l.HeldUntil.After(now)
		switch {
		case isHeld && l.CoolUntil.After(l.HeldUntil):
			cooling++ // the cooldown outlasts the hold
		case isHeld:
			held++
			if first.HeldUntil.IsZero() || l.HeldUntil.Before(first.HeldUntil) {
				first = l
			}
		case l.CoolUntil.After(now):
			cooling++
		case u.Limits.TPM > 0 && l.RPMUsed < u.Limits.RPM && l.TPMUsed+tokens > u.Limits.TPM:
			byTokens++ // room for a request, not for its tokens
		}
	}
	switch {
	case open == 0:
		return WaitDay, ""
	case held > 0 && cooling+held == open:
		return WaitCluster, first.HeldReason
	case cooling == open:
		return WaitCooldown, ""
	case byTokens > 0 && cooling+held+byTokens == open:
		return WaitTPM, ""
	}
	return WaitRPM, ""
}

// ShortDuration words a wait of d in whole seconds, as the summaries show
// it ("12s", "1m5s"): a wait under a second reads "<1s", not "0s".
func ShortDuration(d time.Duration) string {
	if d > 0 && d < time.Second {
		return "<1s"
	}
	return d.Round(time.Second).String()
}

// noteWait records that the class's head job, of tokens estimated input
// tokens, waits until until (protected: for daily protection), and reports
// a wait long enough to matter, or a change of its kind, with EventWaiting.
func (r *runner) noteWait(now, until time.Time, tokens int, protected bool) {
	kind, held := r.waitKind(now, tokens)
	if protected && kind != WaitDay {
		kind = WaitProtected // a day used up says more than protection
	}
	r.waitMu.Lock()
	w := Wait{Class: r.name, Kind: kind, Since: now, Until: until, held: held}
	if r.wait != nil && r.wait.Kind == kind {
		w.Since = r.wait.Since
	}
	changed := r.wait == nil || r.wait.Kind != kind
	r.wait = &w
	report := (r.waitReported && changed) || (!r.waitReported && until.Sub(now) >= WaitReportAfter)
	if report {
		r.waitReported = true
	}
	r.waiting.Store(true)
	r.waitMu.Unlock()
	if report {
		reason := w.reason(now, r.s.cfg.Location)
		r.s.log.Info().Str("class", r.name).Str("wait", kind).Str("reason", reason).Time("until", until).Msg("jobs waiting for quota")
		r.s.emit(Event{Kind: EventWaiting, Time: now, Class: r.name, Until: until, Reason: reason})
	}
}

// noteDispatched clears the class's wait when a job starts, and reports
// the end of a reported wait with EventResumed.
func (r *runner) noteDispatched(now time.Time) {
	if !r.waiting.Load() {
		return
	}
	r.waitMu.Lock()
	w, reported := r.wait, r.waitReported
	r.wait, r.waitReported = nil, false
	r.waiting.Store(false)
	r.waitMu.Unlock()
	if reported && w != nil {
		r.s.log.Info().Str("class", r.name).Str("wait", w.Kind).Dur("waited", now.Sub(w.Since)).Msg("jobs resumed after waiting for quota")
		r.s.emit(Event{Kind: EventResumed, Time: now, Class: r.name, Waited: now.Sub(w.Since), Reason: w.Kind})
	}
}

// noteIdle clears the class's wait when nothing is queued any more.
func (r *runner) noteIdle() {
	if !r.waiting.Load() {
		return
	}
	r.waitMu.Lock()
	r.wait, r.waitReported = nil, false
	r.waiting.Store(false)
	r.waitMu.Unlock()
}

// classWait returns the class's current wait, worded at now.
func (r *runner) classWait(now time.Time) (Wait, bool) {
	if !r.waiting.Load() {
		return Wait{}, false
	}
	r.waitMu.Lock()
	defer r.waitMu.Unlock()
	if r.wait == nil {
		return Wait{}, false
	}
	w := *r.wait
	w.Reason = w.reason(now, r.s.cfg.Location)
	return w.utc(), true
}

// utc returns w with its times in UTC, as JSON shows every wait (the
// next Pacific midnight is computed in Config.Location).
func (w Wait) utc() Wait {
	w.Since, w.Until = w.Since.UTC(), w.Until.UTC()
	return w
}

// Waiting reports whether the job is queued waiting for quota, and why:
// its class's Wait, with Until the job's own estimated start when that is
// later. A job queued only behind other jobs, or running, or ended, is not
// waiting for quota.
func (h *Handle) Waiting() (Wait, bool) {
	if h.run == nil || h.State() != StateQueued {
		return Wait{}, false
	}
	now := time.Now()
	w, ok := h.run.classWait(now)
	if !ok {
		return Wait{}, false
	}
	if est := h.EstimatedStart(); est.After(w.Until) {
		w.Until = est
		w.Reason = w.reason(now, h.run.s.cfg.Location)
	}
	return w.utc(), true
}

// submitHookKey keys the function OnSubmit puts in a context.
type submitHookKey struct{}

// OnSubmit returns a context that makes Submit (and Do, and the gemini
// calls made through them) call fn with the Handle of every job it queues
// with that context, before it returns; fn must be quick and must not call
// back into the scheduler. A caller that has no Handle of its own (a
// gemini.Client call) uses it to follow the job: Handle.Waiting, State.
func OnSubmit(ctx context.Context, fn func(*Handle)) context.Context {
	return context.WithValue(ctx, submitHookKey{}, fn)
}

func submitted(ctx context.Context, h *Handle) {
	if fn, ok := ctx.Value(submitHookKey{}).(func(*Handle)); ok && fn != nil {
		fn(h)
	}
}
