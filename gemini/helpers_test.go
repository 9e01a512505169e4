package gemini

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/slideshowd/slideshowd/scheduler"
)

func TestMain(m *testing.M) {
	// go.opencensus.io, imported by the SDK's dependencies, starts a
	// worker in an init function.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

const (
	testKeyID  = "k1"
	testSecret = "AIzaTEST-secret-of-k1"
	testBase   = "http://gemini.test"
)

// handlerTransport sends requests to an http.Handler in process: no sockets,
// so it works inside synctest bubbles, and the real SDK still encodes and
// decodes.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// serve answers every request with status and body (JSON content type).
func serve(status int, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
}

// recorder serves answers in turn (the last one repeats) and records the
// requests it received.
type recorder struct {
	mu      sync.Mutex
	answers []answer
	reqs    []recordedRequest
}

type answer struct {
	status int
	header http.Header
	body   string
}

type recordedRequest struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   map[string]any
}

func newRecorder(answers ...answer) *recorder { return &recorder{answers: answers} }

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(b, &body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, recordedRequest{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
	a := rc.answers[min(len(rc.reqs), len(rc.answers))-1]
	rc.mu.Unlock()
	for k, v := range a.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (rc *recorder) requests() []recordedRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recordedRequest(nil), rc.reqs...)
}

// newTestClient builds a Client with one key whose requests go to h.
func newTestClient(t testing.TB, h http.Handler) *Client {
	t.Helper()
	return newTestClientRT(t, handlerTransport{h})
}

func newTestClientRT(t testing.TB, rt http.RoundTripper) *Client {
	t.Helper()
	c, err := New(context.Background(), Config{
		Keys:       []Key{{ID: testKeyID, Secret: testSecret}},
		BaseURL:    testBase,
		HTTPClient: &http.Client{Transport: rt},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func testLease(class string) scheduler.Lease {
	return scheduler.Lease{Class: class, KeyID: testKeyID, Project: "project-" + testKeyID, Attempt: 1}
}

// outcomeKind names the outcome type of a classified error, or "" when err
// is not one of them (nor a context error).
func outcomeKind(err error) string {
	var (
		rl *scheduler.RateLimitedError
		ke *scheduler.KeyError
		te *scheduler.TransientError
		pe *scheduler.PermanentError
		ns *scheduler.NotSentError
	)
	prefix := ""
	if errors.As(err, &ns) {
		prefix = "not_sent+"
		err = ns.Err
	}
	switch {
	case err == nil:
		return ""
	case errors.As(err, &rl) && firstIs(err, rl):
		return prefix + "rate_limited"
	case errors.As(err, &ke) && firstIs(err, ke):
		return prefix + "key"
	case errors.As(err, &te) && firstIs(err, te):
		return prefix + "transient"
	case errors.As(err, &pe) && firstIs(err, pe):
		return prefix + "permanent"
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return prefix + "context"
	}
	return ""
}

// firstIs reports whether target is err itself: an outcome must be the
// outermost error, not buried in another.
func firstIs(err, target error) bool { return err == target }
