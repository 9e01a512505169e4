package store

import (
	"context"
	"time"
)

// SetRedisWindow shortens the shared window of s (60 s) so that a test can
// cross many windows in real time.
func SetRedisWindow(s *Redis, d time.Duration) {
	s.window = d
	s.f.mu.Lock()
	s.f.gran = max(1, d.Milliseconds()/60)
	s.f.mu.Unlock()
}

// SetRedisGrantLife sets the longest grant life the safe share of an
// outage assumes of the other processes (bucket.MaxChunkLife, 30 s), for tests
// that shorten the window.
func SetRedisGrantLife(s *Redis, d time.Duration) {
	s.f.mu.Lock()
	s.f.minLife = d
	s.f.mu.Unlock()
}

// ResyncRedis re-reads the shared state as Watch does, calling fn with
// what changed.
func ResyncRedis(s *Redis, fn func(SharedEvent)) {
	s.resyncShared(context.Background(), fn)
}

// SetRedisOpTimeout sets how long a change of a key, a lane stop, a
// cooldown or an exhaustion waits for Redis (5 s).
func SetRedisOpTimeout(s *Redis, d time.Duration) {
	s.f.opTimeout = d
}

// MemberSlots is how many slots a window member holds (its name says).
func MemberSlots(member string) int { return memberSlots(member) }
