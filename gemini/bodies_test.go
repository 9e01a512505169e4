package gemini

// Error bodies of the Gemini API, as GEMINI.md records them (and variants of
// them that real answers combine). Every one is served through the real SDK
// in TestClassifyEndToEnd and seeds FuzzClassify.

const (
	help       = `{"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"Learn more about Gemini API quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]}`
	msg429     = `You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.`
	minuteFree = `{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{"location":"global","model":"gemini-3-flash-preview"},"quotaValue":"1000"}`
	dayFree    = `{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier","quotaDimensions":{"location":"global","model":"gemini-3-flash-preview"},"quotaValue":"10000"}`
	tokensFree = `{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_input_token_count","quotaId":"GenerateContentInputTokensPerModelPerMinute-FreeTier","quotaDimensions":{"location":"global","model":"gemini-3-flash-preview"},"quotaValue":"250000"}`
	// Paid tier: no suffix, the per-day metric, no quotaDimensions, no
	// quotaValue (the limit is 0).
	dayPaid    = `{"quotaMetric":"generativelanguage.googleapis.com/generate_requests_per_model_per_day","quotaId":"GenerateRequestsPerDayPerProjectPerModel"}`
	minutePaid = `{"quotaMetric":"generativelanguage.googleapis.com/generate_requests_per_model_per_day","quotaId":"GenerateRequestsPerMinutePerProjectPerModel","quotaDimensions":{"location":"global","model":"gemini-3-pro-image-preview"},"quotaValue":"20"}`
)

func quotaFailure(violations ...string) string {
	s := `{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[`
	for i, v := range violations {
		if i > 0 {
			s += ","
		}
		s += v
	}
	return s + `]}`
}

func retryInfo(delay string) string {
	return `{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"` + delay + `"}`
}

func errBody(code, status, message string, details ...string) string {
	s := `{"error":{"code":` + code + `,"message":"` + message + `","status":"` + status + `"`
	if len(details) > 0 {
		s += `,"details":[`
		for i, d := range details {
			if i > 0 {
				s += ","
			}
			s += d
		}
		s += `]`
	}
	return s + `}}`
}

var (
	// 429, per-minute request quota, 2025 layout (verbatim from GEMINI.md).
	body429Minute2025 = `{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. ...","status":"RESOURCE_EXHAUSTED","details":[
 {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{"location":"global","model":"gemini-3-flash-preview"},"quotaValue":"1000"}]},
 {"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"Learn more about Gemini API quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]},
 {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}]}}`
	body429DayFreeZero   = errBody("429", "RESOURCE_EXHAUSTED", msg429, quotaFailure(dayFree), help, retryInfo("0s"))
	body429Tokens        = errBody("429", "RESOURCE_EXHAUSTED", msg429, quotaFailure(tokensFree), help, retryInfo("13s"))
	body429DayPaid       = errBody("429", "RESOURCE_EXHAUSTED", msg429, quotaFailure(dayPaid), help, retryInfo("52s"))
	body429MinutePaid    = errBody("429", "RESOURCE_EXHAUSTED", msg429, quotaFailure(minutePaid), help, retryInfo("1.5s"))
	body429MinuteThenDay = errBody("429", "RESOURCE_EXHAUSTED", msg429, quotaFailure(minuteFree, dayFree), help, retryInfo("26s"))
	body429DayThenMinute = errBody("429", "RESOURCE_EXHAUSTED", msg429, quotaFailure(dayFree, tokensFree, minuteFree), help, retryInfo("0s"))
	// 2026 layout: Help, QuotaFailure, RetryInfo; the message ends with the delay.
	body429Minute2026 = errBody("429", "RESOURCE_EXHAUSTED",
		`You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 1000, model: gemini-3-flash-preview\nPlease retry in 7.967587226s.`,
		help, quotaFailure(minuteFree), retryInfo("7.967587226s"))
	// 2026 layout without RetryInfo: the delay only in the message.
	body429Minute2026NoRetryInfo = errBody("429", "RESOURCE_EXHAUSTED",
		`You exceeded your current quota. \n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 1000, model: gemini-3-flash-preview\nPlease retry in 7.967587226s.`,
		help, quotaFailure(minuteFree))
	body429Day2026 = errBody("429", "RESOURCE_EXHAUSTED",
		`You exceeded your current quota. \n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 250, model: gemini-3-pro-image-preview\nPlease retry in 41m7.5s.`,
		help, quotaFailure(dayFree))
	body429Bare     = errBody("429", "RESOURCE_EXHAUSTED", `Resource has been exhausted (e.g. check quota).`)
	body429HelpOnly = errBody("429", "RESOURCE_EXHAUSTED", msg429, help)

	body503Overloaded = errBody("503", "UNAVAILABLE", `The model is overloaded. Please try again later.`)
	body503Demand     = errBody("503", "UNAVAILABLE", `This model is currently experiencing high demand. Spikes in demand are usually temporary. Please try again later.`)
	body500           = errBody("500", "INTERNAL", `An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting`)
	body504           = errBody("504", "DEADLINE_EXCEEDED", `The request timed out. Please try again.`)
	body499           = errBody("499", "CANCELLED", `The operation was cancelled.`)

	body400KeyInvalid = errBody("400", "INVALID_ARGUMENT", `API key not valid. Please pass a valid API key.`,
		`{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}`,
		`{"@type":"type.googleapis.com/google.rpc.LocalizedMessage","locale":"en-US","message":"API key not valid. Please pass a valid API key."}`)
	body403Leaked        = errBody("403", "PERMISSION_DENIED", `Your API key was reported as leaked. Please use another API key.`)
	body403Denied        = errBody("403", "PERMISSION_DENIED", `The caller does not have permission`)
	body403Disabled      = errBody("403", "PERMISSION_DENIED", `Generative Language API has not been used in project 123 before or it is disabled.`, `{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SERVICE_DISABLED","domain":"googleapis.com"}`)
	body403Suspended     = errBody("403", "PERMISSION_DENIED", `Permission denied: Consumer 'api_key:xyz' has been suspended.`, `{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONSUMER_SUSPENDED","domain":"googleapis.com"}`)
	body403KeyBlocked    = errBody("403", "PERMISSION_DENIED", `Requests to this API generativelanguage.googleapis.com method google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent are blocked.`, `{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_SERVICE_BLOCKED","domain":"googleapis.com"}`)
	body402              = errBody("402", "FAILED_PRECONDITION", `Your prepaid credits are depleted. Please purchase more credits to continue.`)
	body400Invalid       = errBody("400", "INVALID_ARGUMENT", `Request contains an invalid argument.`)
	body400Precondition  = errBody("400", "FAILED_PRECONDITION", `User location is not supported for the API use.`)
	body404              = errBody("404", "NOT_FOUND", `models/gemini-9-flash is not found for API version v1beta, or is not supported for generateContent.`)
	body401              = errBody("401", "UNAUTHENTICATED", `Request had invalid authentication credentials.`)
	bodyNoCode429        = `{"error":{"message":"quota exceeded","status":"RESOURCE_EXHAUSTED"}}`
	bodyNoCodeNoStatus   = `{"error":{"message":"something went wrong"}}`
	bodyPlainText        = `<html><body><h1>502 Bad Gateway</h1></body></html>`
	bodyEmpty            = ``
	bodyRetryInfoObject  = errBody("429", "RESOURCE_EXHAUSTED", msg429, quotaFailure(minuteFree), `{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":{"seconds":"3","nanos":500000000}}`)
	bodyRetryDelayGarble = errBody("429", "RESOURCE_EXHAUSTED", msg429, quotaFailure(minuteFree), retryInfo("soon"))
)

// seedBodies are (status, body) pairs for FuzzClassify.
var seedBodies = []struct {
	status int
	body   string
}{
	{429, body429Minute2025}, {429, body429DayFreeZero}, {429, body429Tokens}, {429, body429DayPaid},
	{429, body429MinutePaid}, {429, body429MinuteThenDay}, {429, body429DayThenMinute}, {429, body429Minute2026},
	{429, body429Minute2026NoRetryInfo}, {429, body429Day2026}, {429, body429Bare}, {429, body429HelpOnly},
	{503, body503Overloaded}, {503, body503Demand}, {500, body500}, {504, body504}, {499, body499},
	{400, body400KeyInvalid}, {403, body403Leaked}, {403, body403Denied}, {403, body403Disabled},
	{403, body403Suspended}, {403, body403KeyBlocked}, {402, body402}, {400, body400Invalid},
	{400, body400Precondition}, {404, body404}, {401, body401}, {429, bodyNoCode429}, {400, bodyNoCodeNoStatus},
	{502, bodyPlainText}, {500, bodyEmpty}, {429, bodyRetryInfoObject}, {429, bodyRetryDelayGarble},
	// Successful answers: valid, malformed, one the SDK itself cannot decode.
	{200, okAnalysisBody}, {200, okImageBody}, {200, `{"candidates":[{"content":{"parts":[{"text":"{\"summary\":"}]},"finishReason":"MAX_TOKENS"}]}`},
	{200, `{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}`}, {200, `{"candidates":"x"}`}, {200, `not json`}, {200, ``},
}
