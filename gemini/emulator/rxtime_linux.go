package emulator

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// enableRxTimestamps sets SO_TIMESTAMPNS on the listening socket, so the
// kernel stamps received packets from now on (connections accepted later
// inherit the option, and the stamps of a request's first bytes, which can
// arrive before the accept, are there too). It reports whether the option
// is set.
func enableRxTimestamps(l *net.TCPListener) bool {
	rc, err := l.SyscallConn()
	if err != nil {
		return false
	}
	return setTimestampNS(rc)
}

func setTimestampNS(rc syscall.RawConn) bool {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// newRxConn wraps c, whose reads then keep receive stamps; false if the
// option cannot be set on it.
func newRxConn(c *net.TCPConn) (*rxConn, bool) {
	raw, err := c.SyscallConn()
	if err != nil || !setTimestampNS(raw) {
		return nil, false
	}
	return &rxConn{Conn: c, tcp: c, raw: raw, base: time.Now().Add(-rxBeforeAccept)}, true
}

// Read implements net.Conn: it reads with recvmsg and keeps the kernel's
// receive time of the last bytes returned (for TCP, the stamp of the last
// segment the read consumed), or the time of the read when the kernel gave
// none. Deadlines and blocking work as on the *net.TCPConn: the read waits
// in the runtime's poller, through syscall.RawConn.Read.
func (c *rxConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	// Room for one SCM_TIMESTAMPNS message (CmsgSpace of a timespec: 32
	// bytes on 64-bit systems) and more.
	var oob [64]byte
	var n, oobn int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), p, oob[:], 0)
			if rerr != syscall.EINTR {
				break
			}
		}
		return rerr != syscall.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		if _, ok := err.(syscall.Errno); ok {
			err = os.NewSyscallError("recvmsg", err)
		}
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	if n == 0 {
		return 0, io.EOF
	}
	now := time.Now()
	stamp, ok := parseStamp(oob[:oobn])
	if ok {
		c.setReceived(receivedAt(now, stamp))
	} else {
		c.setReceived(now)
	}
	c.stamped.Store(ok)
	return n, nil
}

// parseStamp finds an SCM_TIMESTAMPNS control message in oob.
func parseStamp(oob []byte) (time.Time, bool) {
	if len(oob) == 0 {
		return time.Time{}, false
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level != syscall.SOL_SOCKET || m.Header.Type != syscall.SCM_TIMESTAMPNS {
			continue
		}
		var ts syscall.Timespec
		b := unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts))
		if len(m.Data) < len(b) {
			continue
		}
		copy(b, m.Data)
		if ts.Sec == 0 && ts.Nsec == 0 {
			continue
		}
		return time.Unix(ts.Unix()), true
	}
	return time.Time{}, false
}
