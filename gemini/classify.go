package gemini

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/scheduler"
)

var _ scheduler.Classifier = Classify

// maxRetryAfter caps every retry delay read from an answer: a server (or a
// fuzzer) saying "retry in a year" must not park a lane for a year. The
// longest real wait, a per-day quota, lasts at most a 25-hour Pacific day.
const maxRetryAfter = 25 * time.Hour

// Classify maps an error of a Gemini call to a scheduler outcome; it is a
// scheduler.Classifier (configure the scheduler with it). For a non-nil error
// it never returns nil and never panics; the outcome wraps the original
// error, so its message survives. Classify(nil) is nil.
//
//   - Outcomes already typed (*scheduler.RateLimitedError, *KeyError,
//     *TransientError, *PermanentError) are returned as they are; a
//     *scheduler.NotSentError is kept around the classification of what it
//     wraps.
//   - context.Canceled and context.DeadlineExceeded are returned as they are.
//   - HTTP 429 (RESOURCE_EXHAUSTED): *RateLimitedError. The quota comes
//     from each QuotaFailure violation (quotaId, quotaValue) and from an
//     ErrorInfo detail's metadata (quota_limit, quota_limit_value), else
//     from the message ("limit 'GenerateRequestsPerDay...'"). Its period
//     comes from its id: "PerDay" is ScopeDay, "PerMinute" (requests or
//     input tokens) ScopeMinute. A limit of 0 (a value "0", or, for a
//     violation without quotaValue, "limit: 0" in the message) is
//     ScopeNoQuota: the project has no quota on the model. With several
//     quotas the longest-lasting wins (no quota, then day, then minute);
//     none named is ScopeUnknown. Limit is the quota's value when given.
//     RetryAfter comes from RetryInfo.retryDelay, else from "Please retry in
//     7.96s." in the message, else from a Retry-After header (seen only by
//     this package's Client); "0s" gives 0. A per-day violation is ScopeDay
//     whatever the delay says. A 429 that names no quota but says the
//     project's prepaid credit is used up, or that it needs billing, is the
//     project *KeyError below.
//   - An invalid key (ErrorInfo reason API_KEY_INVALID, usually a 400):
//     *KeyError scheduler.ReasonInvalid; an expired one (API_KEY_INVALID
//     with "expired" in the message, or API_KEY_EXPIRED):
//     scheduler.ReasonExpired; a leaked one (403 "reported as leaked"):
//     scheduler.ReasonLeaked.
//   - 402, or any 4xx whose message says the prepaid credit is used up
//     ("Your prepayment credits are depleted"): *KeyError
//     scheduler.ReasonOutOfCredit with Project set.
//   - A 400 or 403 whose message says the project needs billing or a paid
//     tier ("without a billing account linked", "enable billing", "free
//     tier is not available"), or ErrorInfo BILLING_DISABLED: *KeyError
//     scheduler.ReasonBillingRequired with Project set: another project can
//     serve the same request.
//   - Any other 403 PERMISSION_DENIED: *KeyError. The request is refused
//     because of who sends it, not because of what it asks (slideshowd
//     sends no file or cache references another key could lack): another
//     key may succeed and this one will not, so the key is disabled until an
//     operator looks. ErrorInfo reasons SERVICE_DISABLED and
//     CONSUMER_SUSPENDED concern the whole project (Project set). 401 is a
//     *KeyError "unauthenticated".
//   - 500, 502, 503, 504, 499 and other 5xx, 408, 409 (ABORTED): transient.
//   - Other 4xx (400 INVALID_ARGUMENT, FAILED_PRECONDITION, 404 NOT_FOUND,
//     413...): *PermanentError; so are ErrInvalidInput errors.
//   - An *AnswerError: permanent when blocked by safety filters, transient
//     otherwise (the calls of this package retry a bad answer only once).
//   - Network failures (net.Error, *url.Error, io.ErrUnexpectedEOF, a
//     connection reset), answers the SDK could not decode (ErrDecode) and
//     anything else: transient, which the scheduler bounds by its retry
//     budget.
//
// An APIError whose code is not an HTTP error code (a JSON body without
// "code") is classified by the HTTP status the call saw, when the error came
// from this package's Client, else by its gRPC status name
// ("RESOURCE_EXHAUSTED" counts as 429).
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if out, ok := typedOutcome(err, 0); ok {
		return out
	}
	if isContextErr(err) {
		return err
	}
	var ae genai.APIError
	if errors.As(err, &ae) {
		return classifyAPIError(err, ae)
	}
	var pae *genai.APIError
	if errors.As(err, &pae) && pae != nil {
		return classifyAPIError(err, *pae)
	}
	var answer *AnswerError
	if errors.As(err, &answer) && answer != nil {
		if answer.Blocked() {
			return &scheduler.PermanentError{Err: err}
		}
		return &scheduler.TransientError{Err: err}
	}
	if errors.Is(err, ErrInvalidInput) {
		return &scheduler.PermanentError{Err: err}
	}
	if errors.Is(err, ErrUnknownKey) {
		return &scheduler.KeyError{Reason: "not configured in gemini.Client", Err: err}
	}
	// Network errors, undecodable answers, anything unknown: retry within
	// the budget.
	return &scheduler.TransientError{Err: err}
}

// typedOutcome finds the first scheduler outcome in err's chain, depth first.
func typedOutcome(err error, depth int) (error, bool) {
	if err == nil || depth > 100 {
		return nil, false
	}
	switch e := err.(type) {
	case *scheduler.RateLimitedError:
		return nonNil(e, err)
	case *scheduler.KeyError:
		return nonNil(e, err)
	case *scheduler.TransientError:
		return nonNil(e, err)
	case *scheduler.PermanentError:
		return nonNil(e, err)
	case *scheduler.NotSentError:
		if e == nil {
			return &scheduler.NotSentError{Err: &scheduler.TransientError{}}, true
		}
		if e.Err == nil {
			return &scheduler.NotSentError{Err: &scheduler.TransientError{Err: errors.New("request not sent")}}, true
		}
		return notSent(Classify(e.Err)), true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return typedOutcome(u.Unwrap(), depth+1)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if out, ok := typedOutcome(e, depth+1); ok {
				return out, true
			}
		}
	}
	return nil, false
}

// nonNil returns an outcome; a typed nil pointer (whose Error would panic)
// becomes a transient failure.
func nonNil[T any](p *T, err error) (error, bool) {
	if p == nil {
		return &scheduler.TransientError{Err: fmt.Errorf("gemini: nil %T outcome", p)}, true
	}
	return err, true
}

// grpcHTTP maps the status names of Google's errors to HTTP codes; 0 for
// names it does not know.
func grpcHTTP(status string) int {
	switch strings.ToUpper(strings.TrimSpace(status)) {
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		return 400
	case "UNAUTHENTICATED":
		return 401
	case "PERMISSION_DENIED":
		return 403
	case "NOT_FOUND":
		return 404
	case "ABORTED", "ALREADY_EXISTS":
		return 409
	case "RESOURCE_EXHAUSTED":
		return 429
	case "CANCELLED":
		return 499
	case "UNKNOWN", "INTERNAL", "DATA_LOSS":
		return 500
	case "UNIMPLEMENTED":
		return 501
	case "UNAVAILABLE":
		return 503
	case "DEADLINE_EXCEEDED":
		return 504
	}
	return 0
}

func isHTTPError(code int) bool { return code >= 400 && code <= 599 }

func classifyAPIError(err error, ae genai.APIError) error {
	var ce *callError
	errors.As(err, &ce)
	code := ae.Code
	if !isHTTPError(code) {
		if ce != nil && isHTTPError(ce.status) {
			code = ce.status
		} else if c := grpcHTTP(ae.Status); c != 0 {
			code = c
		}
	}
	if code == 429 {
		return rateLimited(err, ae, ce)
	}
	if code == 499 || code >= 500 {
		return &scheduler.TransientError{Err: err}
	}
	reason := errorInfoReason(ae.Details)
	msg := strings.ToLower(ae.Message)
	switch {
	case reason == "API_KEY_EXPIRED" || strings.Contains(msg, "api key expired") ||
		(reason == "API_KEY_INVALID" && strings.Contains(msg, "expired")):
		return &scheduler.KeyError{Reason: scheduler.ReasonExpired, Err: err}
	case reason == "API_KEY_INVALID" || strings.Contains(msg, "api key not valid"):
		return &scheduler.KeyError{Reason: scheduler.ReasonInvalid, Err: err}
	case strings.Contains(reason, "LEAKED") || strings.Contains(msg, "reported as leaked"):
		return &scheduler.KeyError{Reason: scheduler.ReasonLeaked, Err: err}
	case code == 402 || outOfCredit.MatchString(msg):
		return &scheduler.KeyError{Reason: scheduler.ReasonOutOfCredit, Project: true, Err: err}
	case reason == "BILLING_DISABLED" || (code == 400 || code == 403) && billingRequired.MatchString(msg):
		return &scheduler.KeyError{Reason: scheduler.ReasonBillingRequired, Project: true, Err: err}
	case code == 401:
		return &scheduler.KeyError{Reason: "unauthenticated", Err: err}
	case code == 403:
		switch reason {
		case "SERVICE_DISABLED":
			return &scheduler.KeyError{Reason: "API disabled for the project", Project: true, Err: err}
		case "CONSUMER_SUSPENDED":
			return &scheduler.KeyError{Reason: "project suspended", Project: true, Err: err}
		}
		if strings.HasPrefix(reason, "API_KEY_") && strings.HasSuffix(reason, "_BLOCKED") {
			return &scheduler.KeyError{Reason: "blocked by key restrictions", Err: err}
		}
		return &scheduler.KeyError{Reason: "permission denied", Err: err}
	case code == 408 || code == 409:
		return &scheduler.TransientError{Err: err}
	case code >= 400 && code < 500:
		return &scheduler.PermanentError{Err: err}
	}
	// No usable code or status: an answer we do not understand.
	return &scheduler.TransientError{Err: err}
}

// Messages that say a project is out of prepaid credit ("Your prepayment
// credits are depleted", "prepaid credits are exhausted", "insufficient
// credit balance") or cannot serve without billing ("without a billing
// account linked", "enable billing", "free tier is not available", "requires
// a paid tier"). They are matched by meaning, not as one sentence, on
// lower-cased messages. "please check your plan and billing details", which
// every quota 429 carries, matches neither.
var (
	outOfCredit = regexp.MustCompile(`credits?\b[^.]{0,40}\b(depleted|exhausted|used up|run out|ran out|insufficient|exceeded|expired)` +
		`|\b(depleted|exhausted|insufficient|no remaining|out of|run out of|ran out of|used up your)\b[^.]{0,30}\bcredit`)
	billingRequired = regexp.MustCompile(`without (a |an )?(linked )?billing|billing account[^.]{0,30}\b(not |un)?linked|no billing account` +
		`|\b(enable|requires?|required|link|set up|needs?|add)\b[^.]{0,30}\bbilling\b(?: details)?[^.]{0,2}(account|enabled|to be|$|\.|,| on| for| in)` +
		`|billing (is )?(not enabled|disabled|required|must be enabled)` +
		`|\b(requires?|required|need|upgrade to|only (available|supported) (on|with|for))\b[^.]{0,20}\bpaid (tier|plan|account)` +
		`|free tier (is )?not (available|supported)|not available (on|in|for) the free tier`)
)

// quotaHit is one quota a 429 names.
type quotaHit struct {
	id     string // quotaId or ErrorInfo quota_limit
	metric string
	value  int  // the quota's limit
	known  bool // value was given (in the detail or the message)
}

func (h quotaHit) scope() scheduler.Scope {
	if h.known && h.value == 0 {
		return scheduler.ScopeNoQuota
	}
	return quotaScope(h.id)
}

func rateLimited(err error, ae genai.APIError, ce *callError) error {
	out := &scheduler.RateLimitedError{Scope: scheduler.ScopeUnknown, Err: err}
	haveDelay := false
	var hits []quotaHit
	for _, d := range ae.Details {
		switch detailType(d) {
		case "google.rpc.QuotaFailure":
			violations, _ := d["violations"].([]any)
			for _, v := range violations {
				vm, _ := v.(map[string]any)
				h := quotaHit{}
				h.id, _ = vm["quotaId"].(string)
				h.metric, _ = vm["quotaMetric"].(string)
				h.value, h.known = quotaValue(vm["quotaValue"])
				if h.id != "" || h.metric != "" {
					hits = append(hits, h)
				}
			}
		case "google.rpc.ErrorInfo":
			// Older and some current 429s name the quota here only:
			// metadata.quota_limit, quota_limit_value, quota_metric.
			md, _ := d["metadata"].(map[string]any)
			h := quotaHit{}
			h.id, _ = md["quota_limit"].(string)
			h.metric, _ = md["quota_metric"].(string)
			h.value, h.known = quotaValue(md["quota_limit_value"])
			if h.id != "" || h.metric != "" || h.known {
				hits = append(hits, h)
			}
		case "google.rpc.RetryInfo":
			if d, ok := parseRetryDelay(d["retryDelay"]); ok && !haveDelay {
				out.RetryAfter, haveDelay = d, true
			}
		}
	}
	// The message may give the limits the details leave out ("Quota exceeded
	// for metric: M, limit: 0, model: X"), or name the quota alone ("Quota
	// exceeded for quota metric '...' and limit 'GenerateRequestsPerDay...'").
	limits := messageLimits(ae.Message)
	for i := range hits {
		if hits[i].known {
			continue
		}
		if v, ok := limits.of(hits[i].metric); ok {
			hits[i].value, hits[i].known = v, true
		}
	}
	if len(hits) == 0 {
		if m := quotaInMessage.FindStringSubmatch(ae.Message); m != nil {
			hits = append(hits, quotaHit{id: m[1]})
		}
		for _, l := range limits {
			hits = append(hits, quotaHit{metric: l.metric, value: l.value, known: true})
		}
	}
	if len(hits) == 0 {
		// No quota named: a 429 may still be about the project's money.
		msg := strings.ToLower(ae.Message)
		switch {
		case outOfCredit.MatchString(msg):
			return &scheduler.KeyError{Reason: scheduler.ReasonOutOfCredit, Project: true, Err: err}
		case billingRequired.MatchString(msg):
			return &scheduler.KeyError{Reason: scheduler.ReasonBillingRequired, Project: true, Err: err}
		}
	}
	// The longest-lasting hit wins (no quota, then day, then minute); among
	// equals, the first.
	first := true
	for _, h := range hits {
		if s := h.scope(); first || scopeRank(s) > scopeRank(out.Scope) {
			first = false
			out.Scope, out.Quota = s, h.id
			if out.Quota == "" {
				out.Quota = h.metric
			}
			out.Limit = 0
			if h.known && h.value > 0 {
				out.Limit = h.value
			}
		}
	}
	if !haveDelay {
		if d, ok := retryDelayFromMessage(ae.Message); ok {
			out.RetryAfter, haveDelay = d, true
		}
	}
	if !haveDelay && ce != nil && ce.retryAfter > 0 {
		out.RetryAfter = ce.retryAfter
	}
	return out
}

// quotaValue reads a quota's limit: a string ("250", "0") or a number.
func quotaValue(v any) (int, bool) {
	f, ok := number(v)
	if !ok || f != f || f < 0 || f > 1e15 {
		return 0, false
	}
	return int(f), true
}

var (
	// "Quota exceeded for metric: generativelanguage.googleapis.com/x, limit: 0, model: m"
	limitInMessage = regexp.MustCompile(`(?i)(?:metric:\s*([^\s,]+)\s*,\s*)?\blimit:\s*(\d{1,15})\b`)
	// "... and limit 'GenerateRequestsPerDayPerProjectPerModel' of service ..."
	quotaInMessage = regexp.MustCompile(`(?i)\blimit '([A-Za-z0-9_-]+)'`)
)

type messageLimit struct {
	metric string // "" when the line names none
	value  int
}

type messageLimitList []messageLimit

func messageLimits(msg string) messageLimitList {
	var out messageLimitList
	for _, m := range limitInMessage.FindAllStringSubmatch(msg, 32) {
		v, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		out = append(out, messageLimit{metric: m[1], value: v})
	}
	return out
}

// of returns the limit the message gives for metric: the line naming it, or,
// when no line names a metric, the one value every line agrees on.
func (ls messageLimitList) of(metric string) (int, bool) {
	for _, l := range ls {
		if metric != "" && l.metric == metric {
			return l.value, true
		}
	}
	if len(ls) == 0 {
		return 0, false
	}
	for _, l := range ls {
		if l.metric != "" && metric != "" || l.value != ls[0].value {
			return 0, false
		}
	}
	return ls[0].value, true
}

// quotaScope tells a quota's period from its id, e.g.
// "GenerateRequestsPerDayPerProjectPerModel-FreeTier" (day),
// "GenerateContentInputTokensPerModelPerMinute" (minute).
func quotaScope(id string) scheduler.Scope {
	l := strings.ToLower(id)
	switch {
	case strings.Contains(l, "perday"):
		return scheduler.ScopeDay
	case strings.Contains(l, "perminute"):
		return scheduler.ScopeMinute
	}
	return scheduler.ScopeUnknown
}

func scopeRank(s scheduler.Scope) int {
	switch s {
	case scheduler.ScopeNoQuota:
		return 3
	case scheduler.ScopeDay:
		return 2
	case scheduler.ScopeMinute:
		return 1
	}
	return 0
}

// detailType is the message name of a detail's "@type", e.g.
// "google.rpc.RetryInfo" for "type.googleapis.com/google.rpc.RetryInfo".
func detailType(d map[string]any) string {
	t, _ := d["@type"].(string)
	return t[strings.LastIndex(t, "/")+1:]
}

func errorInfoReason(details []map[string]any) string {
	for _, d := range details {
		if detailType(d) == "google.rpc.ErrorInfo" {
			if r, ok := d["reason"].(string); ok {
				return strings.ToUpper(strings.TrimSpace(r))
			}
		}
	}
	return ""
}

// parseRetryDelay reads RetryInfo.retryDelay: a google.protobuf.Duration in
// its JSON form ("26s", "7.967587226s", "0s"), also accepting any
// time.ParseDuration string ("1m30s"), a bare number of seconds, and the
// object form {"seconds": 26, "nanos": 5}. Negative delays read as 0; delays
// are capped at 25 hours. ok is false when v is none of these.
func parseRetryDelay(v any) (d time.Duration, ok bool) {
	switch v := v.(type) {
	case string:
		s := strings.TrimSpace(v)
		if s == "" {
			return 0, false
		}
		if d, err := time.ParseDuration(s); err == nil {
			return clampRetryAfter(d), true
		}
		if f, err := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64); err == nil {
			return secondsToDuration(f)
		}
		return 0, false
	case float64:
		return secondsToDuration(v)
	case map[string]any:
		var secs, nanos float64
		var okS, okN bool
		secs, okS = number(v["seconds"])
		nanos, okN = number(v["nanos"])
		if !okS && !okN {
			return 0, false
		}
		return secondsToDuration(secs + nanos/1e9)
	}
	return 0, false
}

func number(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f, err == nil
	}
	return 0, false
}

func secondsToDuration(f float64) (time.Duration, bool) {
	if f != f { // NaN
		return 0, false
	}
	if f <= 0 {
		return 0, true
	}
	if f >= maxRetryAfter.Seconds() {
		return maxRetryAfter, true
	}
	return clampRetryAfter(time.Duration(f * float64(time.Second))), true
}

func clampRetryAfter(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

// retryInMessage finds "Please retry in 7.967587226s." (the 2026 layout) or
// "retry after 30s" in a message.
var retryInMessage = regexp.MustCompile(`(?i)retry (?:in|after) ((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)`)

func retryDelayFromMessage(msg string) (time.Duration, bool) {
	m := retryInMessage.FindStringSubmatch(msg)
	if m == nil {
		return 0, false
	}
	d, err := time.ParseDuration(strings.ToLower(m[1]))
	if err != nil {
		// Too large for a Duration.
		return maxRetryAfter, true
	}
	return clampRetryAfter(d), true
}
