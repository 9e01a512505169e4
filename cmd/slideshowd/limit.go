package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"golang.org/x/net/netutil"
)

// reservedConns are the connections kept, beyond max_connections, for
// /healthz and /readyz: a client that opens every allowed connection (idle
// keep-alives, slowloris) cannot keep the health checks out.
const reservedConns = 16

// connLimit bounds the open connections of a listener at max plus
// reservedConns (netutil.LimitListener: beyond that, Accept waits and new
// connections queue in the kernel). A connection accepted while max are
// open is a reserved one: it is served /healthz and /readyz only, one
// request, and closed. While max are open the server's keep-alives are off,
// which closes the idle connections at once and frees their slots; they
// come back on below three quarters of max.
type connLimit struct {
	net.Listener
	max  int64
	open atomic.Int64

	mu        sync.Mutex
	srv       *http.Server
	keepAlive bool
}

func newConnLimit(ln net.Listener, max int, srv *http.Server) *connLimit {
	return &connLimit{Listener: netutil.LimitListener(ln, max+reservedConns), max: int64(max), srv: srv, keepAlive: true}
}

type reservedKey struct{}

// Accept implements net.Listener.
func (l *connLimit) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	n := l.open.Add(1)
	l.adjust(n)
	return &limitedConn{Conn: c, l: l, reserved: n > l.max}, nil
}

// adjust turns keep-alives off at max open connections and on again below
// three quarters of max.
func (l *connLimit) adjust(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.keepAlive && n >= l.max:
		l.keepAlive = false
		l.srv.SetKeepAlivesEnabled(false)
	case !l.keepAlive && n <= l.max*3/4:
		l.keepAlive = true
		l.srv.SetKeepAlivesEnabled(true)
	}
}

type limitedConn struct {
	net.Conn
	l        *connLimit
	reserved bool
	once     sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.adjust(c.l.open.Add(-1)) })
	return err
}

// connContext marks the requests of a reserved connection (http.Server's
// ConnContext).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*limitedConn); ok && lc.reserved {
		return context.WithValue(ctx, reservedKey{}, true)
	}
	return ctx
}

// limitReserved serves health checks only on reserved connections, and
// closes them after one answer.
func limitReserved(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(reservedKey{}) == nil {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", "5")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":503,"status":"UNAVAILABLE","message":"connection limit reached (max_connections): try again shortly"}}` + "\n"))
	})
}
