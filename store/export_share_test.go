package store

// SetRedisReconnectHook sets a function a reconnect of s calls as it is
// about to wait for the grants from the share under way (tests only; set
// it before s is used concurrently).
func SetRedisReconnectHook(s *Redis, fn func()) { s.f.reconnectHook = fn }

// SetRedisJoinHook sets a function a join of s (a re-seed) calls as it is
// about to wait for the grants whose replies are on their way (tests only;
// set it before s is used concurrently).
func SetRedisJoinHook(s *Redis, fn func()) { s.joinHook = fn }

// SetRedisShareHook sets a function a grant from the share of s calls as it
// is about to wait for a reconnect under way (tests only; set it before s
// is used concurrently).
func SetRedisShareHook(s *Redis, fn func()) { s.f.shareHook = fn }

// RedisReconnecting reports whether a reconnect of s holds the share's
// grants (shareMu) now.
func RedisReconnecting(s *Redis) bool {
	if s.f.shareMu.TryRLock() {
		s.f.shareMu.RUnlock()
		return false
	}
	return true
}
