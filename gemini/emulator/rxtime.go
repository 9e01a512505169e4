package emulator

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// RecordReceiveTimes prepares srv to serve on ln (a TCP listener, as from
// net.Listen("tcp", ...)) so that a handler can learn, with ReceivedAt, when
// a request's bytes reached this machine rather than when the handler got
// to read them: a remote API receives a request when its bytes arrive,
// however busy its clients' machine is, while a handler here runs only when
// this process gets the CPU. Serve srv on the listener it returns:
//
//	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
//	srv.Serve(emulator.RecordReceiveTimes(srv, ln))
//
// On Linux the kernel stamps the received TCP data (SO_TIMESTAMPNS) and each
// read of a connection keeps the stamp of the last bytes it returned. Where
// that is not available (another OS, a listener that is not TCP, the option
// refused) RecordReceiveTimes returns ln unchanged and ReceivedAt falls back
// to the time it is called. It sets srv.ConnContext, calling the one
// already set first; call it before srv serves. Deadlines on the
// connections (ReadHeaderTimeout, ReadTimeout, IdleTimeout) work as
// without it.
func RecordReceiveTimes(srv *http.Server, ln net.Listener) net.Listener {
	tl, ok := ln.(*net.TCPListener)
	if !ok || !enableRxTimestamps(tl) {
		return ln
	}
	prev := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prev != nil {
			ctx = prev(ctx, c)
		}
		if rc, ok := c.(*rxConn); ok {
			ctx = context.WithValue(ctx, rxConnKey{}, rc)
		}
		return ctx
	}
	return &rxListener{tl}
}

// ReceivedAt returns when the bytes of r that the server has read so far
// reached this machine: called after r's body has been read to its end, the
// receive time of the request's last byte. For a request served on a
// listener from RecordReceiveTimes that is the kernel's receive time of
// the last TCP segment read (the time of the read itself when the kernel
// gave no stamp); otherwise (another server, the in-process Transport, a
// system without receive stamps) it is time.Now(), so called right after
// the body was read it is when the read completed. The returned time
// carries a monotonic reading, comparable with time.Now(). A client that
// pipelines requests (sends the next before the answer) can make it later
// than the request's last byte, never earlier. Safe for concurrent use.
func ReceivedAt(r *http.Request) time.Time {
	if rc, ok := r.Context().Value(rxConnKey{}).(*rxConn); ok {
		if t, ok := rc.lastReceived(); ok {
			return t
		}
	}
	return time.Now()
}

type rxConnKey struct{}

// rxListener accepts connections whose reads keep receive times.
type rxListener struct {
	*net.TCPListener
}

// Accept implements net.Listener. A connection whose stamps cannot be
// enabled is returned as it is (ReceivedAt then falls back to time.Now).
func (l *rxListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	rc, ok := newRxConn(c)
	if !ok {
		return c, nil
	}
	return rc, nil
}

// rxConn is an accepted TCP connection whose Read keeps the receive time
// of the bytes it last returned. Only net.Conn's methods (and CloseWrite,
// which net/http uses to close gracefully) are offered, so nothing can read
// the connection past Read.
type rxConn struct {
	net.Conn // a *net.TCPConn
	tcp      *net.TCPConn
	raw      interface {
		Read(func(fd uintptr) bool) error
	}
	base time.Time    // rxBeforeAccept before the accept; has a monotonic reading
	last atomic.Int64 // receive time of the bytes last read, ns after base; 0: none yet
	// stamped tells whether the last read had the kernel's stamp (the kernel
	// turns stamping on asynchronously: the first packets after the first
	// socket asks for it can come without).
	stamped atomic.Bool
}

// CloseWrite shuts down the writing side (net/http uses it to close a
// connection gracefully).
func (c *rxConn) CloseWrite() error { return c.tcp.CloseWrite() }

// lastReceived returns the receive time of the bytes last read, if any.
func (c *rxConn) lastReceived() (time.Time, bool) {
	d := c.last.Load()
	if d == 0 {
		return time.Time{}, false
	}
	return c.base.Add(time.Duration(d)), true
}

// setReceived records t (its monotonic reading is kept: t comes from
// time.Now() shifted back by the stamp's age).
func (c *rxConn) setReceived(t time.Time) {
	d := t.Sub(c.base)
	if d <= 0 {
		// Received more than rxBeforeAccept before the accept: keep "some
		// time" distinct from "none".
		d = 1
	}
	c.last.Store(int64(d))
}

// rxBeforeAccept is how long before its accept a connection's base is set.
// A new connection's bytes can reach the kernel well before this process
// accepts it (the kernel completes the handshake and queues the data; a busy
// process runs its accept loop late): their receive time is then before
// the accept, and is kept as it is, not moved to the accept (which counted
// a request up to a second after it arrived). An hour is far longer than any
// connection waits in the listen queue.
const rxBeforeAccept = time.Hour

// receivedAt converts a kernel receive stamp (wall clock) to a time with a
// monotonic reading: now shifted back by the stamp's age; a stamp that
// seems to be after now (clock granularity) is now.
func receivedAt(now, stamp time.Time) time.Time {
	age := now.Sub(stamp) // wall clock: stamp has no monotonic reading
	if age < 0 {
		age = 0
	}
	return now.Add(-age)
}
