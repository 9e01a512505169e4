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
// a refused grant's count), from a read when Run starts, and from every
// heartbeat (other processes' grants and give-backs; see viewedDays).
type sharedDays interface {
	SharedDaily(ctx context.Context, day string) ([]store.DailyCount, error)
}

// viewedDays is a shared store whose heartbeat reads the lanes' shared day
// counts in its own round trip (store.Redis.ViewedDaily): Run takes them
// from there after each heartbeat instead of reading them again.
type viewedDays interface {
	ViewedDaily() ([]store.DailyCount, time.Time)
}

// refreshSharedDays reads today's shared day counts into the classes (see
// applySharedDays).
func (s *Scheduler) refreshSharedDays(ctx context.Context, sd sharedDays) error {
	now := time.Now()
	counts, err := sd.SharedDaily(ctx, bucket.Day(now, s.cfg.Location))
	if err != nil {
		return err
	}
	s.applySharedDays(counts, now)
	return nil
}

// applySharedDays records shared day counts in the classes and wakes the
// dispatchers of a class whose protection changed.
func (s *Scheduler) applySharedDays(counts []store.DailyCount, now time.Time) {
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
}

// startSharedDays, with a sharedDays store, reads the shared day counts
// once, before the dispatchers start, so that no job passes daily
// protection on this process's own count alone; from then on the
// heartbeat brings them (heartbeatDays). Without one it does nothing.
func (s *Scheduler) startSharedDays(ctx context.Context) {
	sd, ok := s.store.(sharedDays)
	if !ok {
		return
	}
	if err := s.refreshSharedDays(ctx, sd); err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("reading the cluster's day counts failed: daily protection counts this process's own use and the counts of its grants, and those of its next heartbeat")
		}
		return
	}
	s.log.Debug().Msg("daily protection counts the cluster's day")
}

// heartbeatDays, after a heartbeat that Redis answered, records the day
// counts it read (viewedDays). A sharedDays store without them is read
// again (one more round trip).
func (s *Scheduler) heartbeatDays(ctx context.Context) {
	if vd, ok := s.store.(viewedDays); ok {
		if counts, at := vd.ViewedDaily(); !at.IsZero() {
			s.applySharedDays(counts, time.Now())
		}
		return
	}
	if sd, ok := s.store.(sharedDays); ok {
		if err := s.refreshSharedDays(ctx, sd); err != nil && ctx.Err() == nil {
			s.log.Debug().Err(err).Msg("reading the cluster's day counts failed")
		}
	}
}
