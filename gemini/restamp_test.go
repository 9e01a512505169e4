package gemini

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// gatedTransport holds every request's body until release is closed, so
// the real http.Transport under it writes the request only then; reached
// is closed when the first body read is waiting.
type gatedTransport struct {
	base    http.RoundTripper
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if req.Body != nil {
		r.Body = &gatedBody{ReadCloser: req.Body, g: g}
	}
	return g.base.RoundTrip(r)
}

type gatedBody struct {
	io.ReadCloser
	g    *gatedTransport
	done bool
}

func (b *gatedBody) Read(p []byte) (int, error) {
	if !b.done {
		b.done = true
		b.g.once.Do(func() { close(b.g.reached) })
		<-b.g.release
	}
	return b.ReadCloser.Read(p)
}

// TestWroteReportedThroughTransport: through the real genai client, a real
// http.Transport and the emulator on loopback, the time a request is
// written is reported to the lease (Lease.Wrote) from the transport's
// WroteRequest, after its body was held back, and a trace the caller put in
// the context still sees the write (the traces are composed).
func TestWroteReportedThroughTransport(t *testing.T) {
	srv := httptest.NewServer(newEmulator(t, emulator.Config{}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	g := &gatedTransport{base: tr, reached: make(chan struct{}), release: make(chan struct{})}
	c, err := New(context.Background(), Config{Keys: []Key{{ID: testKeyID, Secret: testSecret}}, BaseURL: srv.URL,
		HTTPClient: &http.Client{Transport: g}})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		wrote []time.Time
	)
	c.reportWrote = func(_ scheduler.Lease, at time.Time) {
		mu.Lock()
		wrote = append(wrote, at)
		mu.Unlock()
	}
	var theirs atomic.Int32
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { theirs.Add(1) },
	})
	done := make(chan error, 1)
	go func() {
		_, err := c.analyze(ctx, testLease("text"), testSlideshow())
		done <- err
	}()
	<-g.reached
	mu.Lock()
	early := len(wrote)
	mu.Unlock()
	released := time.Now()
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if early != 0 {
		t.Fatalf("a write reported before the body was written")
	}
	if len(wrote) != 1 || wrote[0].Before(released) {
		t.Fatalf("writes reported %v, want one at or after %v (the body's release)", wrote, released)
	}
	if n := theirs.Load(); n != 1 {
		t.Fatalf("the caller's trace saw %d writes, want 1", n)
	}
}

// lateWriter serves requests with the emulator in process (inside a
// synctest bubble) as a transport that writes every third request a second
// late: it waits, reports the write to the request's trace (as
// http.Transport does), then hands it to the emulator, which counts it on
// arrival.
type lateWriter struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (lw *lateWriter) RoundTrip(req *http.Request) (*http.Response, error) {
	if lw.n.Add(1)%3 == 0 {
		time.Sleep(time.Second)
	}
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.WroteRequest != nil {
		tr.WroteRequest(httptrace.WroteRequestInfo{})
	}
	return lw.base.RoundTrip(req)
}

// TestLateWritesNoMinute429: the kind of the binary runs' per-minute 429s,
// on a virtual clock. The emulator at limits equal to the scheduler's (text
// RPM 10, margin 250 ms, the default burst: a minute's requests at once),
// four minutes of work, and a transport that writes every third request 1 s
// after its dispatch, more than the margin. Each late request reaches the
// API after its stamp; before Lease.Wrote (reportWrote doing nothing) the
// next minute's burst reused its slot and the emulator answered per-minute
// 429s; with it, none, and no 60 s window of arrivals over RPM.
func TestLateWritesNoMinute429(t *testing.T) {
	oldAndNew(t, "reported", "not reported (the old code)", func(t *testing.T, report bool) {
		synctest.Test(t, func(t *testing.T) {
			const rpm = 10
			r := newLateWriteRig(t, rpm, 10000)
			c := r.client(t, &lateWriter{base: r.emu.Transport()})
			if !report {
				c.reportWrote = func(scheduler.Lease, time.Time) {}
			}
			var wg sync.WaitGroup
			startAnalyses(t, &wg, c, 4*rpm)
			wg.Wait()
			n429, maxWin := r.minuteCounts()
			t.Logf("per-minute 429s %d, most arrivals in a 60 s window %d (RPM %d)", n429, maxWin, rpm)
			if report && (n429 != 0 || maxWin > rpm) {
				t.Fatalf("per-minute 429s %d, most arrivals in a 60 s window %d: want 0 and at most %d", n429, maxWin, rpm)
			}
			if !report && n429 == 0 {
				t.Fatalf("no per-minute 429 without the write reports: the test does not show the fault")
			}
		})
	})
}
