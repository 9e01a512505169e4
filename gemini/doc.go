// Package gemini makes slideshowd's two Gemini API calls, analysing a
// slideshow (text model) and generating an image (image model), through the
// scheduler and a pool of API keys, and maps every error of the API to a
// scheduler outcome (Classify). It talks to the API only through the Go SDK
// google.golang.org/genai. The emulator of the API is in gemini/emulator.
//
// # Basics
//
// New builds a Client with one SDK client per key. Each call validates its
// input, submits one job to its scheduler class ("text" or "image") with an
// estimate of its input tokens (EstimateTokens), and blocks until the job
// ends. The scheduler runs the job's work on a key it leases; the work sends
// one generateContent request with that key, reports the answer's
// usageMetadata.promptTokenCount to the lease, checks the answer, and
// returns nil or a classified outcome:
//
//	s, _ := scheduler.New(scheduler.Config{..., Classifier: gemini.Classify})
//	c, _ := gemini.New(ctx, gemini.Config{Keys: keys, Scheduler: s})
//	a, err := c.AnalyzeSlideshow(ctx, gemini.Slideshow{Slides: slides, Images: 4})
//	img, err := c.GenerateImage(ctx, gemini.Prompt(a.ImagePrompts[0]), gemini.ImageOptions{})
//
// The analysis uses structured output (responseMimeType application/json and
// a responseSchema that fixes the number of slide notes and image prompts),
// and its answer is checked field by field. The model is asked only for what
// it must write: what the request fixes (how many slides, their order, how
// many image prompts) comes from the request. Near-misses that can be
// repaired without guessing are repaired and logged (Config.Logger): the one
// JSON object of an answer wrapped in a code fence or in sentences, slide
// numbers the model added (5,6,7 or 0,1,2 for three slides), extra image
// prompts; an answer fails only when content is missing, and the
// *AnswerError says which. Images come back inline; their type comes from
// their bytes (PNG, JPEG or WebP, see ImageType), not from the part's
// mimeType, which can disagree with them; bytes that are no image make the
// answer unusable.
//
// Outcomes (see Classify for every case): a 429 is a
// *scheduler.RateLimitedError whose Scope says whether the project is out for
// the minute or for the day, or has no quota on the model at all
// (ScopeNoQuota); an invalid, expired, leaked or refused key a
// *scheduler.KeyError, and so is a project out of credit or that needs
// billing (Project set); 5xx and network failures a *scheduler.TransientError;
// a request that is wrong in itself a *scheduler.PermanentError. A failure
// before the request left the process is wrapped in
// *scheduler.NotSentError, so the lease's units are refunded.
//
// A bad answer (HTTP 200 but malformed or incomplete JSON, or no image) is an
// *AnswerError. Structured output makes it rare, and when it happens it is
// usually a sampling accident (a truncated answer), so it is retried once, on
// whatever key the scheduler picks; a second bad answer for the same job
// fails the job permanently rather than burn more quota on an input that
// provokes it. An answer blocked by safety filters fails the job at once:
// the same request would be blocked again.
//
// # Caveats
//
// Secrets never appear in errors or in the String or GoString of a Key: key
// ids do. Should a server echo a key back, it is redacted from the error's
// text and from the APIError the error wraps.
//
// The SDK never retries (no RetryOptions) and never continues an answer with
// a follow-up request (AutomaticContinuation off): one lease, one request.
// It panics on some malformed answers; the Client recovers and reports
// ErrDecode, a transient failure.
//
// Only a request that provably never reached the HTTP transport (invalid
// input, an unknown key, a context already done) is reported as not sent;
// a request that failed while connecting counts as sent.
package gemini
