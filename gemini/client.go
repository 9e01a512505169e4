package gemini

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genai"

	redactlib "github.com/slideshowd/slideshowd/internal/redact"
	"github.com/slideshowd/slideshowd/scheduler"
)

// APIVersion is the Gemini API version the clients call.
const APIVersion = "v1beta"

// Client makes the two calls of slideshowd (AnalyzeSlideshow, GenerateImage)
// through the scheduler, on whichever key the scheduler leases. It holds one
// *genai.Client per key. Safe for concurrent use; the zero value is not
// usable: build one with New.
type Client struct {
	cfg  Config
	keys map[string]*keyClient
	// reportTokens hands the answer's prompt token count to the lease; a
	// field so tests can observe it.
	reportTokens func(scheduler.Lease, int)
	// reportWrote hands the time a request was written to the lease
	// (scheduler.Lease.Wrote); a field so tests can observe it.
	reportWrote func(scheduler.Lease, time.Time)
}

type keyClient struct {
	id     string
	secret string
	sdk    *genai.Client
}

// New checks cfg, fills in its defaults and builds one SDK client per key:
// the key passed explicitly, BackendGeminiAPI, the base URL and APIVersion
// set, SDK retries off (the scheduler owns retries). The SDK never falls
// back to environment variables for the key, the backend or the base URL.
// ctx is only used while building the SDK clients.
func New(ctx context.Context, cfg Config) (*Client, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Keys = append([]Key(nil), cfg.Keys...)
	hc := withProbe(cfg.HTTPClient)
	c := &Client{
		cfg:          cfg,
		keys:         make(map[string]*keyClient, len(cfg.Keys)),
		reportTokens: func(l scheduler.Lease, n int) { l.ReportTokens(n) },
		reportWrote:  func(l scheduler.Lease, at time.Time) { l.Wrote(at) },
	}
	for _, k := range cfg.Keys {
		sdk, err := genai.NewClient(ctx, &genai.ClientConfig{
			APIKey:     k.Secret,
			Backend:    genai.BackendGeminiAPI,
			HTTPClient: hc,
			HTTPOptions: genai.HTTPOptions{
				BaseURL:    cfg.BaseURL,
				APIVersion: APIVersion,
				// RetryOptions stays nil: the SDK does not retry.
			},
		})
		if err != nil {
			// The SDK prints its whole config (the key included) in some
			// errors: keep only the redacted text.
			return nil, fmt.Errorf("gemini: key %q: building the SDK client: %s", k.ID, redactURLs(redact(err.Error(), k.Secret), err))
		}
		c.keys[k.ID] = &keyClient{id: k.ID, secret: k.Secret, sdk: sdk}
	}
	return c, nil
}

// generate sends one generateContent request with the lease's key and
// returns the answer, or the classified outcome of the failure (see
// Classify), wrapped in *scheduler.NotSentError when the request provably
// never left the process.
func (c *Client) generate(ctx context.Context, l scheduler.Lease, model string, contents []*genai.Content, gcfg *genai.GenerateContentConfig) (*genai.GenerateContentResponse, error) {
	kc := c.keys[l.KeyID]
	if kc == nil {
		return nil, scheduler.NotSent(&scheduler.KeyError{
			Reason: "not configured in gemini.Client",
			Err:    fmt.Errorf("%w: %q", ErrUnknownKey, l.KeyID),
		})
	}
	if err := ctx.Err(); err != nil {
		return nil, scheduler.NotSent(err)
	}
	// One request per lease: a continuation would send (and bill) more.
	gcfg.AutomaticContinuation = new(bool)
	p := new(probe)
	resp, err := kc.safeGenerate(c.traceWrites(context.WithValue(ctx, probeKey{}, p), l), model, contents, gcfg)
	sent, status, retryAfter := p.result()
	if err == nil && resp == nil {
		err = fmt.Errorf("%w: no response and no error from the SDK", ErrDecode)
	}
	if err == nil {
		return resp, nil
	}
	ce := &callError{keyID: kc.id, model: model, status: status, retryAfter: retryAfter,
		msg: redactURLs(redact(err.Error(), kc.secret), err), err: redactAPIError(err, kc.secret)}
	var out error
	if ctx.Err() == nil && isContextErr(err) {
		// A deadline of the HTTP client (Config.HTTPClient.Timeout), not of
		// the job: nobody's fault, retry.
		out = &scheduler.TransientError{Err: ce}
	} else {
		out = Classify(ce)
	}
	if !sent {
		out = notSent(out)
	}
	return nil, out
}

// traceWrites returns ctx with an httptrace.ClientTrace (composed with any
// trace ctx already holds) that reports to the lease the time each request
// made with ctx was written: the window slot counts from then plus the
// class's margin when that is later than the stamp (scheduler.Lease.Wrote).
//
// Why WroteRequest: the transport calls it once the request (headers and
// the whole body, the slides' base64 images included) has been written to
// the connection's buffer, after dialing a new connection if it needed one,
// so it comes after everything that can delay a request in this process
// (scheduling, encoding, dialing, writing) but the flush of the buffer's
// last bytes (4 KiB at most) and the network. The body's EOF comes before
// the last buffer is written, and RoundTrip returns only with the answer's
// headers (seconds later for a generateContent call): counting from there
// would hold every slot for a call's length. It is called for every write
// of the call's requests (a write retried by the transport or the SDK
// included) and also when the write failed (the API may have read part of
// it: the safe side); the lease keeps the latest.
func (c *Client) traceWrites(ctx context.Context, l scheduler.Lease) context.Context {
	report := c.reportWrote
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { report(l, time.Now()) },
	})
}

// safeGenerate calls the SDK and turns a panic into an error: the SDK
// type-asserts parts of answers without checking (a 200 with
// {"candidates":"x"} panics), and a malformed answer must not crash the
// process.
func (kc *keyClient) safeGenerate(ctx context.Context, model string, contents []*genai.Content, gcfg *genai.GenerateContentConfig) (resp *genai.GenerateContentResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, fmt.Errorf("%w: the SDK panicked: %v", ErrDecode, r)
		}
	}()
	return kc.sdk.Models.GenerateContent(ctx, model, contents, gcfg)
}

// reportUsage hands the answer's prompt token count to the lease.
func (c *Client) reportUsage(l scheduler.Lease, resp *genai.GenerateContentResponse) {
	if resp != nil && resp.UsageMetadata != nil && resp.UsageMetadata.PromptTokenCount > 0 {
		c.reportTokens(l, int(resp.UsageMetadata.PromptTokenCount))
	}
}

// run submits j to the scheduler with attempt as its work and returns the
// value of the successful attempt. An unusable answer is retried once: the
// second one fails the job (see the package documentation).
func run[T any](ctx context.Context, s *scheduler.Scheduler, j scheduler.Job, attempt func(context.Context, scheduler.Lease) (T, error)) (T, error) {
	var zero T
	if s == nil {
		return zero, ErrNoScheduler
	}
	// The work may run several times (on other keys), never concurrently;
	// the mutex orders its writes before the read after Do.
	var (
		mu         sync.Mutex
		result     T
		badAnswers int
	)
	j.Work = func(ctx context.Context, l scheduler.Lease) error {
		v, err := attempt(ctx, l)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			return retryBadAnswerOnce(err, &badAnswers)
		}
		result = v
		return nil
	}
	if err := s.Do(ctx, j); err != nil {
		return zero, err
	}
	mu.Lock()
	defer mu.Unlock()
	return result, nil
}

// retryBadAnswerOnce turns the second unusable (not blocked) answer of a job
// into a permanent failure; the first stays transient, so it is retried.
func retryBadAnswerOnce(outcome error, count *int) error {
	var ae *AnswerError
	if !errors.As(outcome, &ae) || ae.Blocked() {
		return outcome
	}
	*count++
	if *count < 2 {
		return outcome
	}
	return &scheduler.PermanentError{Err: fmt.Errorf("giving up after %d unusable answers: %w", *count, ae)}
}

// callError is a failed call: the SDK's error with the key id and model it
// was sent with and what the HTTP exchange showed. Its text never holds the
// key's secret.
type callError struct {
	keyID, model string
	status       int           // HTTP status of the answer; 0 when none arrived
	retryAfter   time.Duration // from a Retry-After header; 0 when none
	msg          string        // err.Error(), redacted
	err          error
}

func (e *callError) Error() string {
	s := "gemini: " + e.model + " on key " + e.keyID
	if e.status != 0 {
		s += " (HTTP " + strconv.Itoa(e.status) + ")"
	}
	return s + ": " + e.msg
}

func (e *callError) Unwrap() error { return e.err }

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func notSent(out error) error {
	var ns *scheduler.NotSentError
	if errors.As(out, &ns) {
		return out
	}
	return scheduler.NotSent(out)
}

const redacted = "<redacted>"

func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, redacted)
}

// redactURLs returns s, err's text, with every URL of err's *url.Errors
// (the HTTP client's "Post \"URL\": dial tcp ...", which quotes the base
// URL) shown as check shows a configured URL (internal/redact.URL), and
// nothing shaped like an API key; those *url.Errors' URLs are redacted
// the same way in place, for a caller that prints an unwrapped error.
func redactURLs(s string, err error) string {
	s = redactlib.URLErrors(s, err)
	for e := err; e != nil; e = errors.Unwrap(e) {
		if ue, ok := e.(*url.Error); ok {
			ue.URL = redactlib.URL(ue.URL, nil)
		}
	}
	return s
}

// redactAPIError returns err with the secret removed from an APIError's text
// and details, in case a server echoes the key back. Other errors come from
// the transport, which never sees the key outside the request header.
func redactAPIError(err error, secret string) error {
	ae, ok := err.(genai.APIError)
	if !ok || secret == "" {
		return err
	}
	ae.Message = redact(ae.Message, secret)
	ae.Status = redact(ae.Status, secret)
	if ae.Details != nil {
		details := make([]map[string]any, len(ae.Details))
		for i, d := range ae.Details {
			details[i], _ = redactValue(d, secret).(map[string]any)
		}
		ae.Details = details
	}
	return ae
}

func redactValue(v any, secret string) any {
	switch v := v.(type) {
	case string:
		return redact(v, secret)
	case map[string]any:
		if v == nil {
			return v
		}
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[redact(k, secret)] = redactValue(e, secret)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = redactValue(e, secret)
		}
		return s
	default:
		return v
	}
}

// probe records, for one call, whether the request reached the network
// transport and what status and Retry-After header came back. It travels in
// the request's context.
type probe struct {
	mu         sync.Mutex
	sent       bool
	status     int
	retryAfter time.Duration
}

type probeKey struct{}

func (p *probe) result() (sent bool, status int, retryAfter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent, p.status, p.retryAfter
}

// probeTransport fills in the probe of the request's context. It refuses a
// request whose context is already done, so that such a request provably
// never left the process.
type probeTransport struct {
	base http.RoundTripper
}

func withProbe(hc *http.Client) *http.Client {
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c := *hc
	c.Transport = probeTransport{base: base}
	return &c
}

func (t probeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p, _ := req.Context().Value(probeKey{}).(*probe)
	if err := req.Context().Err(); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	if p != nil {
		p.mu.Lock()
		p.sent = true
		p.mu.Unlock()
	}
	resp, err := t.base.RoundTrip(req)
	if p != nil && resp != nil {
		ra := parseRetryAfterHeader(resp.Header.Get("Retry-After"), time.Now())
		p.mu.Lock()
		p.status, p.retryAfter = resp.StatusCode, ra
		p.mu.Unlock()
	}
	return resp, err
}

// parseRetryAfterHeader reads an HTTP Retry-After value: seconds or a date.
func parseRetryAfterHeader(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return min(time.Duration(min(n, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return clampRetryAfter(t.Sub(now))
	}
	return 0
}
