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
//   - HTTP 429 (RESOURCE_EXHAUSTED): *RateLimitedError. The scope comes from
//     the quotaId of each QuotaFailure violation: "PerDay" is ScopeDay,
//     "PerMinute" (requests or input tokens) ScopeMinute; with several
//     violations the longest-lasting wins (day over minute); no QuotaFailure
//     (no details, only Help) is ScopeUnknown. RetryAfter comes from
//     RetryInfo.retryDelay, else from "Please retry in 7.96s." in the message,
//     else from a Retry-After header (seen only by this package's Client);
//     "0s" gives 0. A per-day violation is
//     ScopeDay whatever the delay says.
//   - An invalid key (ErrorInfo reason API_KEY_INVALID, usually a 400):
//     *KeyError "invalid"; an expired one: "expired"; a leaked one (403
//     "reported as leaked"): "leaked".
//   - 402: *KeyError "no credit" with Project set.
//   - Any other 403 PERMISSION_DENIED: *KeyError. The request is refused
//     because of who sends it, not because of what it asks (slideshowd
//     sends no file or cache references another key could lack): another
//     key may succeed and this one will not, so the key is disabled until an
//     operator looks. ErrorInfo reasons SERVICE_DISABLED, BILLING_DISABLED
//     and CONSUMER_SUSPENDED concern the whole project (Project set). 401 is a
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
	case reason == "API_KEY_INVALID" || strings.Contains(msg, "api key not valid"):
		return &scheduler.KeyError{Reason: "invalid", Err: err}
	case reason == "API_KEY_EXPIRED" || strings.Contains(msg, "api key expired"):
		return &scheduler.KeyError{Reason: "expired", Err: err}
	case strings.Contains(reason, "LEAKED") || strings.Contains(msg, "reported as leaked"):
		return &scheduler.KeyError{Reason: "leaked", Err: err}
	case code == 402:
		return &scheduler.KeyError{Reason: "no credit", Project: true, Err: err}
	case code == 401:
		return &scheduler.KeyError{Reason: "unauthenticated", Err: err}
	case code == 403:
		switch reason {
		case "SERVICE_DISABLED":
			return &scheduler.KeyError{Reason: "API disabled for the project", Project: true, Err: err}
		case "BILLING_DISABLED":
			return &scheduler.KeyError{Reason: "billing disabled", Project: true, Err: err}
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

func rateLimited(err error, ae genai.APIError, ce *callError) error {
	out := &scheduler.RateLimitedError{Scope: scheduler.ScopeUnknown, Err: err}
	haveDelay := false
	for _, d := range ae.Details {
		switch detailType(d) {
		case "google.rpc.QuotaFailure":
			violations, _ := d["violations"].([]any)
			for _, v := range violations {
				vm, _ := v.(map[string]any)
				id, _ := vm["quotaId"].(string)
				if id == "" {
					continue
				}
				// The longest-lasting violation wins; among equals, the first.
				if s := quotaScope(id); out.Quota == "" || scopeRank(s) > scopeRank(out.Scope) {
					out.Scope, out.Quota = s, id
				}
			}
		case "google.rpc.RetryInfo":
			if d, ok := parseRetryDelay(d["retryDelay"]); ok && !haveDelay {
				out.RetryAfter, haveDelay = d, true
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
