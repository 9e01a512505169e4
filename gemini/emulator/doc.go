// Package emulator is an in-process emulator of the Gemini API
// (generativelanguage.googleapis.com, v1beta), faithful enough that the real
// Go SDK google.golang.org/genai talks to it unchanged. slideshowd's tests,
// demo and benchmarks, and users without API keys, meet the API through it.
//
// # Basics
//
// New builds an Emulator from a Config: keys (each belongs to a project;
// keys of one project share its quotas), the models served with each
// project's limits on them, the layout of 429 bodies, injected faults and a
// seed. An Emulator is an http.Handler: serve it on a socket with
// net/http (through RecordReceiveTimes, so it counts each request when its
// bytes reached the machine, see Quotas), or hand Transport() to the genai
// client so requests never leave
// the process — which also works inside a testing/synctest bubble, where the
// fake clock drives every quota window and day:
//
//	e, _ := emulator.New(emulator.Config{Keys: []emulator.Key{{Name: "k1", Secret: "s1"}}})
//	client, _ := genai.NewClient(ctx, &genai.ClientConfig{
//		APIKey: "s1", Backend: genai.BackendGeminiAPI,
//		HTTPClient:  &http.Client{Transport: e.Transport()},
//		HTTPOptions: genai.HTTPOptions{BaseURL: "http://emulator", APIVersion: "v1beta"},
//	})
//
// Stats tells what was served: requests by key name, model and status, the
// most requests any 60 s window held per (project, model), 429s by quota id,
// and the day's count; and what the API saw per (project, model), so a test
// can judge a client by it: the arrival time (when its body had been
// received) of every request that reached the quota check, admitted or not, the most of them in any sliding 60 s
// window, and the 429s for a per-minute quota. Keys appear by name only; a
// secret never appears in a response, an error or the statistics.
//
// # What is emulated
//
//   - Paths POST /v1beta/models/{model}:generateContent, :streamGenerateContent
//     (with ?alt=sse one "data:" event holding the whole answer; without it a
//     JSON array), :countTokens ({"contents"} or {"generateContentRequest"});
//     GET /v1beta/models and /v1beta/models/{model}. Other paths and methods:
//     404 "Method not found.". The key comes from x-goog-api-key or ?key=.
//   - Keys: a missing or unknown key answers 400 INVALID_ARGUMENT with
//     ErrorInfo reason API_KEY_INVALID (the real API answers 403 to a request
//     with no key at all; the emulator treats both alike); a leaked key 403
//     PERMISSION_DENIED "Your API key was reported as leaked. ...".
//   - Models: others than Config.Models answer 404 NOT_FOUND
//     "models/x is not found for API version v1beta, ...". A model whose name
//     contains "image" makes images.
//   - Bodies: JSON syntax errors answer 400 "Invalid JSON payload received.
//     Unexpected token." with the line and a caret; unknown member names 400
//     "Unknown name ...: Cannot find field." (lowerCamel and snake_case names
//     are both accepted, as by proto JSON); wrong value types "Invalid value
//     at ...". Missing contents, empty parts, bad roles, bad base64, an
//     unknown aspect ratio or image size, IMAGE output from a text model, and
//     a schema with an unsupported mime type answer 400 naming the field.
//     Bodies over Config.MaxBodyBytes (20 MiB) answer 400.
//   - Quotas per (project, model): RPM over a sliding 60 s window of admitted
//     requests (one admitted at t counts during [t, t+60s)), TPM over the same
//     window of input tokens, RPD per calendar day in Config.Location
//     (America/Los_Angeles: 23 and 25 hour days on DST changes). A rejected
//     request counts for nothing. A request counts when its body has been
//     received: its t, its day and its arrival in Stats are that moment, not
//     the later one when the emulator has parsed it and taken its lock (on a
//     loaded machine those take hundreds of milliseconds of the emulator's
//     own CPU, which the real API does not share with its clients). Served
//     on a listener from RecordReceiveTimes (slideshowd emulate does), on
//     Linux, that moment is the kernel's receive time of the body's last
//     TCP segment: a remote API receives a request when its bytes arrive,
//     however loaded its clients' machine is, while this process, sharing
//     that machine, may get the CPU to read them up to a second later
//     (measured at load 10-20). Otherwise (Transport, another server or
//     system) it is when the emulator's read of the body completed. So
//     requests reach the quota check out of time order; one received at t
//     is admitted only if every 60 s window containing t, requests received
//     after it and counted first included, has room for it: no 60 s interval
//     ever holds more admitted requests than RPM (or tokens than TPM), and a
//     per-minute 429 means the requests received in some 60 s interval
//     exceeded the limit. A request received more than 30 s before the
//     latest one counted on its lane (not seen in practice) counts as
//     received 30 s before that one. One 429 lists every violated quota
//     (per-day, per-minute, tokens, in that order) with the quota ids of
//     GEMINI.md, quotaDimensions {location: global, model} and quotaValue.
//     RetryInfo.retryDelay is the exact wait, from the request's receive
//     time, until the per-minute windows take the request ("26s",
//     "7.967587226s"), or "0s" when only the daily
//     quota is violated. Config.TruncateRetryDelay cuts it to whole seconds as
//     the real API does. A request bigger than the TPM limit can never pass;
//     its retryDelay is the time until the window is empty. countTokens does
//     not count against quotas. Spend lets a test play an outside consumer
//     of the same quotas.
//   - Layouts of 429 bodies: Layout2025, Layout2026 (message ending
//     "Please retry in <delay>."), LayoutBare (no details), LayoutHelpOnly.
//   - Faults: 503/500/504 at configured rates (not counted against quotas),
//     models marked down (503 always), latency from a function of the model
//     and a seeded generator (it honours the request's context: a client that
//     gives up gets its context error, counted as status 499), and answers
//     that are malformed JSON, images refused with IMAGE_SAFETY, or prompts
//     blocked (promptFeedback.blockReason). In a stream, a 5xx fault comes as
//     a "data: {"error": ...}" event after a 200, as a failure mid-stream
//     does; every other error comes as the HTTP status with a JSON body,
//     before the stream starts, as the real API does.
//
// # Answers
//
// Answers are deterministic per request body, model and seed (responseId
// aside, which is unique per request).
//
//   - Text: a few sentences built from the prompt's keywords.
//   - JSON (responseMimeType application/json) following responseSchema (the
//     genai.Schema subset: OBJECT, ARRAY, STRING, INTEGER, NUMBER, BOOLEAN,
//     properties, required, items, enum, minItems/maxItems, minLength/maxLength,
//     minimum/maximum, format, nullable, anyOf, propertyOrdering; properties
//     alphabetical otherwise, as Gemini writes them) or responseJsonSchema
//     (JSON Schema: also type lists, const, prefixItems, $ref into $defs;
//     properties in the order sent). Arrays get minItems..maxItems elements
//     (exactly N when both are N). Strings depend on the property name:
//     titles, summaries, image prompts, keywords, ids, dates, URLs, colours,
//     each made from the words of the prompt (contents, not the system
//     instruction), so answers differ per input. Element i of an array of
//     objects is written about the prompt's "Slide i+1:" section when there
//     is one, and an integer property named like "index" numbers the
//     elements 1..n. A schema whose answer would exceed 200,000 values (or
//     recurse without end) answers the real 400 "...too many states for
//     serving...". text/x.enum answers one enum value. maxOutputTokens cuts
//     the text and ends with finishReason MAX_TOKENS. candidateCount (up to
//     8) gives that many different text candidates.
//   - Images (an image model and responseModalities empty or with IMAGE): a
//     text part (unless only IMAGE was asked) and an inlineData image/png
//     part: a landscape of gradients and shapes chosen by a hash of the
//     request. Its size is the real one for imageConfig.aspectRatio (1:1 by
//     default; 1K 1:1 is 1024x1024, 16:9 is 1376x768, 9:16 768x1376, 21:9
//     1584x672, ... see RealImageSize) times 1, 2 or 4 for imageSize 1K, 2K,
//     4K, multiplied by Config.ImageScale (default 1/8, so a 1K square is
//     128x128; the short side is never below 16 pixels).
//   - usageMetadata: promptTokenCount (text at about four characters a
//     token, each inline or file media part as MediaTokens says: 1120 tokens
//     on Gemini 3 models at the default media resolution, 258 on older ones;
//     the system instruction included; the same count TPM uses and
//     countTokens answers),
//     candidatesTokenCount (text likewise; an image 1120 tokens, 2000 at 4K),
//     totalTokenCount, per-modality details. modelVersion is the model name;
//     finishReason STOP; never a continuationToken.
//
// # Caveats
//
// Not emulated: tools and function calling (accepted, not acted on),
// caching, files, batches, the Live API, embeddings, safety ratings,
// thinking, images per minute (IPM), several chunks per stream, and the
// model's actual understanding of the prompt. Malformed answers and
// blocked prompts only happen when injected. Quota ids follow GEMINI.md:
// the paid tier's token quota is reported as
// GenerateContentInputTokensPerModelPerMinute (the real paid tier says
// GenerateContentPaidTierInputTokensPerModelPerMinute). The package embeds
// the time zone database (time/tzdata) so Pacific days work on any machine.
package emulator
