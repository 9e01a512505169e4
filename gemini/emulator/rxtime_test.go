package emulator

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestReceivedAtFallback: a request served without RecordReceiveTimes
// reads ReceivedAt as the time it is called.
func TestReceivedAtFallback(t *testing.T) {
	type span struct{ before, rx, after time.Time }
	got := make(chan span, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		before := time.Now()
		rx := ReceivedAt(r)
		got <- span{before, rx, time.Now()}
	}))
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL, "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := <-got
	if s.rx.Before(s.before) || s.rx.After(s.after) {
		t.Errorf("ReceivedAt %v after the call began, %v before it ended: want both >= 0", s.rx.Sub(s.before), s.after.Sub(s.rx))
	}
}

// otherListener is a listener that is not a *net.TCPListener.
type otherListener struct{ net.Listener }

// TestRecordReceiveTimesNotTCP: a listener that is not TCP is served as
// it is, and ConnContext is left alone.
func TestRecordReceiveTimesNotTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	other := otherListener{ln}
	srv := &http.Server{}
	if got := RecordReceiveTimes(srv, other); got != net.Listener(other) || srv.ConnContext != nil {
		t.Errorf("RecordReceiveTimes(not TCP) = %T, ConnContext set %v", got, srv.ConnContext != nil)
	}
}

// TestReceivedAtConversion: a kernel stamp (wall clock) becomes a time with
// a monotonic reading, its age kept; a stamp after now is now.
func TestReceivedAtConversion(t *testing.T) {
	now := time.Now()
	stamp := now.Round(0).Add(-300 * time.Millisecond) // wall clock only
	rx := receivedAt(now, stamp)
	if now.Sub(rx) != 300*time.Millisecond {
		t.Errorf("age %v, want 300ms", now.Sub(rx))
	}
	if !strings.Contains(rx.String(), "m=") {
		t.Errorf("%v has no monotonic reading", rx)
	}
	if got := receivedAt(now, now.Round(0).Add(time.Millisecond)); !got.Equal(now) {
		t.Errorf("a stamp after now: %v, want now", got.Sub(now))
	}
}
