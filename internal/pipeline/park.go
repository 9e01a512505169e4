package pipeline

import (
	"cmp"
	"errors"
	"slices"
	"time"

	"github.com/slideshowd/slideshowd/scheduler"
)

// A job in progress whose every queued call waits for the next Pacific day
// (daily protection holds its priority, or its class's day is spent) gives
// up its max_active slot: its queued calls are withdrawn from the scheduler
// (never sent, no quota taken), its images back to pending, and it waits
// parked, stored as it was and shown with that wait, until the scheduler
// says its class would take its priority again (or the wait's end passed);
// it then queues again, by priority and age, for a slot. Nothing of it
// lives only in memory: a restart resumes it like any stored job (it parks
// again at once if the day has not turned).

// parkEvery is how often Run looks for jobs in progress to park and for
// parked jobs to queue again.
const parkEvery = time.Second

// errParked ends the calls of a job that gives up its slot (see above).
var errParked = errors.New("parked until its quota comes back")

// waitsForDay reports whether w may be a wait for the next Pacific day:
// by its kind, or (with a scheduler, whose DayWait then confirms it for
// the job's priority) by an end a minute away or more (a cluster's hold
// until midnight).
func (p *Pipeline) waitsForDay(w *scheduler.Wait, withScheduler bool) bool {
	switch {
	case w == nil:
		return false
	case w.Kind == scheduler.WaitDay || w.Kind == scheduler.WaitProtected:
		return true
	}
	return withScheduler && time.Until(w.Until) >= time.Minute
}

// scheduler returns the scheduler of the pipeline's calls, nil when none.
func (p *Pipeline) scheduler() *scheduler.Scheduler {
	if p.cfg.Gemini == nil {
		return nil
	}
	return p.cfg.Gemini.Scheduler()
}

// parkWaiting parks the jobs of working (those Run works) whose every
// queued call waits for the next Pacific day, when the scheduler agrees
// that their class holds their priority until then.
func (p *Pipeline) parkWaiting(working map[*job]bool) {
	s := p.scheduler()
	for j := range working {
		if j.parking.Load() {
			continue
		}
		w := j.waiting()
		if !p.waitsForDay(w, s != nil) {
			continue
		}
		pr, _ := scheduler.ParsePriority(j.snapshot().Priority)
		if s != nil {
			dw, ok := s.DayWait(w.Class, pr)
			if !ok {
				continue
			}
			w = &dw
		}
		p.mu.Lock()
		if j.canceled || j.cancel == nil {
			p.mu.Unlock()
			continue
		}
		pw := *w
		j.parkWait = &pw
		j.parking.Store(true)
		p.mu.Unlock()
		j.mu.Lock()
		steps := slices.Clone(j.steps)
		j.mu.Unlock()
		for _, h := range steps {
			h.Withdraw(errParked)
		}
		p.log.Info().Str("job", j.snapshot().ID).Str("wait", pw.Kind).Str("reason", pw.Reason).
			Msg("job parked: gives up its max_active slot until its quota comes back")
	}
}

// park keeps j, whose run ended parked (not final), as a parked job: it
// stays active (Status shows its wait), out of the queue and of the slots.
// It reports false when j was not parking (or was canceled meanwhile).
func (p *Pipeline) park(j *job) bool {
	j.mu.Lock()
	j.steps = nil // all ended: the run returned
	j.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !j.parking.Load() || j.canceled || j.parkWait == nil {
		return false
	}
	j.cancel = nil
	p.parked = append(p.parked, j)
	for _, ch := range p.released[j.rec.ID] {
		close(ch)
	}
	delete(p.released, j.rec.ID)
	return true
}

// readmit queues again, by priority and age, the parked jobs whose quota
// came back: the scheduler no longer holds their class for their priority
// (or, without a scheduler, their wait's end passed). It reports whether
// it queued any.
func (p *Pipeline) readmit() bool {
	p.mu.Lock()
	parked := slices.Clone(p.parked)
	p.mu.Unlock()
	if len(parked) == 0 {
		return false
	}
	s := p.scheduler()
	now := time.Now()
	type key struct {
		class string
		pr    scheduler.Priority
	}
	type hold struct {
		held bool
		wait scheduler.Wait // the scheduler's, when held
	}
	held := make(map[key]hold)
	type queued struct {
		j   *job
		rec record
	}
	var back []queued
	for _, j := range parked {
		p.mu.Lock()
		w := j.parkWait
		p.mu.Unlock()
		if w == nil {
			continue
		}
		rec := j.snapshot()
		pr, _ := scheduler.ParsePriority(rec.Priority)
		k := key{w.Class, pr}
		h, known := held[k]
		if !known {
			switch {
			case s != nil:
				h.wait, h.held = s.DayWait(w.Class, pr)
			default:
				h.held = now.Before(w.Until)
			}
			held[k] = h
		}
		if !h.held {
			back = append(back, queued{j, rec})
			continue
		}
		if s != nil && (h.wait.Kind != w.Kind || !h.wait.Until.Equal(w.Until)) {
			// Still held, for another reason now: protected, then the
			// whole day spent (day), say so. Since stays while the kind
			// does, as the scheduler's class waits keep it.
			nw := h.wait
			if nw.Kind == w.Kind {
				nw.Since = w.Since
			}
			p.mu.Lock()
			if j.parkWait == w {
				j.parkWait = &nw
			}
			p.mu.Unlock()
		}
	}
	if len(back) == 0 {
		return false
	}
	// Oldest first, each behind the jobs of its priority queued already.
	slices.SortFunc(back, func(a, b queued) int {
		return cmp.Or(a.rec.CreatedAt.Compare(b.rec.CreatedAt), cmp.Compare(a.rec.ID, b.rec.ID))
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, b := range back {
		i := slices.Index(p.parked, b.j)
		if i < 0 {
			continue // canceled meanwhile
		}
		p.parked = slices.Delete(p.parked, i, i+1)
		b.j.parkWait = nil
		b.j.parking.Store(false)
		lv := priorityLevel(b.rec.Priority)
		p.queue[lv] = append(p.queue[lv], b.j)
		n++
	}
	if n > 0 {
		p.log.Info().Int("jobs", n).Msg("parked jobs queued again: their quota came back")
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return n > 0
}

// WithParked returns s with the waits of the parked jobs (see above): a
// class of s that shows no wait gets the parked jobs' wait on it, the
// earliest parked, so that a class whose every job waiting for the next
// day was parked (its calls withdrawn from the scheduler) still says so
// (GET /v1/usage, usage, the status page, batch -server). Safe for
// concurrent use.
func (p *Pipeline) WithParked(s scheduler.Summary) scheduler.Summary {
	p.mu.Lock()
	byClass := make(map[string]scheduler.Wait)
	for _, j := range p.parked {
		if w := j.parkWait; w != nil {
			if b, ok := byClass[w.Class]; !ok || w.Since.Before(b.Since) {
				byClass[w.Class] = *w
			}
		}
	}
	p.mu.Unlock()
	if len(byClass) == 0 {
		return s
	}
	s.Classes = slices.Clone(s.Classes)
	for i := range s.Classes {
		if w, ok := byClass[s.Classes[i].Name]; ok && s.Classes[i].Wait == nil {
			s.Classes[i].Wait = &w
		}
	}
	return s
}
