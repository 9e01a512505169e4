package emulator

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// apiError is the "error" object of a Google API error body.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
	Details []any  `json:"details,omitempty"`
}

type errorBody struct {
	Error *apiError `json:"error"`
}

// statusNames are the canonical gRPC status names the API puts in "status".
var statusNames = map[int]string{
	400: "INVALID_ARGUMENT",
	403: "PERMISSION_DENIED",
	404: "NOT_FOUND",
	429: "RESOURCE_EXHAUSTED",
	499: "CANCELLED",
	500: "INTERNAL",
	503: "UNAVAILABLE",
	504: "DEADLINE_EXCEEDED",
}

func newAPIError(code int, msg string, details ...any) *apiError {
	return &apiError{Code: code, Message: msg, Status: statusNames[code], Details: details}
}

// Detail messages, in the field order the real API uses.
type (
	quotaFailure struct {
		Type       string           `json:"@type"`
		Violations []quotaViolation `json:"violations"`
	}
	quotaViolation struct {
		QuotaMetric     string            `json:"quotaMetric"`
		QuotaID         string            `json:"quotaId"`
		QuotaDimensions map[string]string `json:"quotaDimensions,omitempty"`
		QuotaValue      string            `json:"quotaValue,omitempty"`
	}
	helpDetail struct {
		Type  string     `json:"@type"`
		Links []helpLink `json:"links"`
	}
	helpLink struct {
		Description string `json:"description"`
		URL         string `json:"url"`
	}
	retryInfo struct {
		Type       string `json:"@type"`
		RetryDelay string `json:"retryDelay"`
	}
	errorInfo struct {
		Type     string            `json:"@type"`
		Reason   string            `json:"reason"`
		Domain   string            `json:"domain"`
		Metadata map[string]string `json:"metadata,omitempty"`
	}
	localizedMessage struct {
		Type    string `json:"@type"`
		Locale  string `json:"locale"`
		Message string `json:"message"`
	}
	badRequest struct {
		Type            string           `json:"@type"`
		FieldViolations []fieldViolation `json:"fieldViolations"`
	}
	fieldViolation struct {
		Field       string `json:"field,omitempty"`
		Description string `json:"description"`
	}
)

const (
	typeQuotaFailure     = "type.googleapis.com/google.rpc.QuotaFailure"
	typeHelp             = "type.googleapis.com/google.rpc.Help"
	typeRetryInfo        = "type.googleapis.com/google.rpc.RetryInfo"
	typeErrorInfo        = "type.googleapis.com/google.rpc.ErrorInfo"
	typeLocalizedMessage = "type.googleapis.com/google.rpc.LocalizedMessage"
	typeBadRequest       = "type.googleapis.com/google.rpc.BadRequest"
)

// Messages of the real API.
const (
	msgQuota         = "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
	msgQuotaMonitor  = " To monitor your current usage, head to: https://ai.dev/rate-limit. "
	msgExhausted     = "Resource has been exhausted (e.g. check quota)."
	msgOverloaded    = "The model is overloaded. Please try again later."
	msgHighDemand    = "This model is currently experiencing high demand. Spikes in demand are usually temporary. Please try again later."
	msgInternal      = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
	msgDeadline      = "Deadline expired before operation could complete."
	msgCancelled     = "The operation was cancelled."
	msgKeyInvalid    = "API key not valid. Please pass a valid API key."
	msgKeyLeaked     = "Your API key was reported as leaked. Please use another API key."
	msgMethodMissing = "Method not found."
	// Answers of the field (issue #10): a project out of prepaid credit (sent
	// as a rate limit), one that needs billing, an expired key.
	msgOutOfCredit     = "Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects to manage your project and billing."
	msgBillingRequired = "User location is not supported for the API use without a billing account linked."
	msgKeyExpired      = "API key expired. Please renew the API key."
)

func helpQuota() helpDetail {
	return helpDetail{Type: typeHelp, Links: []helpLink{{
		Description: "Learn more about Gemini API quotas",
		URL:         "https://ai.google.dev/gemini-api/docs/rate-limits",
	}}}
}

// Quota ids, without the "-FreeTier" suffix.
const (
	QuotaRequestsPerMinute = "GenerateRequestsPerMinutePerProjectPerModel"
	QuotaRequestsPerDay    = "GenerateRequestsPerDayPerProjectPerModel"
	QuotaTokensPerMinute   = "GenerateContentInputTokensPerModelPerMinute"
	// FreeTierSuffix ends every quota id when Config.FreeTier is set.
	FreeTierSuffix = "-FreeTier"
)

// quotaNames returns the quota id and metric of a violation of kind.
func quotaNames(kind quotaKind, freeTier bool) (id, metric string) {
	const prefix = "generativelanguage.googleapis.com/"
	switch kind {
	case perDay:
		id, metric = QuotaRequestsPerDay, "generate_requests_per_model_per_day"
		if freeTier {
			metric = "generate_content_free_tier_requests"
		}
	case perMinute:
		id, metric = QuotaRequestsPerMinute, "generate_requests_per_model"
		if freeTier {
			metric = "generate_content_free_tier_requests"
		}
	default:
		id, metric = QuotaTokensPerMinute, "generate_content_paid_tier_input_token_count"
		if freeTier {
			metric = "generate_content_free_tier_input_token_count"
		}
	}
	if freeTier {
		id += FreeTierSuffix
	}
	return id, prefix + metric
}

// retryDelay is what a 429 tells the client to wait: the longest per-minute
// wait among the violations, or 0 when only the per-day quota is violated
// (the real API's "0s": retrying before midnight cannot help).
func retryDelay(vs []violation) time.Duration {
	var d time.Duration
	for _, v := range vs {
		if v.kind != perDay && v.delay > d {
			d = v.delay
		}
	}
	return d
}

// quotaError builds the 429 body for the violations vs of model in layout.
func quotaError(vs []violation, model string, layout Layout, freeTier, truncate bool) *apiError {
	switch layout {
	case LayoutBare:
		return newAPIError(429, msgExhausted)
	case LayoutHelpOnly:
		return newAPIError(429, msgQuota+msgQuotaMonitor, helpQuota())
	case LayoutErrorInfo:
		v := vs[0]
		for _, w := range vs {
			if w.kind == perDay {
				v = w
			}
		}
		return errorInfoQuotaError(v.kind, v.limit, freeTier)
	}
	qf := quotaFailure{Type: typeQuotaFailure}
	for _, v := range vs {
		id, metric := quotaNames(v.kind, freeTier)
		qv := quotaViolation{
			QuotaMetric:     metric,
			QuotaID:         id,
			QuotaDimensions: map[string]string{"location": "global", "model": model},
		}
		if v.limit > 0 {
			qv.QuotaValue = strconv.Itoa(v.limit)
		}
		qf.Violations = append(qf.Violations, qv)
	}
	delay := retryDelay(vs)
	ri := retryInfo{Type: typeRetryInfo, RetryDelay: formatDuration(delay)}
	if truncate {
		ri.RetryDelay = formatDuration(delay.Truncate(time.Second))
	}
	if layout == Layout2026 {
		var b strings.Builder
		b.WriteString(msgQuota + msgQuotaMonitor)
		for _, v := range vs {
			_, metric := quotaNames(v.kind, freeTier)
			fmt.Fprintf(&b, "\n* Quota exceeded for metric: %s, limit: %d, model: %s", metric, v.limit, model)
		}
		fmt.Fprintf(&b, "\nPlease retry in %s.", formatDuration(delay))
		return newAPIError(429, b.String(), helpQuota(), qf, ri)
	}
	return newAPIError(429, msgQuota, qf, helpQuota(), ri)
}

// formatDuration writes d as a google.protobuf.Duration in JSON: whole
// seconds as "26s", otherwise 3, 6 or 9 fractional digits ("7.967587226s").
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s, ns := int64(d/time.Second), int64(d%time.Second)
	if ns == 0 {
		return strconv.FormatInt(s, 10) + "s"
	}
	frac := fmt.Sprintf("%09d", ns)
	switch {
	case strings.HasSuffix(frac, "000000"):
		frac = frac[:3]
	case strings.HasSuffix(frac, "000"):
		frac = frac[:6]
	}
	return strconv.FormatInt(s, 10) + "." + frac + "s"
}

func keyInvalidError() *apiError {
	return newAPIError(400, msgKeyInvalid,
		errorInfo{Type: typeErrorInfo, Reason: "API_KEY_INVALID", Domain: "googleapis.com",
			Metadata: map[string]string{"service": "generativelanguage.googleapis.com"}},
		localizedMessage{Type: typeLocalizedMessage, Locale: "en-US", Message: msgKeyInvalid})
}

func badRequestError(msg string) *apiError {
	return newAPIError(400, msg, badRequest{Type: typeBadRequest, FieldViolations: []fieldViolation{{Description: msg}}})
}

func modelNotFoundError(version, model, method string) *apiError {
	return newAPIError(404, fmt.Sprintf("models/%s is not found for API version %s, or is not supported for %s. Call ListModels to see the list of available models and their supported methods.", model, version, method))
}

func unavailableError(layout Layout) *apiError {
	if layout == Layout2026 {
		return newAPIError(503, msgHighDemand)
	}
	return newAPIError(503, msgOverloaded)
}

// errorInfoQuotaError is the LayoutErrorInfo 429 for a quota of kind with
// limit.
func errorInfoQuotaError(kind quotaKind, limit int, freeTier bool) *apiError {
	id, metric := quotaNames(kind, freeTier)
	what := map[quotaKind]string{perDay: "requests per day", perMinute: "requests per minute"}[kind]
	if what == "" {
		what = "input tokens per minute"
	}
	msg := fmt.Sprintf("Quota exceeded for quota metric 'Generate Content API %s' and limit '%s' of service 'generativelanguage.googleapis.com' for consumer 'project_number:123456789'.", what, id)
	return newAPIError(429, msg,
		errorInfo{Type: typeErrorInfo, Reason: "RATE_LIMIT_EXCEEDED", Domain: "googleapis.com", Metadata: map[string]string{
			"service": "generativelanguage.googleapis.com", "quota_metric": metric, "quota_limit": id,
			"quota_limit_value": strconv.Itoa(limit), "consumer": "projects/123456789",
		}},
		helpDetail{Type: typeHelp, Links: []helpLink{{Description: "Request a higher quota limit.", URL: "https://cloud.google.com/docs/quota#requesting_higher_quota"}}})
}

// noQuotaError is the 429 of a project whose limit on model is 0: the
// ErrorInfo layout with quota_limit_value "0", or else the 2026 body of the
// public reports (violations without quotaValue, "limit: 0" in the message).
func noQuotaError(model string, layout Layout, freeTier bool) *apiError {
	if layout == LayoutErrorInfo {
		return errorInfoQuotaError(perDay, 0, freeTier)
	}
	vs := []violation{{kind: perMinute}, {kind: perDay}}
	ae := quotaError(vs, model, Layout2026, freeTier, false)
	return ae
}

func keyExpiredError() *apiError {
	return newAPIError(400, msgKeyExpired,
		errorInfo{Type: typeErrorInfo, Reason: "API_KEY_INVALID", Domain: "googleapis.com",
			Metadata: map[string]string{"service": "generativelanguage.googleapis.com"}},
		localizedMessage{Type: typeLocalizedMessage, Locale: "en-US", Message: msgKeyExpired})
}
