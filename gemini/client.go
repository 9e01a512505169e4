package gemini

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
//
// Each request's write time goes to its lease (scheduler.Lease.Wrote), so
// a request written late counts from its write: on DefaultHTTPClient's
// HTTP/1.1 connections the end of the last Write of the request's bytes to
// the socket; over HTTP/2 and through another client's transport the time
// the transport reports it written (httptrace's WroteRequest: over HTTP/2
// after its last frame was flushed, over HTTP/1.1 before the transport's
// buffer's last bytes, up to 4 KiB, were).
type Client struct {
	cfg  Config
	keys map[string]*keyClient
	// reportTokens hands the answer's prompt token count to the lease; a
	// field so tests can observe it.
	reportTokens func(scheduler.Lease, int)
	// reportWrote hands the time a request was written to the lease
	// (scheduler.Lease.Wrote), and slotMoves tells whether that would move
	// its slot (scheduler.Lease.MovesSlot); fields so tests can observe
	// them.
	reportWrote func(scheduler.Lease, time.Time)
	slotMoves   func(scheduler.Lease, time.Time) bool
}

// Scheduler returns the scheduler the calls go through (Config.Scheduler;
// nil when none was configured).
func (c *Client) Scheduler() *scheduler.Scheduler { return c.cfg.Scheduler }

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
		slotMoves:    func(l scheduler.Lease, at time.Time) bool { return l.MovesSlot(at) },
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
	tctx, ws := c.traceWrites(context.WithValue(ctx, probeKey{}, p), l)
	resp, err := kc.safeGenerate(tctx, model, contents, gcfg)
	ws.finish()
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
// trace ctx already holds) that follows the writes of the requests made
// with ctx, and the writeStamp that reports them to the lease: the window
// slot counts from the request's write plus the class's margin when that
// is later than the stamp (scheduler.Lease.Wrote). Call finish on it when
// the call has returned, before the work does.
//
// The write time is when the request's last byte went to the socket: the
// end of the connection's last Write for the request (the kernel has the
// bytes; sending them on is the network's part, the margin's second
// half). On a connection of the default HTTP client over HTTP/1.1
// (DefaultHTTPClient's dialer wraps each connection, TLS or not), GotConn
// ties the connection to this call until the answer's first byte (HTTP/1.1
// sends one request at a time on a connection), and each Write to it in
// that time reports its end, whichever goroutine makes it (the transport
// writes from its own). Why not the transport's WroteRequest there: it
// fires once the request is in the connection's buffer, before the
// transport writes the buffer's last bytes (up to 4 KiB: a whole small
// request) to the socket; a sender descheduled between the two sent its
// request late with no report, and the report itself (a Redis round trip
// when the slot moves) ran inside the hook, before that flush.
//
// Over HTTP/2, and with a caller's HTTP client whose connections are not
// DefaultHTTPClient's, the time is WroteRequest's: HTTP/2 interleaves
// several requests' frames on one connection, so a Write cannot be tied to
// one request; its transport calls WroteRequest after flushing the last
// DATA frame to the connection, so that is the last byte's time there too.
// Through another HTTP/1.1 transport it is the buffered time above, and
// the flush after it is not covered.
//
// Every write of the call's requests reports (a request the transport
// writes again on a new connection, a redirect the http.Client follows;
// the SDK's own retries are off), failed ones included (the API may have
// read part of it: the safe side); the lease keeps the latest. Writes
// after the answer began, e.g. a body still being written when the API
// answered early, do not move the slot: the API had decided by then.
func (c *Client) traceWrites(ctx context.Context, l scheduler.Lease) (context.Context, *writeStamp) {
	w := &writeStamp{c: c, l: l}
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			sc := stampable(info.Conn)
			w.onWire.Store(sc != nil)
			if sc != nil {
				w.attach(sc)
			}
		},
		WroteRequest: func(httptrace.WroteRequestInfo) {
			if !w.onWire.Load() {
				w.wrote(time.Now())
			}
		},
		GotFirstResponseByte: w.detach,
	}), w
}

// writeStamp reports the writes of one call's requests to its lease. A
// write whose report would move the slot (scheduler.Lease.MovesSlot) is
// reported at once from another goroutine, so the writer, the transport's,
// never waits for a shared store (a Redis round trip) between two writes of
// a request; finish reports the latest write once more and waits for that
// goroutine, so every write made before the call returned is applied
// before the work returns (a report after it does nothing).
type writeStamp struct {
	c *Client
	l scheduler.Lease
	// latest is the end of the latest write, in Unix nanoseconds (0: none).
	latest atomic.Int64
	// writing counts writes under way on connections tied to the call.
	writing atomic.Int32
	// onWire: the request being written is on a connection whose Writes
	// report (stampable), so WroteRequest is not used.
	onWire atomic.Bool

	mu       sync.Mutex
	conns    []*stampConn // connections tied to the call
	reported int64        // latest time handed to the lease
	busy     bool         // a report goroutine runs
	finished bool         // finish was called: no more report goroutines
	wg       sync.WaitGroup
}

// wrote records a write that ended at at and, when it would move the slot,
// starts the report goroutine if none runs.
func (w *writeStamp) wrote(at time.Time) {
	n := at.UnixNano()
	for {
		old := w.latest.Load()
		if n <= old {
			return // a later write was recorded, and reported if due
		}
		if w.latest.CompareAndSwap(old, n) {
			break
		}
	}
	if !w.c.slotMoves(w.l, at) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy || w.finished {
		return
	}
	w.busy = true
	w.wg.Add(1)
	go w.report()
}

// report hands the latest write to the lease until none is newer. The
// check is under the lock that wrote takes after recording, so a write
// recorded while this goroutine ends is never left unreported.
func (w *writeStamp) report() {
	defer w.wg.Done()
	for {
		w.mu.Lock()
		v := w.latest.Load()
		if v <= w.reported {
			w.busy = false
			w.mu.Unlock()
			return
		}
		w.reported = v
		w.mu.Unlock()
		w.c.reportWrote(w.l, time.Unix(0, v))
	}
}

// attach ties sc to the call: its Writes report to it.
func (w *writeStamp) attach(sc *stampConn) {
	w.mu.Lock()
	w.conns = append(w.conns, sc)
	w.mu.Unlock()
	sc.owner.Store(w)
}

// detach unties the call's connections (those still tied to it).
func (w *writeStamp) detach() {
	w.mu.Lock()
	conns := w.conns
	w.conns = nil
	w.mu.Unlock()
	for _, sc := range conns {
		sc.owner.CompareAndSwap(w, nil)
	}
}

// finish ends the call's reports: it unties its connections, waits for the
// report goroutine and reports the latest write if it was not; a write
// still under way counts as ending now (it ends later: the safe side).
func (w *writeStamp) finish() {
	w.detach()
	w.mu.Lock()
	w.finished = true
	w.mu.Unlock()
	w.wg.Wait()
	v := w.latest.Load()
	if w.writing.Load() > 0 {
		v = max(v, time.Now().UnixNano())
	}
	w.mu.Lock()
	due := v > w.reported
	w.reported = max(w.reported, v)
	w.mu.Unlock()
	if due {
		w.c.reportWrote(w.l, time.Unix(0, v))
	}
}

// stampConn is a connection of DefaultHTTPClient: while a call's request
// owns it (writeStamp.attach), the end of each Write is reported to the
// call. Unowned, a Write costs two atomic loads more than the connection's.
type stampConn struct {
	net.Conn
	owner atomic.Pointer[writeStamp]
	// proto is what its first Write showed: 0 none yet, protoOther, or
	// protoH2 (the HTTP/2 client preface: unencrypted HTTP/2, where
	// requests share the connection).
	proto atomic.Int32
}

const (
	protoOther = 1
	protoH2    = 2
)

// h2Preface starts the first bytes an HTTP/2 client writes.
const h2Preface = "PRI * HTTP/2.0\r\n"

func (sc *stampConn) Write(p []byte) (int, error) {
	if sc.proto.Load() == 0 {
		if len(p) >= len(h2Preface) && string(p[:len(h2Preface)]) == h2Preface {
			sc.proto.CompareAndSwap(0, protoH2)
		} else {
			sc.proto.CompareAndSwap(0, protoOther)
		}
	}
	w := sc.owner.Load()
	if w == nil {
		return sc.Conn.Write(p)
	}
	// Counted before the owner is read again, so that finish, which
	// unties the connection and then reads the count, either sees this
	// write under way or this write sees the connection untied.
	w.writing.Add(1)
	if sc.owner.Load() != w {
		w.writing.Add(-1)
		return sc.Conn.Write(p)
	}
	n, err := sc.Conn.Write(p)
	if n > 0 {
		w.wrote(time.Now())
	}
	w.writing.Add(-1)
	return n, err
}

// stampable returns the stampConn under conn when its Writes can be tied
// to one request: an HTTP/1 connection made by stampDial, directly or
// under TLS (the TLS records' Writes are what goes to the socket); nil
// for anything else, HTTP/2 included.
func stampable(conn net.Conn) *stampConn {
	if tc, ok := conn.(*tls.Conn); ok {
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			return nil
		}
		conn = tc.NetConn()
	}
	sc, _ := conn.(*stampConn)
	if sc == nil || sc.proto.Load() == protoH2 {
		return nil
	}
	return sc
}

// stampDial wraps dial (an http.Transport's DialContext) so that the
// connections it makes report their writes to the call whose request owns
// them (see Client.traceWrites).
func stampDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil || c == nil {
			return c, err
		}
		return &stampConn{Conn: c}, nil
	}
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
