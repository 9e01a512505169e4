package store

// SetRedisReconnectHook sets a function a reconnect of s calls as it is
// about to wait for the grants from the share under way (tests only; set
// it before s is used concurrently).
func SetRedisReconnectHook(s *Redis, fn func()) { s.f.reconnectHook = fn }
