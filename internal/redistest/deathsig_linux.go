package redistest

import "syscall"

// dieWithParent makes the kernel send SIGKILL to the server when the thread
// that started it exits, which the test binary's death does (see start).
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
