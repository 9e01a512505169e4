package store

import "time"

// SetRedisWindow shortens the shared window of s (60 s) so that a test can
// cross many windows in real time.
func SetRedisWindow(s *Redis, d time.Duration) { s.window = d }
