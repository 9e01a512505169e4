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

// SetRedisPrefetch turns taking grants ahead (redis_prefetch.go) on or
// off; call it before the first Reserve.
func SetRedisPrefetch(s *Redis, on bool) {
	s.pf.mu.Lock()
	s.pf.off = !on
	s.pf.mu.Unlock()
}

// WaitRedisPrefetch waits until no grant is being taken ahead nor given
// back, and reports how many lanes hold one granted and not served yet.
// Call it while no Reserve runs.
func WaitRedisPrefetch(s *Redis) int {
	s.pf.wg.Wait()
	s.pf.mu.Lock()
	defer s.pf.mu.Unlock()
	held := 0
	for _, a := range s.pf.lanes {
		if a.pre != nil {
			held++
		}
	}
	return held
}

// RedisPrefetchServed returns how many records s served from grants taken
// ahead.
func RedisPrefetchServed(s *Redis) int { return int(s.pf.served.Load()) }

// RedisLife returns the name of s's life in Redis: its heartbeat's member
// in the processes zset, its limits registration's key suffix.
func RedisLife(s *Redis) string { return s.id }

// DisplayName is displayName: the process name of a life's name in Redis.
func DisplayName(id string) string { return displayName(id) }
