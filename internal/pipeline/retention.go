package pipeline

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// expiry is the moment a kept final job's retention ends.
type expiry struct {
	at time.Time
	id string
}

// expiries is a min-heap of expiry by at (container/heap). An id may be in
// it more than once (a job retried and ended again): each entry is checked
// against the stored record when it comes due.
type expiries []expiry

func (h expiries) Len() int           { return len(h) }
func (h expiries) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiries) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiries) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiries) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// retention is Run's side of Config.Retention: the kept final jobs by
// expiry and one timer set to the earliest. Owned by Run's goroutine: not
// safe for concurrent use. The zero value (with p set) keeps nothing and
// has no timer.
type retention struct {
	p     *Pipeline
	due   expiries
	timer *time.Timer // nil until first needed
	armed bool        // timer is set and its value not yet received
}

// keep records that job id ended (done or failed) at ended.
func (r *retention) keep(id string, ended time.Time) {
	if r.p.cfg.Retention <= 0 {
		return
	}
	heap.Push(&r.due, expiry{at: ended.Add(r.p.cfg.Retention), id: id})
}

// C is the timer's channel while it is set; nil (blocks for ever) when not.
func (r *retention) C() <-chan time.Time {
	if !r.armed {
		return nil
	}
	return r.timer.C
}

// fired notes that the timer's value was received.
func (r *retention) fired() { r.armed = false }

// arm sets the timer to the earliest expiry, or stops it when nothing is
// kept.
func (r *retention) arm() {
	var next time.Time
	if len(r.due) == 0 {
		if r.armed {
			r.timer.Stop()
			r.armed = false
		}
	} else {
		next = r.due[0].at
		d := time.Until(next)
		if r.timer == nil {
			r.timer = time.NewTimer(d)
		} else {
			r.timer.Reset(d) // Go 1.23 timers: no stale value after Reset
		}
		r.armed = true
	}
	r.p.mu.Lock()
	r.p.nextExpiry = next
	r.p.mu.Unlock()
}

// stop stops the timer; Run calls it when it returns.
func (r *retention) stop() {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.armed = false
	r.p.mu.Lock()
	r.p.nextExpiry = time.Time{}
	r.p.mu.Unlock()
}

// expire deletes the jobs whose retention has ended and sets the timer to
// the next expiry.
func (r *retention) expire(ctx context.Context) {
	now := time.Now()
	var later []expiry
	for len(r.due) > 0 && !r.due[0].at.After(now) {
		e := heap.Pop(&r.due).(expiry)
		next, err := r.p.deleteExpired(ctx, e.id, now)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.p.log.Error().Str("job", e.id).Err(err).Dur("after", requeueAfter).
				Msg("cannot delete an expired job; trying again later")
			next = now.Add(requeueAfter)
		}
		if !next.IsZero() {
			later = append(later, expiry{at: next, id: e.id})
		}
	}
	for _, e := range later {
		heap.Push(&r.due, e)
	}
	r.arm()
}

// recheck queues for expiry the jobs whose last Hold was released after an
// expiry passed them by; it reports whether there were any.
func (r *retention) recheck() bool {
	r.p.mu.Lock()
	ids := r.p.recheck
	r.p.recheck = nil
	r.p.mu.Unlock()
	now := time.Now()
	for _, id := range ids {
		heap.Push(&r.due, expiry{at: now, id: id})
	}
	return len(ids) > 0
}

// Hold keeps job id from Config.Retention until release is called: Run
// does not delete it meanwhile, and deletes it once released if its
// retention has ended by then (or at the next start). A caller that was
// handed an id (Submit with a key returns a job stored by an earlier run,
// which may already be past its retention) holds it until it has read what
// it needs (Wait, Status, ImagePath), so the job cannot vanish in between.
// Hold wraps ErrNotFound when the job is not stored (it expired before
// Hold). Holds nest; release may be called more than once. Safe for
// concurrent use.
func (p *Pipeline) Hold(ctx context.Context, id string) (release func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.load(ctx, id); err != nil {
		return nil, err
	}
	p.holds[id]++
	var once sync.Once
	return func() { once.Do(func() { p.unhold(id) }) }, nil
}

func (p *Pipeline) unhold(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds[id]--
	if p.holds[id] > 0 {
		return
	}
	delete(p.holds, id)
	if p.cfg.Retention <= 0 {
		return
	}
	// Checked again by Run (a no-op when the job is not final, or not yet
	// expired: its entry is back in the heap at its own time).
	p.recheck = append(p.recheck, id)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// deleteExpired deletes job id if it is final and ended Retention or more
// before now: its record first, then its directory (a crash in between
// leaves an orphan directory, removed at the next start). It returns the
// moment to look again when the job is final but ended later than the
// entry that brought it here, else zero. p.mu is held throughout, so Retry
// cannot reopen the job meanwhile and a keyed Submit of the same id waits
// until its directory is gone.
func (p *Pipeline) deleteExpired(ctx context.Context, id string, now time.Time) (time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, held := p.active[id]; held || p.creating[id] || p.holds[id] > 0 {
		return time.Time{}, nil // reopened or held: it comes back here when it ends or is released
	}
	r, err := p.load(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	if !r.State.Final() {
		return time.Time{}, nil
	}
	if at := r.UpdatedAt.Add(p.cfg.Retention); at.After(now) {
		return at, nil
	}
	if err := p.cfg.Store.DeleteJob(ctx, id); err != nil {
		return time.Time{}, fmt.Errorf("pipeline: job %s: deleting the record: %w", id, err)
	}
	log := p.log.Info()
	if err := os.RemoveAll(filepath.Join(p.jobsDir, id)); err != nil {
		// The record is gone: the directory is an orphan, removed at the
		// next start.
		log = p.log.Warn().AnErr("files", err)
	}
	log.Str("job", id).Str("state", string(r.State)).Time("ended", r.UpdatedAt).
		Dur("retention", p.cfg.Retention).Msg("expired job deleted")
	return time.Time{}, nil
}

// removeOrphans removes the job directories that have no record: left by a
// crash between deleting an expired job's record and its files, or by a
// Submit that could not store its record.
func (p *Pipeline) removeOrphans(ctx context.Context) {
	entries, err := os.ReadDir(p.jobsDir)
	if err != nil {
		p.log.Error().Err(err).Msg("cannot list the job directories")
		return
	}
	for _, e := range entries {
		id := e.Name()
		if !e.IsDir() || !idPattern.MatchString(id) {
			continue
		}
		if err := p.removeOrphan(ctx, id); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Warn().Str("job", id).Err(err).Msg("cannot check or remove a job directory")
		}
	}
}

// removeOrphan removes job id's directory if the job has no record and is
// not being submitted. p.mu is held throughout, as in deleteExpired.
func (p *Pipeline) removeOrphan(ctx context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, held := p.active[id]; held || p.creating[id] || p.holds[id] > 0 {
		return nil
	}
	_, err := p.load(ctx, id)
	if !errors.Is(err, ErrNotFound) {
		return err // nil: the job is stored
	}
	if err := os.RemoveAll(filepath.Join(p.jobsDir, id)); err != nil {
		return err
	}
	p.log.Info().Str("job", id).Msg("orphan job directory removed")
	return nil
}
