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

// TestClassifyEndToEnd serves every error body of GEMINI.md through the real
// SDK and checks the outcome of both calls' work and of Classify on the raw
// SDK error.
func TestClassifyEndToEnd(t *testing.T) {
	const (
		minuteFreeID = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
		dayFreeID    = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
		tokensFreeID = "GenerateContentInputTokensPerModelPerMinute-FreeTier"
	)
	tests := []struct {
		name     string
		status   int
		header   http.Header
		body     string
		kind     string // outcome of the Client's work
		rawKind  string // outcome of Classify on the raw SDK error, when it differs
		scope    scheduler.Scope
		retry    time.Duration
		quota    string
		reason   string
		project  bool
		contains string // text of the answer that must survive in the error
	}{
		{name: "429 per minute 2025", status: 429, body: body429Minute2025, kind: "rate_limited", scope: scheduler.ScopeMinute, retry: 26 * time.Second, quota: minuteFreeID, contains: "You exceeded your current quota"},
		{name: "429 per day retryDelay 0s", status: 429, body: body429DayFreeZero, kind: "rate_limited", scope: scheduler.ScopeDay, retry: 0, quota: dayFreeID},
		{name: "429 input tokens per minute", status: 429, body: body429Tokens, kind: "rate_limited", scope: scheduler.ScopeMinute, retry: 13 * time.Second, quota: tokensFreeID},
		{name: "429 per day paid tier", status: 429, body: body429DayPaid, kind: "rate_limited", scope: scheduler.ScopeDay, retry: 52 * time.Second, quota: "GenerateRequestsPerDayPerProjectPerModel"},
		{name: "429 per minute paid tier shares the day metric", status: 429, body: body429MinutePaid, kind: "rate_limited", scope: scheduler.ScopeMinute, retry: 1500 * time.Millisecond, quota: "GenerateRequestsPerMinutePerProjectPerModel"},
		{name: "429 minute then day: day wins", status: 429, body: body429MinuteThenDay, kind: "rate_limited", scope: scheduler.ScopeDay, retry: 26 * time.Second, quota: dayFreeID},
		{name: "429 day then tokens and minute: day wins", status: 429, body: body429DayThenMinute, kind: "rate_limited", scope: scheduler.ScopeDay, retry: 0, quota: dayFreeID},
		{name: "429 2026 layout", status: 429, body: body429Minute2026, kind: "rate_limited", scope: scheduler.ScopeMinute, retry: 7967587226 * time.Nanosecond, quota: minuteFreeID, contains: "Please retry in 7.967587226s."},
		{name: "429 2026 layout delay only in message", status: 429, body: body429Minute2026NoRetryInfo, kind: "rate_limited", scope: scheduler.ScopeMinute, retry: 7967587226 * time.Nanosecond, quota: minuteFreeID},
		{name: "429 2026 layout per day", status: 429, body: body429Day2026, kind: "rate_limited", scope: scheduler.ScopeDay, retry: 41*time.Minute + 7500*time.Millisecond, quota: dayFreeID},
		{name: "429 no details", status: 429, body: body429Bare, kind: "rate_limited", scope: scheduler.ScopeUnknown, contains: "Resource has been exhausted"},
		{name: "429 no details Retry-After header", status: 429, header: http.Header{"Retry-After": {"30"}}, body: body429Bare, kind: "rate_limited", scope: scheduler.ScopeUnknown, retry: 30 * time.Second},
		{name: "429 only Help", status: 429, body: body429HelpOnly, kind: "rate_limited", scope: scheduler.ScopeUnknown},
		{name: "429 RetryInfo as object", status: 429, body: bodyRetryInfoObject, kind: "rate_limited", scope: scheduler.ScopeMinute, retry: 3500 * time.Millisecond, quota: minuteFreeID},
		{name: "429 unreadable retryDelay", status: 429, body: bodyRetryDelayGarble, kind: "rate_limited", scope: scheduler.ScopeMinute, quota: minuteFreeID},
		{name: "429 JSON without code", status: 429, body: bodyNoCode429, kind: "rate_limited", scope: scheduler.ScopeUnknown, contains: "quota exceeded"},
		{name: "429 JSON without code or status", status: 429, body: bodyNoCodeNoStatus, kind: "rate_limited", rawKind: "transient", scope: scheduler.ScopeUnknown},
		{name: "503 overloaded", status: 503, body: body503Overloaded, kind: "transient", contains: "The model is overloaded"},
		{name: "503 high demand", status: 503, body: body503Demand, kind: "transient", contains: "experiencing high demand"},
		{name: "500", status: 500, body: body500, kind: "transient"},
		{name: "504", status: 504, body: body504, kind: "transient"},
		{name: "499", status: 499, body: body499, kind: "transient"},
		{name: "502 plain text", status: 502, body: bodyPlainText, kind: "transient", contains: "502 Bad Gateway"},
		{name: "500 empty body", status: 500, body: bodyEmpty, kind: "transient"},
		{name: "400 API_KEY_INVALID", status: 400, body: body400KeyInvalid, kind: "key", reason: "invalid", contains: "API key not valid"},
		{name: "403 leaked", status: 403, body: body403Leaked, kind: "key", reason: "leaked", contains: "reported as leaked"},
		{name: "403 permission denied", status: 403, body: body403Denied, kind: "key", reason: "permission denied"},
		{name: "403 service disabled", status: 403, body: body403Disabled, kind: "key", reason: "API disabled for the project", project: true},
		{name: "403 consumer suspended", status: 403, body: body403Suspended, kind: "key", reason: "project suspended", project: true},
		{name: "403 key restricted", status: 403, body: body403KeyBlocked, kind: "key", reason: "blocked by key restrictions"},
		{name: "402 no credit", status: 402, body: body402, kind: "key", reason: "no credit", project: true, contains: "prepaid credits"},
		{name: "401", status: 401, body: body401, kind: "key", reason: "unauthenticated"},
		{name: "400 invalid argument", status: 400, body: body400Invalid, kind: "permanent", contains: "invalid argument"},
		{name: "400 failed precondition", status: 400, body: body400Precondition, kind: "permanent", contains: "User location is not supported"},
		{name: "404", status: 404, body: body404, kind: "permanent"},
		{name: "400 JSON without code or status", status: 400, body: bodyNoCodeNoStatus, kind: "permanent", rawKind: "transient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(t *testing.T, what, wantKind string, err error, viaClient bool) {
				t.Helper()
				if got := outcomeKind(err); got != wantKind {
					t.Fatalf("%s: outcome %q, want %q; error: %v", what, got, wantKind, err)
				}
				if again := Classify(err); again != err {
					t.Errorf("%s: Classify of an outcome changed it: %v -> %v", what, err, again)
				}
				var ae genai.APIError
				if !errors.As(err, &ae) {
					t.Errorf("%s: the outcome does not wrap the APIError: %v", what, err)
				}
				if tt.contains != "" && !strings.Contains(err.Error(), tt.contains) {
					t.Errorf("%s: error %q lost %q", what, err, tt.contains)
				}
				switch wantKind {
				case "rate_limited":
					var rl *scheduler.RateLimitedError
					errors.As(err, &rl)
					wantRetry := tt.retry
					if !viaClient && tt.header != nil {
						wantRetry = 0 // the header is seen only by the Client's transport
					}
					if rl.Scope != tt.scope || rl.RetryAfter != wantRetry || rl.Quota != tt.quota {
						t.Errorf("%s: got scope %v retry %v quota %q, want %v %v %q", what, rl.Scope, rl.RetryAfter, rl.Quota, tt.scope, wantRetry, tt.quota)
					}
				case "key":
					var ke *scheduler.KeyError
					errors.As(err, &ke)
					if ke.Reason != tt.reason || ke.Project != tt.project {
						t.Errorf("%s: got reason %q project %v, want %q %v", what, ke.Reason, ke.Project, tt.reason, tt.project)
					}
				}
			}
			for _, call := range []string{"analyze", "image"} {
				c := newTestClient(t, newRecorder(answer{tt.status, tt.header, tt.body}))
				var err error
				if call == "analyze" {
					_, err = c.analyze(t.Context(), testLease("text"), testSlideshow())
				} else {
					_, err = c.image(t.Context(), testLease("image"), "a lighthouse", ImageOptions{})
				}
				check(t, call, tt.kind, err, true)
				if !strings.Contains(err.Error(), "on key "+testKeyID) {
					t.Errorf("%s: error does not name the key: %v", call, err)
				}
			}
			// The raw SDK error, as any genai user would get it.
			c := newTestClient(t, newRecorder(answer{tt.status, tt.header, tt.body}))
			_, raw := c.keys[testKeyID].safeGenerate(t.Context(), DefaultTextModel, genai.Text("hi"), nil)
			if raw == nil {
				t.Fatal("raw call succeeded")
			}
			want := tt.kind
			if tt.rawKind != "" {
				want = tt.rawKind
			}
			check(t, "raw", want, Classify(raw), false)
		})
	}
}

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
