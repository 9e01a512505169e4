package gemini

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// BenchmarkAnalyzeLoopback: one analysis call after another through the
// genai SDK and the default HTTP client (DefaultHTTPClient, HTTP/1.1 over
// loopback, connections reused) to the emulator: the gemini call path the
// write-time capture sits on (the trace, the connection's Write wrapper).
func BenchmarkAnalyzeLoopback(b *testing.B) {
	srv := httptest.NewServer(newEmulator(b, emulator.Config{Models: map[string]emulator.Limits{
		DefaultTextModel: {RPM: 1 << 30, RPD: 1 << 30}}}))
	defer srv.Close()
	c, err := New(context.Background(), Config{Keys: []Key{{ID: testKeyID, Secret: testSecret}}, BaseURL: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	defer c.cfg.HTTPClient.CloseIdleConnections()
	l, s := testLease(DefaultTextClass), testSlideshow()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.analyze(b.Context(), l, s); err != nil {
			b.Fatal(err)
		}
	}
}

// discardConn is a connection whose Writes take the bytes and do nothing.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkStampConnWrite: the cost of a 2 KiB Write (a text request's
// size) on a connection that discards it: raw, through the default
// client's wrapper with no request owning it, and owned by a call (the
// write time taken and recorded; the slot not moved).
func BenchmarkStampConnWrite(b *testing.B) {
	p := make([]byte, 2048)
	c := &Client{slotMoves: func(scheduler.Lease, time.Time) bool { return false }}
	for _, bm := range []struct {
		name string
		conn func() net.Conn
	}{
		{"raw", func() net.Conn { return discardConn{} }},
		{"unowned", func() net.Conn { return &stampConn{Conn: discardConn{}} }},
		{"owned", func() net.Conn {
			sc := &stampConn{Conn: discardConn{}}
			(&writeStamp{c: c}).attach(sc)
			return sc
		}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			conn := bm.conn()
			b.ReportAllocs()
			for b.Loop() {
				conn.Write(p)
			}
		})
	}
}
