package gemini

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// pipeNet dials in-memory connections (net.Pipe: a Write returns once the
// other end has read it, like a socket's kernel taking the bytes) to
// goroutines serving HTTP/1.1 with h, so a real http.Transport works inside
// a synctest bubble. Close it (after the transport's CloseIdleConnections)
// to wait for its servers.
type pipeNet struct {
	h  http.Handler
	wg sync.WaitGroup
}

func (pn *pipeNet) dial(context.Context, string, string) (net.Conn, error) {
	c, s := net.Pipe()
	pn.wg.Go(func() { servePipe(pn.h, s) })
	return &pipeConn{Conn: c}, nil
}

func (pn *pipeNet) Close() { pn.wg.Wait() }

// servePipe serves c's requests with h, one at a time, until c closes.
func servePipe(h http.Handler, c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:1"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		io.Copy(io.Discard, req.Body)
		resp := rec.Result()
		resp.ContentLength = int64(rec.Body.Len())
		if resp.Write(c) != nil {
			return
		}
	}
}

// pipeConn is the client end of a pipeNet connection. When hold is set,
// its next Write waits a second before writing (a sender descheduled);
// lastWrite is the end of its latest Write, in Unix nanoseconds.
type pipeConn struct {
	net.Conn
	hold      atomic.Bool
	lastWrite atomic.Int64
}

func (c *pipeConn) Write(p []byte) (int, error) {
	if c.hold.Swap(false) {
		time.Sleep(time.Second)
	}
	n, err := c.Conn.Write(p)
	c.lastWrite.Store(time.Now().UnixNano())
	return n, err
}

// underPipe returns the pipeConn under conn (a stampConn's or conn itself).
func underPipe(conn net.Conn) *pipeConn {
	if sc, ok := conn.(*stampConn); ok {
		conn = sc.Conn
	}
	pc, _ := conn.(*pipeConn)
	return pc
}

// holdFlush sends every every-th request (all when every is 1) with a
// trace that holds its connection's next Write from WroteRequest on: the
// transport's flush of the request's last buffered bytes (the whole of a
// request under 4 KiB) then reaches the network a second after
// WroteRequest. wrote records WroteRequest's times of the held requests.
type holdFlush struct {
	t     testing.TB
	base  http.RoundTripper
	every int64
	n     atomic.Int64
	mu    sync.Mutex
	wrote []time.Time
}

func (hf *holdFlush) RoundTrip(req *http.Request) (*http.Response, error) {
	if hf.n.Add(1)%hf.every != 0 {
		return hf.base.RoundTrip(req)
	}
	var pc atomic.Pointer[pipeConn]
	ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { pc.Store(underPipe(info.Conn)) },
		WroteRequest: func(httptrace.WroteRequestInfo) {
			hf.mu.Lock()
			hf.wrote = append(hf.wrote, time.Now())
			hf.mu.Unlock()
			pc.Load().hold.Store(true)
		},
	})
	resp, err := hf.base.RoundTrip(req.WithContext(ctx))
	if c := pc.Load(); c == nil || c.hold.Load() {
		hf.t.Errorf("the held request's flush wrote nothing after WroteRequest: the test does not hold the flush")
	}
	return resp, err
}

// slowHandler answers with h after delay (the API computing its answer).
func slowHandler(h http.Handler, delay time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(delay)
		r.Body = io.NopCloser(&byteReader{b: body})
		h.ServeHTTP(w, r)
	})
}

type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestWriteTimeIsLastByte: a request whose last bytes reach the network a
// second after the transport's WroteRequest (the sender descheduled
// between WroteRequest and the transport's flush of its buffer; here the
// flush is the whole request) is reported written when its last byte went,
// through a real http.Transport on the default client's dialer, at once
// (the API takes 10 s to answer; the report does not wait for it). Through
// a transport that does not dial with it (another client's), the time is
// WroteRequest's, a second early: what the old code reported on every
// transport.
func TestWriteTimeIsLastByte(t *testing.T) {
	oldAndNew(t, "default dialer", "other dialer (WroteRequest, the old code)", func(t *testing.T, stamped bool) {
		synctest.Test(t, func(t *testing.T) {
			pn := &pipeNet{h: slowHandler(newEmulator(t, emulator.Config{}), 10*time.Second)}
			defer pn.Close()
			dial := pn.dial
			if stamped {
				dial = stampDial(pn.dial)
			}
			tr := &http.Transport{DialContext: dial}
			defer tr.CloseIdleConnections()
			hf := &holdFlush{t: t, base: tr, every: 1}
			c := newTestClientRT(t, hf)
			var (
				mu               sync.Mutex
				reported, called []time.Time
			)
			c.reportWrote = func(_ scheduler.Lease, at time.Time) {
				mu.Lock()
				reported = append(reported, at)
				called = append(called, time.Now())
				mu.Unlock()
			}
			c.slotMoves = func(scheduler.Lease, time.Time) bool { return true }
			start := time.Now()
			if _, err := c.analyze(t.Context(), testLease(DefaultTextClass), testSlideshow()); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(hf.wrote) != 1 || len(reported) == 0 {
				t.Fatalf("WroteRequest %v, reported %v: want one WroteRequest and a report", hf.wrote, reported)
			}
			wrote, last := hf.wrote[0], slices.MaxFunc(reported, time.Time.Compare)
			t.Logf("WroteRequest %v after the call began; reported %v, the last one %v after WroteRequest, reports made %v after the call began",
				wrote.Sub(start), len(reported), last.Sub(wrote), called[len(called)-1].Sub(start))
			if !stamped {
				if !last.Equal(wrote) {
					t.Fatalf("reported written %v after WroteRequest, want WroteRequest's time", last.Sub(wrote))
				}
				return
			}
			if want := wrote.Add(time.Second); !last.Equal(want) {
				t.Fatalf("reported written %v after WroteRequest, want %v: when its last byte went", last.Sub(wrote), time.Second)
			}
			if late := called[len(called)-1].Sub(last); late != 0 {
				t.Fatalf("the last write was reported %v after it, want at once (before the answer)", late)
			}
		})
	})
}

// TestLateFlushNoMinute429: TestLateWritesNoMinute429's scenario (the
// genai client, the scheduler and the emulator at the same limits: text
// RPM 10, margin 250 ms, the default burst, four minutes of work) through a
// real http.Transport, with every third request's last bytes reaching the
// emulator a second after the transport's WroteRequest (the sender
// descheduled before the transport's flush): on the default client's
// dialer the write counts from the last byte and no per-minute 429 comes
// back, nor more than RPM arrivals in a 60 s window; on another dialer
// (WroteRequest's time, as the old code had on every transport) the late
// requests' slots stay at their dispatch and the emulator answers
// per-minute 429s.
func TestLateFlushNoMinute429(t *testing.T) {
	oldAndNew(t, "default dialer", "other dialer (WroteRequest, the old code)", func(t *testing.T, stamped bool) {
		synctest.Test(t, func(t *testing.T) {
			const rpm = 10
			r := newLateWriteRig(t, rpm, 10000)
			pn := &pipeNet{h: r.emu}
			defer pn.Close()
			dial := pn.dial
			if stamped {
				dial = stampDial(pn.dial)
			}
			tr := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: DefaultIdleConnsPerHost}
			defer tr.CloseIdleConnections()
			hf := &holdFlush{t: t, base: tr, every: 3}
			c := r.client(t, hf)
			var wg sync.WaitGroup
			startAnalyses(t, &wg, c, 4*rpm)
			wg.Wait()
			n429, maxWin := r.minuteCounts()
			hf.mu.Lock()
			held := len(hf.wrote)
			hf.mu.Unlock()
			t.Logf("%d requests held 1 s after WroteRequest; per-minute 429s %d, most arrivals in a 60 s window %d (RPM %d)", held, n429, maxWin, rpm)
			if held == 0 {
				t.Fatalf("no request held: the test does not show the fault")
			}
			if stamped && (n429 != 0 || maxWin > rpm) {
				t.Fatalf("per-minute 429s %d, most arrivals in a 60 s window %d: want 0 and at most %d", n429, maxWin, rpm)
			}
			if !stamped && n429 == 0 {
				t.Fatalf("no per-minute 429 with WroteRequest's time: the test does not show the fault")
			}
		})
	})
}

// TestWriteStampOwnership: a connection's Writes report to the call that
// owns it, only while it does (attached at GotConn, detached at the
// answer's first byte or the call's end); an unowned connection's Writes
// report nothing; a write still under way when the call ends counts as
// ending then; no report goroutine outlives finish.
func TestWriteStampOwnership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &Client{}
		var (
			mu       sync.Mutex
			reported []time.Time
		)
		c.reportWrote = func(_ scheduler.Lease, at time.Time) {
			mu.Lock()
			reported = append(reported, at)
			mu.Unlock()
		}
		c.slotMoves = func(scheduler.Lease, time.Time) bool { return true }
		last := func() (time.Time, int) {
			mu.Lock()
			defer mu.Unlock()
			if len(reported) == 0 {
				return time.Time{}, 0
			}
			return slices.MaxFunc(reported, time.Time.Compare), len(reported)
		}
		client, server := net.Pipe()
		defer server.Close()
		go io.Copy(io.Discard, server)
		sc := &stampConn{Conn: client}
		defer sc.Close()
		w := &writeStamp{c: c}

		sc.Write([]byte("unowned"))
		synctest.Wait()
		if _, n := last(); n != 0 {
			t.Fatalf("an unowned connection's write reported")
		}
		w.attach(sc)
		time.Sleep(time.Second)
		sc.Write([]byte("owned"))
		t1 := time.Now()
		synctest.Wait()
		if at, n := last(); n != 1 || !at.Equal(t1) {
			t.Fatalf("reported %d, the last at %v: want one, at the write's end %v", n, at, t1)
		}
		w.detach()
		time.Sleep(time.Second)
		sc.Write([]byte("after the answer began"))
		synctest.Wait()
		if at, n := last(); n != 1 || !at.Equal(t1) {
			t.Fatalf("a write after detach reported (%d reports, the last at %v)", n, at)
		}

		// A write under way when the call ends: reported as ending then.
		w2 := &writeStamp{c: c}
		w2.attach(sc)
		blocked, unblock := net.Pipe()
		defer unblock.Close()
		sc2 := &stampConn{Conn: blocked}
		defer sc2.Close()
		w2.attach(sc2)
		go sc2.Write([]byte("never read until later"))
		synctest.Wait()
		time.Sleep(time.Second)
		end := time.Now()
		w2.finish()
		if at, _ := last(); !at.Equal(end) {
			t.Fatalf("a write under way at the call's end reported at %v, want the end %v", at, end)
		}
		if sc.owner.Load() != nil || sc2.owner.Load() != nil {
			t.Fatalf("finish left a connection owned")
		}
		_, before := last()
		go io.Copy(io.Discard, unblock)
		synctest.Wait()
		if _, n := last(); n != before {
			t.Fatalf("the write that ended after finish reported")
		}
	})
}

// TestStampableProtocols: a default-dialer connection ties to a request
// over plain HTTP/1.1 and over TLS with HTTP/1.1 (its TLS records' Writes
// are what goes to the socket), never over HTTP/2 (TLS with ALPN h2, or
// one that began with the HTTP/2 preface), nor when it was not dialed by
// stampDial. Over TLS and HTTP/1.1 the reported write time is at or after
// the end of the last Write to the socket before the answer.
func TestStampableProtocols(t *testing.T) {
	for _, tt := range []struct {
		name    string
		h2, tls bool
		stamped bool
		want    bool
	}{
		{"plain HTTP/1.1", false, false, true, true},
		{"TLS HTTP/1.1", false, true, true, true},
		{"TLS HTTP/2", true, true, true, false},
		{"TLS HTTP/1.1 other dialer", false, true, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(newEmulator(t, emulator.Config{}))
			srv.EnableHTTP2 = tt.h2
			if tt.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			tr := srv.Client().Transport.(*http.Transport).Clone()
			tr.ForceAttemptHTTP2 = tt.h2
			var (
				mu    sync.Mutex
				raw   []*recConn
				under atomic.Bool // GotConn found a stampConn to tie
			)
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				rc := &recConn{Conn: c}
				mu.Lock()
				raw = append(raw, rc)
				mu.Unlock()
				return rc, nil
			}
			tr.DialContext = dial
			if tt.stamped {
				tr.DialContext = stampDial(dial)
			}
			defer tr.CloseIdleConnections()
			c, err := New(t.Context(), Config{Keys: []Key{{ID: testKeyID, Secret: testSecret}}, BaseURL: srv.URL,
				HTTPClient: &http.Client{Transport: tr}})
			if err != nil {
				t.Fatal(err)
			}
			var reported []time.Time
			c.reportWrote = func(_ scheduler.Lease, at time.Time) {
				mu.Lock()
				reported = append(reported, at)
				mu.Unlock()
			}
			var proto atomic.Value
			ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
				GotConn: func(info httptrace.GotConnInfo) {
					under.Store(stampable(info.Conn) != nil)
					if tc, ok := info.Conn.(*tls.Conn); ok {
						proto.Store(tc.ConnectionState().NegotiatedProtocol)
					}
				},
			})
			if _, err := c.analyze(ctx, testLease(DefaultTextClass), testSlideshow()); err != nil {
				t.Fatal(err)
			}
			if got := under.Load(); got != tt.want {
				t.Fatalf("stampable: %v, want %v (ALPN %v)", got, tt.want, proto.Load())
			}
			if tt.h2 && proto.Load() != "h2" {
				t.Fatalf("ALPN %v: the test did not use HTTP/2", proto.Load())
			}
			mu.Lock()
			defer mu.Unlock()
			if len(reported) == 0 {
				t.Fatalf("no write reported")
			}
			if tt.want {
				lastRaw := int64(0)
				for _, rc := range raw {
					lastRaw = max(lastRaw, rc.lastWrite.Load())
				}
				if last := slices.MaxFunc(reported, time.Time.Compare); last.UnixNano() < lastRaw {
					t.Fatalf("reported written %v before the last Write to the socket ended", time.Unix(0, lastRaw).Sub(last))
				}
			}
		})
	}

	// The HTTP/2 preface as a connection's first bytes (unencrypted HTTP/2).
	client, server := net.Pipe()
	defer server.Close()
	go io.Copy(io.Discard, server)
	sc := &stampConn{Conn: client}
	defer sc.Close()
	if stampable(sc) == nil {
		t.Fatalf("a fresh connection is not stampable")
	}
	sc.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	if stampable(sc) != nil {
		t.Fatalf("a connection that began with the HTTP/2 preface is stampable")
	}
}

// recConn records the end of its latest Write, in Unix nanoseconds.
type recConn struct {
	net.Conn
	lastWrite atomic.Int64
}

func (c *recConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.lastWrite.Store(time.Now().UnixNano())
	return n, err
}

// TestBlockingReportDoesNotDelayWrite: a report that moves the slot may
// wait for Redis (a round trip, up to 2 s); here each report blocks 2 s.
// The request's bytes must not wait for it: a small request (all of it in
// the transport's buffer when WroteRequest fires, the binary runs' text
// requests) leaves at once, where the old code made the report inside
// WroteRequest, before the transport's flush, and sent it 2 s late; a
// large one (several Writes, a report started after the first) has its
// last byte out at once too. The last write is still reported, before the
// call returns.
func TestBlockingReportDoesNotDelayWrite(t *testing.T) {
	large := testSlideshow()
	large.Slides[0].Text = strings.Repeat("Tides are driven by the moon. ", 1000) // 30 KB
	for _, tt := range []struct {
		name string
		s    Slideshow
	}{{"small request", testSlideshow()}, {"large request", large}} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pn := &pipeNet{h: newEmulator(t, emulator.Config{})}
				defer pn.Close()
				var (
					mu       sync.Mutex
					conns    []*pipeConn
					reported []time.Time
					writes   int
				)
				tr := &http.Transport{DialContext: stampDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := pn.dial(ctx, network, addr)
					mu.Lock()
					conns = append(conns, c.(*pipeConn))
					mu.Unlock()
					return &countConn{Conn: c, n: &writes, mu: &mu}, err
				})}
				defer tr.CloseIdleConnections()
				c := newTestClientRT(t, tr)
				c.slotMoves = func(scheduler.Lease, time.Time) bool { return true }
				c.reportWrote = func(_ scheduler.Lease, at time.Time) {
					time.Sleep(2 * time.Second) // a slow Redis round trip
					mu.Lock()
					reported = append(reported, at)
					mu.Unlock()
				}
				var wrote time.Time
				ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
					WroteRequest: func(httptrace.WroteRequestInfo) { wrote = time.Now() },
				})
				start := time.Now()
				if _, err := c.analyze(ctx, testLease(DefaultTextClass), tt.s); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(conns) != 1 || len(reported) == 0 {
					t.Fatalf("%d connections, %d reports: want 1 and some", len(conns), len(reported))
				}
				lastByte := time.Unix(0, conns[0].lastWrite.Load())
				t.Logf("%d Writes; WroteRequest %v, the last byte %v after the call began; %d reports, the last of %v",
					writes, wrote.Sub(start), lastByte.Sub(start), len(reported), slices.MaxFunc(reported, time.Time.Compare).Sub(start))
				if tt.s.Slides[0].Text == large.Slides[0].Text && writes < 2 {
					t.Fatalf("the large request took %d Writes: the test does not start a report before the last one", writes)
				}
				if d := lastByte.Sub(start); d != 0 {
					t.Fatalf("the request's last byte left %v after the call began, want at once: a report held the writer", d)
				}
				if last := slices.MaxFunc(reported, time.Time.Compare); !last.Equal(lastByte) {
					t.Fatalf("last reported write %v, want the last byte's %v", last.Sub(start), lastByte.Sub(start))
				}
			})
		})
	}
}

// countConn counts its Writes in *n, under mu.
type countConn struct {
	net.Conn
	n  *int
	mu *sync.Mutex
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	*c.n++
	c.mu.Unlock()
	return c.Conn.Write(p)
}
