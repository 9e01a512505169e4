package emulator

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// clockSlack absorbs the difference between the kernel's wall-clock stamp
// converted to a monotonic time and a time.Now() taken around a write.
const clockSlack = time.Millisecond

// errReset is how a server's close can reach a client that had sent bytes
// the server never read.
var errReset = syscall.ECONNRESET

// serveRx serves h on a loopback port through RecordReceiveTimes and
// returns the address; the listener must keep receive stamps (Linux).
func serveRx(t *testing.T, h http.Handler, config func(*http.Server)) (string, *atomic.Int64) {
	t.Helper()
	return serveRxWrapped(t, h, config, nil)
}

// serveRxWrapped is serveRx with the server's listener wrapped by wrap (when
// not nil) after RecordReceiveTimes.
func serveRxWrapped(t *testing.T, h http.Handler, config func(*http.Server), wrap func(net.Listener) net.Listener) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := new(atomic.Int64)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}}
	if config != nil {
		config(srv)
	}
	rl := RecordReceiveTimes(srv, ln)
	if _, ok := rl.(*rxListener); !ok {
		ln.Close()
		t.Fatalf("RecordReceiveTimes did not enable receive stamps on this Linux machine")
	}
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler)
	mux.HandleFunc("/_warm", func(w http.ResponseWriter, r *http.Request) {
		rc, _ := r.Context().Value(rxConnKey{}).(*rxConn)
		fmt.Fprint(w, rc != nil && rc.stamped.Load())
	})
	srv.Handler = mux
	served := rl
	if wrap != nil {
		served = wrap(rl)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(served) }()
	t.Cleanup(func() { srv.Close(); <-done })
	warmUp(t, rl.Addr().String())
	conns.Store(0)
	return rl.Addr().String(), conns
}

// warmUp sends requests until one arrives with the kernel's stamp: the
// kernel turns receive stamping on asynchronously (a work item) after the
// first socket asks for it, so the first packets can come without.
func warmUp(t *testing.T, addr string) {
	t.Helper()
	c := dial(t, addr)
	defer c.Close()
	br := bufio.NewReader(c)
	for start := time.Now(); time.Since(start) < time.Minute; {
		write(t, c, "GET /_warm HTTP/1.1\r\nHost: e\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) == "true" {
			return
		}
	}
	t.Fatal("no request came with the kernel's receive stamp in a minute")
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A bound, so a broken server fails the test instead of hanging it.
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	return c
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// held is a handler that signals its entry, waits to be released, then
// reads the body and reports ReceivedAt and when it started reading.
type held struct {
	entered, release chan struct{}
	got              chan [2]time.Time // {ReceivedAt, read start}
}

func newHeld() *held {
	return &held{entered: make(chan struct{}, 1), release: make(chan struct{}), got: make(chan [2]time.Time, 1)}
}

func (h *held) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.entered <- struct{}{}
	<-h.release
	start := time.Now()
	if _, err := io.ReadAll(r.Body); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	h.got <- [2]time.Time{ReceivedAt(r), start}
	io.WriteString(w, "ok")
}

// hold keeps the handler from reading for d after the last write: the
// bytes wait in the socket while this process is busy elsewhere.
func (h *held) hold(d time.Duration) {
	<-time.After(d)
	close(h.release)
}

func readOK(t *testing.T, c net.Conn) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("answer %d %q", resp.StatusCode, b)
	}
}

// TestReceivedAtIsWhenTheBytesArrived: the body is written while the
// handler is held; the handler reads it hundreds of milliseconds later.
// ReceivedAt is the time the bytes arrived (after the write began, before
// the handler read them), not the time of the read.
func TestReceivedAtIsWhenTheBytesArrived(t *testing.T) {
	h := newHeld()
	addr, _ := serveRx(t, h, nil)
	c := dial(t, addr)
	write(t, c, "POST /x HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n\r\n")
	<-h.entered // the headers have been read; the body is not sent yet
	w0 := time.Now()
	write(t, c, "hello")
	h.hold(200 * time.Millisecond)
	readOK(t, c)
	got := <-h.got
	rx, start := got[0], got[1]
	t.Logf("received %v after the write began, %v before the handler read", rx.Sub(w0), start.Sub(rx))
	if rx.Before(w0.Add(-clockSlack)) || !rx.Before(start) {
		t.Errorf("ReceivedAt %v after the write began and %v before the handler read: want >= 0 and > 0", rx.Sub(w0), start.Sub(rx))
	}
}

// acceptGate lets its first Accept through (serveRx's warm-up connection)
// and holds every later one until open is closed.
type acceptGate struct {
	net.Listener
	calls atomic.Int64
	open  chan struct{}
}

func (g *acceptGate) Accept() (net.Conn, error) {
	if g.calls.Add(1) > 1 {
		<-g.open
	}
	return g.Listener.Accept()
}

// TestReceivedAtBeforeAccept: a new connection's request reaches the
// kernel while the server is too busy to accept it (here: its accept loop
// held for 300 ms). ReceivedAt is when the bytes arrived, before the
// accept, not the accept's time (the emulator counted such requests up to
// a second late when a loaded machine ran its accept loop late).
func TestReceivedAtBeforeAccept(t *testing.T) {
	gate := &acceptGate{open: make(chan struct{})}
	got := make(chan time.Time, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		got <- ReceivedAt(r)
		io.WriteString(w, "ok")
	})
	addr, _ := serveRxWrapped(t, h, nil, func(l net.Listener) net.Listener {
		gate.Listener = l
		return gate
	})
	c := dial(t, addr) // the kernel completes the handshake; nobody accepts yet
	w0 := time.Now()
	write(t, c, "POST /x HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n\r\nhello")
	w1 := time.Now()
	<-time.After(300 * time.Millisecond) // the accept loop is late
	accepted := time.Now()
	close(gate.open)
	readOK(t, c)
	rx := <-got
	t.Logf("received %v after the write began, %v before the accept was let through", rx.Sub(w0), accepted.Sub(rx))
	if rx.Before(w0.Add(-clockSlack)) || rx.After(w1.Add(clockSlack)) {
		t.Errorf("ReceivedAt %v after the write began, %v after it ended (the accept %v after it): want within the write",
			rx.Sub(w0), rx.Sub(w1), accepted.Sub(w1))
	}
}

// TestReceivedAtSplitBody: a body sent in many segments, the handler held
// until all are in: ReceivedAt is the last segment's receive time.
func TestReceivedAtSplitBody(t *testing.T) {
	h := newHeld()
	addr, _ := serveRx(t, h, nil)
	c := dial(t, addr)
	const parts = 8
	write(t, c, fmt.Sprintf("POST /x HTTP/1.1\r\nHost: e\r\nContent-Length: %d\r\n\r\n", parts*100))
	<-h.entered
	var lastWrite, firstDone time.Time
	for i := range parts {
		if i > 0 {
			<-time.After(3 * time.Millisecond) // a gap, so the segments' stamps differ
		}
		lastWrite = time.Now()
		write(t, c, strings.Repeat(string(rune('a'+i)), 100))
		if i == 0 {
			firstDone = time.Now()
		}
	}
	h.hold(100 * time.Millisecond)
	readOK(t, c)
	got := <-h.got
	rx, start := got[0], got[1]
	t.Logf("received %v after the last write began (first written %v before it), %v before the handler read",
		rx.Sub(lastWrite), lastWrite.Sub(firstDone), start.Sub(rx))
	if rx.Before(lastWrite.Add(-clockSlack)) || !rx.Before(start) {
		t.Errorf("ReceivedAt %v after the last segment's write began, %v before the read: want >= 0 and > 0", rx.Sub(lastWrite), start.Sub(rx))
	}
}

// TestReceivedAtKeepAlive: requests one after another on one connection
// each get their own receive time, between their write and their answer.
func TestReceivedAtKeepAlive(t *testing.T) {
	got := make(chan time.Time, 1)
	addr, conns := serveRx(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		got <- ReceivedAt(r)
		io.WriteString(w, "ok")
	}), nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	var prev time.Time
	for i := range 20 {
		before := time.Now()
		write(t, c, fmt.Sprintf("POST /x HTTP/1.1\r\nHost: e\r\nContent-Length: 6\r\n\r\nbody%02d", i))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		after := time.Now()
		rx := <-got
		if rx.Before(before.Add(-clockSlack)) || rx.After(after) || !rx.After(prev) {
			t.Errorf("request %d: ReceivedAt %v after its write began, %v before its answer was read, %v after the previous one",
				i, rx.Sub(before), after.Sub(rx), rx.Sub(prev))
		}
		prev = rx
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// TestReceiveTimesKeepDeadlines: the server's deadlines still end reads:
// a connection that never completes its headers is closed at
// ReadHeaderTimeout, an idle one at IdleTimeout.
func TestReceiveTimesKeepDeadlines(t *testing.T) {
	served := make(chan struct{}, 4)
	addr, _ := serveRx(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served <- struct{}{}
		io.WriteString(w, "ok")
	}), func(s *http.Server) {
		s.ReadHeaderTimeout = 50 * time.Millisecond
		s.IdleTimeout = 50 * time.Millisecond
	})

	c := dial(t, addr)
	write(t, c, "GET / HTTP/1.1\r\nHost: e\r\n") // never finished
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, errReset) {
		t.Errorf("incomplete headers: the server did not close the connection: %v", err)
	}
	if len(served) != 0 {
		t.Error("a request without its end of headers was served")
	}

	c = dial(t, addr)
	write(t, c, "GET / HTTP/1.1\r\nHost: e\r\n\r\n")
	readOK(t, c)
	if b, err := io.ReadAll(c); (err != nil && !errors.Is(err, errReset)) || len(b) != 0 {
		t.Errorf("idle connection: the server did not close it: %q %v", b, err)
	}
}

// TestEmulatorCountsAtReceiveTime: served through RecordReceiveTimes, the
// emulator counts a generateContent request when its body reached the
// machine: a request whose handler is held 200 ms after the body arrived
// counts (Stats.Sent) at its arrival, not when the emulator read it.
func TestEmulatorCountsAtReceiveTime(t *testing.T) {
	e := mustNew(t, oneKey(Limits{RPM: 10}))
	entered, release := make(chan struct{}, 1), make(chan struct{})
	started := make(chan time.Time, 1)
	addr, _ := serveRx(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		started <- time.Now()
		e.ServeHTTP(w, r)
	}), nil)
	c := dial(t, addr)
	body := `{"contents":[{"parts":[{"text":"paper boats"}]}]}`
	write(t, c, fmt.Sprintf("POST /v1beta/models/%s:generateContent HTTP/1.1\r\nHost: e\r\n"+
		"x-goog-api-key: secret-1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", textModel, len(body)))
	<-entered
	w0 := time.Now()
	write(t, c, body)
	<-time.After(200 * time.Millisecond) // the body waits while the handler is held
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	start := <-started
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sent := e.Stats().Sent[LaneKey{"k1", textModel}]
	if len(sent) != 1 {
		t.Fatalf("sent %v, want one time", sent)
	}
	at := sent[0]
	t.Logf("counted %v after the write began, %v before the emulator read it", at.Sub(w0), start.Sub(at))
	if at.Before(w0.Add(-clockSlack)) || !at.Before(start) {
		t.Errorf("counted %v after the body's write began, %v before the emulator got the request: want >= 0 and > 0", at.Sub(w0), start.Sub(at))
	}
}
