//go:build !linux

package redistest

import "syscall"

// dieWithParent: only Linux has a parent-death signal; elsewhere a killed
// test binary may leave its redis-server running.
func dieWithParent() *syscall.SysProcAttr { return nil }
