package scheduler

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// DefaultClassifier keeps the outcome errors the work returned itself
// (*RateLimitedError, *KeyError, *TransientError, *PermanentError, possibly
// inside *NotSentError) and treats every other error as transient.
func DefaultClassifier(err error) error {
	var (
		rl *RateLimitedError
		ke *KeyError
		te *TransientError
		pe *PermanentError
	)
	if errors.As(err, &rl) || errors.As(err, &ke) || errors.As(err, &te) || errors.As(err, &pe) {
		return err
	}
	var ns *NotSentError
	if errors.As(err, &ns) {
		return &NotSentError{Err: &TransientError{Err: ns.Err}}
	}
	return &TransientError{Err: err}
}

// run executes one attempt of t on a pool worker and applies its outcome.
func (r *runner) run(workCtx context.Context, t *task, lease bucket.Lease, slot time.Time) {
	ctx, cancel := context.WithCancel(t.ctx)
	stop := context.AfterFunc(workCtx, cancel)
	st := &leaseState{margin: int64(r.class.WriteMargin()), r: r, lease: lease}
	st.tokens.Store(-1)
	st.slot.Store(slot.UnixNano())
	l := Lease{Class: r.name, KeyID: lease.KeyID, Project: lease.Project, Attempt: t.attempts, Slot: slot, st: st}
	start := time.Now()
	err := callWork(ctx, t.job.Work, l)
	// A write reported from now on (a transport's late callback) is of a
	// request whose outcome is being applied: it no longer moves the slot.
	st.end()
	// Its write time is known now: a provisional unit of the next day it
	// held since midnight comes back (ledger.landed).
	r.s.ledger.landed(r.class, lease)
	stop()
	cancel()
	if d := time.Since(start); !isNotSent(err) {
		r.observeLatency(d)
	}
	r.outcome(workCtx, t, lease, err, int(st.tokens.Load()), start)
}

// isNotSent reports whether the work said its request never left.
func isNotSent(err error) bool {
	var ns *NotSentError
	return errors.As(err, &ns)
}

// callWork calls work, turning a panic into a permanent failure of the job
// (with the stack) so one bad job cannot take the process down.
func callWork(ctx context.Context, work func(context.Context, Lease) error, l Lease) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PermanentError{Err: fmt.Errorf("work panicked: %v\n%s", v, debug.Stack())}
		}
	}()
	return work(ctx, l)
}

func (r *runner) outcome(workCtx context.Context, t *task, lease bucket.Lease, err error, tokens int, start time.Time) {
	now := time.Now()
	ev := Event{Kind: EventFinished, Time: now, Class: r.name, JobID: t.id, JobName: t.job.Name, Priority: t.job.Priority,
		KeyID: lease.KeyID, Project: lease.Project, Attempt: t.attempts, Latency: now.Sub(start)}

	if err == nil {
		r.s.ledger.sent(r.class, lease, now, tokens)
		r.class.Settled(lease, true, now)
		r.end(t, StateDone, nil, ev, "ok")
		return
	}
	var classified error
	var ns *NotSentError
	if errors.As(err, &ns) {
		classified = err // the work said so itself
	} else {
		classified = r.s.cfg.Classifier(err)
		if classified == nil {
			classified = &TransientError{Err: err}
		}
	}
	notSent := errors.As(classified, &ns)
	if notSent {
		r.s.ledger.notSent(r.class, lease, now)
	} else {
		r.s.ledger.sent(r.class, lease, now, tokens)
	}

	// What the answer says about the lane or key holds whatever becomes of
	// the job: apply it before a canceled or stopped job ends.
	var (
		rl *RateLimitedError
		ke *KeyError
		pe *PermanentError
	)
	isRL := errors.As(classified, &rl)
	isKE := !isRL && errors.As(classified, &ke)
	switch {
	case isRL:
		r.rateLimited(lease, rl, start, now)
	case isKE:
		r.keyUnusable(lease, ke, now)
	}
	// Only now, with the lane stopped, cooled or its key disabled, may a
	// lane still probing (ClassConfig.Probe) send again.
	r.class.Settled(lease, false, now)

	switch {
	case t.ctx.Err() != nil:
		r.end(t, StateCanceled, t.ctx.Err(), ev, "canceled")
		return
	case workCtx.Err() != nil:
		r.end(t, StateFailed, fmt.Errorf("%w: job stopped by shutdown: %v", ErrClosed, err), ev, "closed")
		return
	}

	switch {
	case isRL:
		r.retryElsewhere(t, classified, ev, "rate_limited")
	case isKE:
		r.retryElsewhere(t, classified, ev, "key")
	case errors.As(classified, &pe):
		r.end(t, StateFailed, classified, ev, "permanent")
	default:
		name := "transient"
		if notSent {
			name = "not_sent"
		}
		t.failures++
		if t.failures >= r.s.cfg.MaxAttempts {
			r.end(t, StateFailed, fmt.Errorf("%w (%d attempts): %w", ErrRetriesExhausted, t.failures, classified), ev, name)
			return
		}
		ev.Outcome, ev.Err = name, classified
		r.s.emit(ev)
		at := now.Add(r.s.backoff(t.failures))
		r.s.emit(Event{Kind: EventRetry, Time: now, Class: r.name, JobID: t.id, JobName: t.job.Name,
			Priority: t.job.Priority, Attempt: t.attempts, Until: at, Err: classified})
		t.lastErr = classified
		r.release()
		r.requeue(t, at)
	}
}

// retryElsewhere sends t back to the head of its priority to try another
// lane. It spends no retry budget: a rate limit is a lack of capacity, not
// a failure of the job, and the lane that answered it is blocked (cooling
// down, exhausted, or its key disabled), so retries are paced by the quota
// itself; a job with a deadline ends with ErrNoCapacity when the quota
// cannot serve it in time.
func (r *runner) retryElsewhere(t *task, err error, ev Event, name string) {
	ev.Outcome, ev.Err = name, err
	r.s.emit(ev)
	r.s.emit(Event{Kind: EventRetry, Time: ev.Time, Class: r.name, JobID: t.id, JobName: t.job.Name,
		Priority: t.job.Priority, Attempt: t.attempts, Until: ev.Time, Err: err})
	t.lastErr = err
	r.release()
	r.requeue(t, time.Time{})
}

// end finishes t for good. The worker slot is freed and the final event
// emitted before the job's waiters wake: whoever returns from Wait sees the
// job neither running (Summary) nor missing its last event.
func (r *runner) end(t *task, st State, err error, ev Event, name string) {
	ev.Outcome, ev.Err, ev.Final = name, err, true
	r.mu.Lock()
	r.running--
	r.mu.Unlock()
	t.handle.finish(st, err, func() { r.s.emit(ev) })
	r.signal()
}

// release frees t's worker slot.
func (r *runner) release() {
	r.mu.Lock()
	r.running--
	r.mu.Unlock()
	r.signal()
}

// rateLimited applies a 429 to the lane. A per-day 429 exhausts the lane
// until the end of the quota day the request was sent on: an answer that
// arrives after that midnight speaks of a day already over, and blocking
// the new one would waste it.
func (r *runner) rateLimited(lease bucket.Lease, rl *RateLimitedError, sent, now time.Time) {
	ctx := context.Background()
	if rl.Scope == ScopeNoQuota {
		// The project has no quota on the class's model at all: waiting
		// will not bring one. Stop the lane until an operator acts or the
		// class's configuration changes.
		r.class.Stop(lease.Project, ReasonNoQuota)
		_ = r.persistLane(ctx, lease.Project, now)
		r.s.log.Error().Str("class", r.name).Str("project", lease.Project).Str("key", lease.KeyID).
			Str("quota", rl.Quota).Str("reason", ReasonNoQuota).Msg("lane stopped until an operator resumes it or the configuration changes")
		r.s.emit(Event{Kind: EventLaneStopped, Time: now, Class: r.name, KeyID: lease.KeyID, Project: lease.Project,
			Scope: rl.Scope, Reason: ReasonNoQuota})
		return
	}
	if rl.Scope == ScopeDay {
		until := bucket.NextMidnight(sent, r.s.cfg.Location)
		if !until.After(now) {
			r.s.log.Info().Str("class", r.name).Str("project", lease.Project).Str("key", lease.KeyID).
				Msg("per-day 429 for a quota day that has ended since; the lane serves the new day")
			return
		}
		r.class.ExhaustUntil(lease.Project, until)
		_ = r.persistLane(ctx, lease.Project, now)
		r.s.log.Warn().Str("class", r.name).Str("project", lease.Project).Str("key", lease.KeyID).
			Str("quota", rl.Quota).Time("until", until).Msg("lane exhausted for the day")
		r.s.emit(Event{Kind: EventLaneExhausted, Time: now, Class: r.name, KeyID: lease.KeyID, Project: lease.Project,
			Scope: rl.Scope, Until: until, Reason: rl.Quota})
		return
	}
	d := rl.RetryAfter
	until := now.Add(d)
	switch {
	case d > 0:
	case rl.Scope == ScopeMinute:
		// No retry delay: rest until the lane's own window log frees a slot.
		until = r.s.ledger.coolUntil(r.class, lease.Project, now, r.s.cfg.Cooldown)
		d = until.Sub(now)
	default:
		d = r.s.cfg.Cooldown
		until = now.Add(d)
	}
	r.class.CoolDown(lease.Project, until)
	_ = r.persistLane(ctx, lease.Project, now)
	r.s.log.Info().Str("class", r.name).Str("project", lease.Project).Str("key", lease.KeyID).
		Str("scope", rl.Scope.String()).Dur("cooldown", d).Msg("lane cooling down")
	r.s.emit(Event{Kind: EventLaneCooled, Time: now, Class: r.name, KeyID: lease.KeyID, Project: lease.Project,
		Scope: rl.Scope, Until: until, Reason: rl.Quota})
}

// persistLane writes the lane's current blocking state to the store; a
// failure is logged and returned.
func (r *runner) persistLane(ctx context.Context, project string, now time.Time) error {
	for _, lu := range r.class.Usage(now).Lanes {
		if lu.Project != project {
			continue
		}
		st := store.LaneState{
			Lane:      store.LaneID{Project: project, Class: r.name},
			CoolUntil: lu.CoolUntil, ExhaustedUntil: lu.ExhaustedUntil,
			Stopped: lu.Stopped,
		}
		if st.Stopped != "" {
			st.Config = r.cfg.stopConfig()
		}
		if err := r.s.store.SetLaneState(ctx, st); err != nil {
			if errors.Is(err, store.ErrPending) || errors.Is(err, store.ErrUnavailable) {
				// Stored here; a stop, a cooldown or an exhaustion
				// (if not over by then) reaches the cluster when Redis
				// answers.
				r.s.log.Warn().Err(err).Str("class", r.name).Str("project", project).Msg("lane state stored in this process only for now")
				return nil
			}
			r.s.log.Error().Err(err).Str("class", r.name).Str("project", project).Msg("storing lane state failed")
			return err
		}
	}
	return nil
}

func (r *runner) keyUnusable(lease bucket.Lease, ke *KeyError, now time.Time) {
	ids := []string{lease.KeyID}
	if ke.Project {
		ids = ids[:0]
		for _, k := range r.s.pool.Keys() {
			if k.Project == lease.Project {
				ids = append(ids, k.ID)
			}
		}
	}
	for _, id := range ids {
		// Another class may have found the key unusable at the same time
		// (a leaked key answers every model alike): only the one that takes
		// it out stores, logs and emits it, so an operator reads one line
		// per key disabled.
		if !r.s.disableOnce(id, ke.Reason, now) {
			continue
		}
		err := r.s.store.DisableKey(context.Background(), store.DisabledKey{KeyID: id, Reason: ke.Reason, At: now,
			Fingerprint: r.s.cfg.Fingerprints[id]})
		switch {
		case errors.Is(err, store.ErrPending):
			r.s.log.Warn().Err(err).Str("key", id).Msg("key disabled here; the other processes learn it when Redis answers")
		case err != nil:
			r.s.log.Error().Err(err).Str("key", id).Msg("storing disabled key failed")
		}
		r.s.log.Error().Str("key", id).Str("project", lease.Project).Str("reason", ke.Reason).
			Msg("key disabled on every class until an operator enables it")
		r.s.emit(Event{Kind: EventKeyDisabled, Time: now, Class: r.name, KeyID: id, Project: lease.Project, Reason: ke.Reason})
	}
	for _, other := range r.s.order {
		if other != r {
			other.signal()
		}
	}
}
