package scheduler

import (
	"time"

	"github.com/slideshowd/slideshowd/bucket"
)

// Withdraw takes the job out of its class's queue if it has not started: it
// then never runs (no lease is taken for it) and ends, StateCanceled, with
// err (what Err and Do return). It reports whether it did; a job that
// started or ended is left alone. A caller that gives up a job waiting
// for the next Pacific day (package pipeline frees its max_active slot)
// uses it rather than ending the job's context, which would also cut a
// request that had just started. Safe for concurrent use.
func (h *Handle) Withdraw(err error) bool {
	if h.t == nil || h.run == nil {
		return false
	}
	return h.run.withdraw(h.t, err)
}

// DayWait reports whether a job of class at priority pr, submitted now,
// could not start before the next Pacific midnight: daily protection holds
// its priority (Kind WaitProtected, Until that midnight), or no lane of
// the class can serve before then (Kind WaitDay, Until the earliest a lane
// can: every lane's day spent, out for the day after a per-day 429, or
// held by the cluster until then). It is false for an unknown class, and
// when no lane can serve until something else changes (every key
// disabled): that wait has no end to report. The Reason is worded at now.
// Safe for concurrent use; it takes the class's lock briefly, as Submit
// does.
func (s *Scheduler) DayWait(class string, pr Priority) (Wait, bool) {
	r := s.classes[class]
	if r == nil {
		return Wait{}, false
	}
	now := time.Now()
	midnight := bucket.NextMidnight(now, s.cfg.Location)
	w := Wait{Class: class, Since: now}
	switch earliest := r.class.Earliest(now, 0); {
	case earliest.IsZero():
		return Wait{}, false
	case !earliest.Before(midnight):
		w.Kind, w.Until = WaitDay, earliest
	case pr < *s.cfg.Protect && s.cfg.Critical < 1 && r.class.Critical(now):
		w.Kind, w.Until = WaitProtected, midnight
		if kind, _ := r.waitKind(now, 0); kind == WaitDay {
			// Every lane is out for the day too (a shared day count at
			// RPD that no refused grant has held yet): that says more.
			w.Kind = WaitDay
		}
	default:
		return Wait{}, false
	}
	w.Reason = w.reason(now, s.cfg.Location)
	return w.utc(), true
}
