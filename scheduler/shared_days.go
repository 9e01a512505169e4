package scheduler

import (
	"context"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// sharedDays is a shared store that reads the lanes' shared day counts
// (store.Redis). With one, daily protection (Config.Critical) compares the
// day used by all the processes sharing a lane with its RPD, not this
// process's own use: the counts come with every grant (Reserve's reply and
// a refused grant's count), from a read when Run starts, and from a read
// every HeartbeatEvery (other processes' grants and give-backs).
type sharedDays interface {
	SharedDaily(ctx context.Context, day string) ([]store.DailyCount, error)
}

// refreshSharedDays reads today's shared day counts into the classes and
// wakes the dispatchers of a class whose protection changed.
func (s *Scheduler) refreshSharedDays(ctx context.Context, sd sharedDays) error {
	now := time.Now()
	counts, err := sd.SharedDaily(ctx, bucket.Day(now, s.cfg.Location))
	if err != nil {
		return err
	}
	before := make([]bool, len(s.order))
	for i, r := range s.order {
		before[i] = r.class.Critical(now)
	}
	for _, dc := range counts {
		if r := s.classes[dc.Lane.Class]; r != nil {
			r.class.SharedDay(dc.Lane.Project, dc.Day, dc.Count, now)
		}
	}
	for i, r := range s.order {
		if r.class.Critical(now) != before[i] {
			r.signal()
		}
	}
	return nil
}

// startSharedDays, with a sharedDays store, reads the shared day counts
// once (before the dispatchers start, so that no job passes daily
// protection on this process's own count alone) and then every
// HeartbeatEvery until ctx ends; the returned wait blocks until that loop
// has returned. Without one it does nothing.
func (s *Scheduler) startSharedDays(ctx context.Context) (wait func()) {
	sd, ok := s.store.(sharedDays)
	if !ok {
		return func() {}
	}
	failing := false
	refresh := func() {
		err := s.refreshSharedDays(ctx, sd)
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil && !failing:
			failing = true
			s.log.Warn().Err(err).Msg("reading the cluster's day counts failed: daily protection counts the last ones read and this process's own use")
		case err == nil && failing:
			failing = false
			s.log.Info().Msg("reading the cluster's day counts restored")
		}
	}
	refresh()
	s.log.Debug().Msg("daily protection counts the cluster's day")
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(HeartbeatEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				refresh()
			}
		}
	}()
	return func() { <-done }
}
