// Package httpapi is the HTTP API of `slideshowd serve`: an http.Handler
// over the pipeline (submit a slideshow, wait for it, fetch its images), the
// scheduler's usage, a health check and Prometheus metrics.
//
// # Basics
//
// New(Config) returns the handler; serve it with an http.Server that sets
// read, write (above MaxWait) and idle timeouts. Endpoints (JSON unless said
// otherwise):
//
//	POST /v1/slideshows                 submit; 202 {"id": ...} with Location, once the job is stored
//	GET  /v1/slideshows/{id}            the job's pipeline.Status (state, analysis, per-image state)
//	GET  /v1/slideshows/{id}?wait=30s   the same once the job is done or failed, or after 30s (at most 60s)
//	GET  /v1/slideshows/{id}/images/{n} image n (1-based) of a job, as stored (PNG)
//	GET  /v1/slideshows                 a pipeline.Page: jobs newest first; ?state=&priority=&since=&limit=&cursor=
//	DELETE /v1/slideshows/{id}          cancel a queued or running job; 200 with its status (canceled); 409 if it ended
//	POST /v1/slideshows/{id}/retry      reopen a failed or canceled job; 202 with its status, once the reopened job is stored
//	GET  /v1/usage                      scheduler.Summary: per class, project and key
//	GET  /v1/keys                       {"keys": [scheduler.KeyStatus...]} (with Config.Keys); never a secret
//	POST /v1/keys/{id}/enable|disable   put a key back into service, or take it out; 200 with its KeyStatus
//	POST /v1/lanes/{class}/{project}/resume  resume a lane stopped for no quota (with Config.Lanes); 200 with the lane
//	GET  /                              the status page (HTML; a login form with a Token and no session)
//	GET  /healthz                       {"status":"ok"}, or "degraded"/"stopping" with a reason (disk, Config.Shared); never needs the token
//	GET  /metrics                       Prometheus exposition (with Config.Metrics)
//
// The body of POST /v1/slideshows is
//
//	{"source": "deck.pptx", "slides": [{"text": "...", "image": "<base64>"}], "images": 5, "priority": "normal"}
//
// source names the slideshow; slides need a text, an image or both; images
// is 1..20; priority is "high", "normal" (default) or "low". A slide's image
// is standard base64 (RFC 4648 section 4, padded; line breaks ignored) of a
// PNG, JPEG, WebP or GIF file, or a data URL "data:image/png;base64,...". The type
// is sniffed from the bytes; a data URL's type must match them. Decoding is
// strict: one JSON object, field names exactly as above (case-sensitive),
// no unknown or duplicate field, null counts as absent. An Idempotency-Key
// header makes the request idempotent: a retry with the same key answers
// 202 with the first job's id and, when the Service is a KeyedSubmitter
// (the pipeline is), "existing": true, so a client can tell a job stored
// by an earlier request from its own. The same key with a different
// request (pipeline.KeyReusedError) answers 422 naming the key.
//
// POST /v1/slideshows/{id}/retry reopens a failed job (Service.Retry): its
// failed analysis or images go back to pending and it is queued again; what
// it finished is kept. The answer is 202 with the job's status as GET
// returns it, read after the reopened record is stored; 409 when the job is
// not failed (the message names its state), 404 for an unknown job, 503
// once the pipeline is closed. The body, if any, is ignored.
//
// GET /v1/slideshows/{id}?wait=DURATION is a long poll instead of a polling
// loop: it answers 200 with the job's status as soon as the job is done or
// failed (at once when it already is), else when DURATION has passed, with
// the status of that moment. DURATION is a Go duration ("30s", "1m",
// "1500ms") from 0 to MaxWait (60s); anything else is a 400 naming wait and
// the value. A client waits for the end by repeating the request until the
// state is done or failed; each request costs one Service.Wait, which sleeps
// until the pipeline reports the job final (no polling on either side).
//
// Errors are {"error":{"code":400,"status":"INVALID_ARGUMENT","message":"slides[2].image: not valid base64: ..."}};
// a 400 message starts with the field it is about. Codes:
//
//	400 INVALID_ARGUMENT        bad JSON, unknown field, wrong type, value out of range
//	401 UNAUTHENTICATED         token missing or wrong (with WWW-Authenticate: Bearer)
//	404 NOT_FOUND               unknown job, endpoint or image; an image that failed or will never be made
//	405 METHOD_NOT_ALLOWED      with an Allow header
//	409 FAILED_PRECONDITION     the image exists but is still pending or running: wait for the job;
//	                            a retry of a job that is not failed; a cancel of a job that ended
//	413 PAYLOAD_TOO_LARGE       body above Config.MaxBodyBytes (32 MiB by default)
//	415 UNSUPPORTED_MEDIA_TYPE  POST without Content-Type: application/json
//	500 INTERNAL                the message carries only the request id; the cause is logged
//	503 UNAVAILABLE             shutting down (Retry-After), or no scheduler for /v1/usage
//
// With Config.Token set, every /v1/ request, and /metrics unless
// Config.PublicMetrics, needs "Authorization: Bearer <token>" (compared in
// constant time). /metrics shows the same key ids, projects and usage as
// /v1/usage, so it is protected the same way by default.
//
// Every answer carries an X-Request-Id (the client's, when it is a short
// token of letters, digits, '.', '_' and '-'; else a new one). Each request
// is logged once with zerolog: method, path without query, route, status,
// size, duration, remote address and request id, never a header value or a
// body. A panicking handler is logged with its stack and answered 500.
//
// Metrics (NewMetrics) is a scheduler.Observer: set it as
// scheduler.Config.Observer and Attach the scheduler's Summary.
//
// Examples, with SLIDESHOWD_TOKEN set on the daemon:
//
//	curl -sS -X POST http://127.0.0.1:8080/v1/slideshows \
//	  -H "Authorization: Bearer $SLIDESHOWD_TOKEN" -H 'Content-Type: application/json' \
//	  -d '{"source":"deck.pptx","slides":[{"text":"Q3 revenue grew 12%"}],"images":3}'
//	curl -sS -H "Authorization: Bearer $SLIDESHOWD_TOKEN" http://127.0.0.1:8080/v1/slideshows/ID
//	curl -sS -H "Authorization: Bearer $SLIDESHOWD_TOKEN" 'http://127.0.0.1:8080/v1/slideshows/ID?wait=60s'
//	curl -sS -H "Authorization: Bearer $SLIDESHOWD_TOKEN" -o image-1.png http://127.0.0.1:8080/v1/slideshows/ID/images/1
//	curl -sS -X POST -H "Authorization: Bearer $SLIDESHOWD_TOKEN" http://127.0.0.1:8080/v1/slideshows/ID/retry
//	curl -sS -H "Authorization: Bearer $SLIDESHOWD_TOKEN" http://127.0.0.1:8080/v1/usage
//	curl -sS http://127.0.0.1:8080/healthz
//	curl -sS -H "Authorization: Bearer $SLIDESHOWD_TOKEN" http://127.0.0.1:8080/metrics
//
// The README's "HTTP API" section has the same with more detail.
//
// # Caveats
//
//   - A request body is read whole into memory (at most MaxBodyBytes) and its
//     images decoded before Submit: concurrent large uploads cost memory;
//     bound them with the server's connection limits.
//   - http.Server.Shutdown does not cancel requests: it would wait up to
//     MaxWait for the long polls. Close Config.Stopping before Shutdown
//     (slideshowd serve does, at the signal) and they answer
//     at once with the status of that moment. A long poll also ends when its
//     client leaves. The request-duration metrics of the status route
//     include the time spent waiting.
//   - Config.Secrets are removed from every JSON answer and logged error, but
//     image files are served as stored.
package httpapi
