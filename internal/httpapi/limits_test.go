package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// Bodies being read at once are bounded: over MaxBodyBytesInFlight, a
// submit gets 503 with Retry-After at once instead of more memory; the
// bound frees when the body in flight is done.
func TestBodyBytesInFlight(t *testing.T) {
	svc := newFakeService()
	h := New(Config{Service: svc, MaxBodyBytes: 64 << 10, MaxBodyBytesInFlight: 64 << 10, Logger: zerolog.Nop()})
	pr, pw := io.Pipe()
	first := httptest.NewRequest("POST", "/v1/slideshows", pr)
	first.Header.Set("Content-Type", "application/json")
	body := `{"slides":[{"text":"a"}],"images":1}` + strings.Repeat(" ", 60<<10)
	first.ContentLength = int64(len(body))
	done := make(chan *httptest.ResponseRecorder)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, first)
		done <- w
	}()
	// The handler reads the first body (holding 60 KiB of the bound) once
	// this write returns.
	if _, err := pw.Write([]byte(body[:1])); err != nil {
		t.Fatal(err)
	}
	refused := strings.NewReader(`{"slides":[{"text":"b"}],"images":1}` + strings.Repeat(" ", 8<<10))
	second := httptest.NewRequest("POST", "/v1/slideshows", refused)
	second.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, second)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "too many request bodies") {
		t.Errorf("second body while the first is read: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	// The refused body was read to its end before the answer: a client
	// still sending it reads the 503 rather than a reset connection.
	if n := refused.Len(); n != 0 {
		t.Errorf("the refused body was answered with %d bytes unread", n)
	}
	if _, err := pw.Write([]byte(body[1:])); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if w := <-done; w.Code != http.StatusAccepted {
		t.Fatalf("first: %d %s", w.Code, w.Body)
	}
	second = httptest.NewRequest("POST", "/v1/slideshows", strings.NewReader(`{"slides":[{"text":"b"}],"images":1}`))
	second.Header.Set("Content-Type", "application/json")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, second)
	if w.Code != http.StatusAccepted {
		t.Errorf("after the first: %d %s", w.Code, w.Body)
	}
}
