package store

import "time"

// SetRedisBeatClock sets the clock of s's heartbeats carried by grants
// (when one is due, LastBeat; time.Now), for tests on a virtual clock.
func SetRedisBeatClock(s *Redis, now func() time.Time) {
	s.beat.mu.Lock()
	s.beat.now = now
	s.beat.mu.Unlock()
}
