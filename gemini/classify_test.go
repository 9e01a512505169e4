package gemini

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/scheduler"
)

// TestClassifyTransport covers failures without an answer.
func TestClassifyTransport(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused", Addr: "10.0.0.1:443"}}
	tests := []struct {
		name string
		err  error
		kind string
	}{
		{"connection refused", refused, "transient"},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, "transient"},
		{"unexpected EOF", io.ErrUnexpectedEOF, "transient"},
		{"EOF", io.EOF, "transient"},
		{"timeout net.Error", timeoutErr{}, "transient"},
		{"DNS", &net.DNSError{Err: "no such host", Name: "gemini.test", IsNotFound: true}, "transient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClientRT(t, roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, tt.err }))
			_, err := c.analyze(t.Context(), testLease("text"), testSlideshow())
			if got := outcomeKind(err); got != tt.kind {
				t.Fatalf("outcome %q, want %q: %v", got, tt.kind, err)
			}
			var ue *url.Error
			if !errors.As(err, &ue) || !errors.Is(err, tt.err) {
				t.Errorf("outcome does not wrap the transport error: %v", err)
			}
			if got := outcomeKind(Classify(tt.err)); got != tt.kind {
				t.Errorf("Classify(bare error) = %q, want %q", got, tt.kind)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestContextAndNotSent(t *testing.T) {
	t.Run("cancelled before sending: not sent", func(t *testing.T) {
		rec := newRecorder(answer{200, nil, okAnalysisBody})
		c := newTestClient(t, rec)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := c.analyze(ctx, testLease("text"), testSlideshow())
		if got := outcomeKind(err); got != "not_sent+context" || !errors.Is(err, context.Canceled) {
			t.Fatalf("outcome %q (%v), want not_sent+context", got, err)
		}
		if n := len(rec.requests()); n != 0 {
			t.Errorf("%d requests reached the server", n)
		}
	})
	t.Run("cancelled while in flight: sent, context error as is", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		c := newTestClientRT(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
			cancel()
			<-r.Context().Done()
			return nil, r.Context().Err()
		}))
		_, err := c.analyze(ctx, testLease("text"), testSlideshow())
		if got := outcomeKind(err); got != "context" || !errors.Is(err, context.Canceled) {
			t.Fatalf("outcome %q (%v), want context", got, err)
		}
		if Classify(err) != err {
			t.Errorf("Classify changed a context error")
		}
	})
	t.Run("job deadline while in flight", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			c := newTestClientRT(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
				<-r.Context().Done()
				return nil, r.Context().Err()
			}))
			_, err := c.analyze(ctx, testLease("text"), testSlideshow())
			if got := outcomeKind(err); got != "context" || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("outcome %q (%v), want context", got, err)
			}
		})
	})
	t.Run("HTTP client timeout: transient, not the job's deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, err := New(t.Context(), Config{
				Keys:    []Key{{ID: testKeyID, Secret: testSecret}},
				BaseURL: testBase,
				HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
					<-r.Context().Done()
					return nil, r.Context().Err()
				})},
			})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = c.image(t.Context(), testLease("image"), "a lighthouse", ImageOptions{})
			if got := outcomeKind(err); got != "transient" {
				t.Fatalf("outcome %q (%v), want transient", got, err)
			}
			if d := time.Since(start); d != 30*time.Second {
				t.Errorf("gave up after %v, want the client's 30s", d)
			}
		})
	})
	t.Run("unknown key: not sent, key error", func(t *testing.T) {
		rec := newRecorder(answer{200, nil, okAnalysisBody})
		c := newTestClient(t, rec)
		l := testLease("text")
		l.KeyID = "k9"
		_, err := c.analyze(t.Context(), l, testSlideshow())
		var ke *scheduler.KeyError
		if got := outcomeKind(err); got != "not_sent+key" || !errors.As(err, &ke) || !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("outcome %q (%v), want not_sent+key wrapping ErrUnknownKey", got, err)
		}
		if !strings.Contains(err.Error(), `"k9"`) {
			t.Errorf("error does not name the key: %v", err)
		}
		if n := len(rec.requests()); n != 0 {
			t.Errorf("%d requests reached the server", n)
		}
	})
	t.Run("invalid input through the work: not sent, permanent", func(t *testing.T) {
		c := newTestClient(t, newRecorder(answer{200, nil, okAnalysisBody}))
		_, err := c.analyze(t.Context(), testLease("text"), Slideshow{})
		if got := outcomeKind(err); got != "not_sent+permanent" || !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("outcome %q (%v), want not_sent+permanent", got, err)
		}
	})
}

// TestClassifyTyped checks outcomes already typed, wrapped ones and odd
// inputs.
func TestClassifyTyped(t *testing.T) {
	rl := &scheduler.RateLimitedError{Scope: scheduler.ScopeDay}
	ke := &scheduler.KeyError{Reason: "invalid"}
	te := &scheduler.TransientError{Err: errors.New("x")}
	pe := &scheduler.PermanentError{Err: errors.New("y")}
	tests := []struct {
		name string
		err  error
		want error  // exact outcome expected, or nil to check kind only
		kind string // outcomeKind
	}{
		{"rate limited as is", rl, rl, "rate_limited"},
		{"key as is", ke, ke, "key"},
		{"transient as is", te, te, "transient"},
		{"permanent as is", pe, pe, "permanent"},
		{"wrapped outcome is found", fmt.Errorf("work: %w", pe), pe, "permanent"},
		{"outermost outcome wins", &scheduler.PermanentError{Err: te}, nil, "permanent"},
		{"joined", errors.Join(errors.New("a"), ke), ke, "key"},
		{"not sent around a raw error", scheduler.NotSent(errors.New("encoding")), nil, "not_sent+transient"},
		{"not sent around an outcome", scheduler.NotSent(pe), nil, "not_sent+permanent"},
		{"not sent around nothing", &scheduler.NotSentError{}, nil, "not_sent+transient"},
		{"nil not sent", (*scheduler.NotSentError)(nil), nil, "not_sent+transient"},
		{"nil typed outcome", (*scheduler.PermanentError)(nil), nil, "transient"},
		{"canceled", context.Canceled, context.Canceled, "context"},
		{"deadline wrapped", fmt.Errorf("call: %w", context.DeadlineExceeded), nil, "context"},
		{"invalid input", fmt.Errorf("%w: images: 0", ErrInvalidInput), nil, "permanent"},
		{"unknown key", ErrUnknownKey, nil, "key"},
		{"bad answer", &AnswerError{Problem: "x"}, nil, "transient"},
		{"blocked answer", &AnswerError{Problem: "x", blocked: true}, nil, "permanent"},
		{"pointer APIError", &genai.APIError{Code: 404}, nil, "permanent"},
		{"APIError with status only", genai.APIError{Status: "PERMISSION_DENIED"}, nil, "key"},
		{"APIError with nothing", genai.APIError{}, nil, "transient"},
		{"APIError 3xx", genai.APIError{Code: 302}, nil, "transient"},
		{"decode failure", fmt.Errorf("%w: panic", ErrDecode), nil, "transient"},
		{"anything else", errors.New("mystery"), nil, "transient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := Classify(tt.err)
			if out == nil {
				t.Fatal("nil outcome")
			}
			if tt.want != nil && out != tt.want {
				t.Errorf("Classify = %#v, want %#v", out, tt.want)
			}
			if got := outcomeKind(out); got != tt.kind {
				t.Errorf("outcome %q, want %q (%v)", got, tt.kind, out)
			}
			_ = out.Error()
		})
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
}

func TestParseRetryDelay(t *testing.T) {
	tests := []struct {
		in   any
		want time.Duration
		ok   bool
	}{
		{"26s", 26 * time.Second, true},
		{"7.967587226s", 7967587226 * time.Nanosecond, true},
		{"0s", 0, true},
		{"0.5s", 500 * time.Millisecond, true},
		{"1m30s", 90 * time.Second, true},
		{"12", 12 * time.Second, true},
		{" 3s ", 3 * time.Second, true},
		{"-4s", 0, true},
		{"1000000h", maxRetryAfter, true},
		{"99999999999999999999s", maxRetryAfter, true},
		{"NaNs", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{float64(2.5), 2500 * time.Millisecond, true},
		{map[string]any{"seconds": "3", "nanos": float64(5e8)}, 3500 * time.Millisecond, true},
		{map[string]any{"seconds": float64(1)}, time.Second, true},
		{map[string]any{"x": 1}, 0, false},
		{nil, 0, false},
		{true, 0, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.in), func(t *testing.T) {
			got, ok := parseRetryDelay(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseRetryDelay(%#v) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRetryDelayFromMessage(t *testing.T) {
	tests := []struct {
		msg  string
		want time.Duration
		ok   bool
	}{
		{"Quota exceeded.\nPlease retry in 7.967587226s.", 7967587226 * time.Nanosecond, true},
		{"Please retry in 26s.", 26 * time.Second, true},
		{"please retry in 500ms", 500 * time.Millisecond, true},
		{"Please retry in 1m2.5s.", 62500 * time.Millisecond, true},
		{"Retry after 30s", 30 * time.Second, true},
		{"Please retry in 9999999999999h.", maxRetryAfter, true},
		{"Please retry later.", 0, false},
		{"Resource has been exhausted (e.g. check quota).", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			got, ok := retryDelayFromMessage(tt.msg)
			if got != tt.want || ok != tt.ok {
				t.Errorf("retryDelayFromMessage(%q) = %v, %v; want %v, %v", tt.msg, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"30", 30 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"999999999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"tomorrow", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfterHeader(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfterHeader(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestQuotaScope(t *testing.T) {
	tests := map[string]scheduler.Scope{
		"GenerateRequestsPerMinutePerProjectPerModel":          scheduler.ScopeMinute,
		"GenerateRequestsPerMinutePerProjectPerModel-FreeTier": scheduler.ScopeMinute,
		"GenerateRequestsPerDayPerProjectPerModel":             scheduler.ScopeDay,
		"GenerateRequestsPerDayPerProjectPerModel-FreeTier":    scheduler.ScopeDay,
		"GenerateContentInputTokensPerModelPerMinute":          scheduler.ScopeMinute,
		"GenerateContentInputTokensPerModelPerMinute-FreeTier": scheduler.ScopeMinute,
		"ImagesPerMinutePerProjectPerModel":                    scheduler.ScopeMinute,
		"SomethingElse":                                        scheduler.ScopeUnknown,
		"":                                                     scheduler.ScopeUnknown,
	}
	for id, want := range tests {
		if got := quotaScope(id); got != want {
			t.Errorf("quotaScope(%q) = %v, want %v", id, got, want)
		}
	}
}
