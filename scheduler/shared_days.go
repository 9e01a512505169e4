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

// applySharedDays records shared day counts in the classes, releases the
// lanes held "cluster day full" (HoldDay) whose count of today is below RPD
// (other processes gave unused units back: a settlement, an idle lane's
// give-back, a clean stop), so that each asks Redis again, and wakes the
// dispatchers of a class whose protection changed or whose lane was
// released. Called with the counts each heartbeat reads (every
// HeartbeatEvery) and once at start: a lane held for the day asks again at
// most once per heartbeat, never per request.
func (s *Scheduler) applySharedDays(counts []store.DailyCount, now time.Time) {
	before := make([]bool, len(s.order))
	for i, r := range s.order {
		before[i] = r.class.Critical(now)
	}
	today := bucket.Day(now, s.cfg.Location)
	released := make(map[*runner]bool)
	for _, dc := range counts {
		r := s.classes[dc.Lane.Class]
		if r == nil {
			continue
		}
		r.class.SharedDay(dc.Lane.Project, dc.Day, dc.Count, now)
		if dc.Day == today && dc.Count < r.class.Limits().RPD && r.class.Unhold(dc.Lane.Project, HoldDay, now) {
			released[r] = true
			s.log.Debug().Str("class", r.name).Str("project", dc.Lane.Project).Int("day_count", dc.Count).
				Msg("the cluster's day has room again: the lane held for the day asks again")
		}
	}
	for i, r := range s.order {
		if released[r] || r.class.Critical(now) != before[i] {
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
