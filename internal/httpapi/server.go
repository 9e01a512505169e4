package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// idempotencyHeader makes POST /v1/slideshows idempotent: a second request
// with the same key answers with the first job's id (pipeline.Request.Key,
// prefixed "http:" so HTTP keys never meet the batch command's).
const idempotencyHeader = "Idempotency-Key"

// maxIDLength bounds the job ids and idempotency keys the handler accepts.
const maxIDLength = 128

// handler serves the API; see New.
type handler struct {
	cfg    Config
	log    zerolog.Logger
	redact redactor
	mux    *http.ServeMux

	sessions sessions // the status page's logins

	// endpoints are "METHOD /path" of every API route, in the order they
	// are registered, for the 404's list (built from the routes, so that
	// it cannot miss one).
	endpoints []string

	bodies    *semaphore.Weighted // bytes of bodies being read (MaxBodyBytesInFlight)
	bigBodies atomic.Int64        // bodies of at least bigBody bytes in flight
}

// New returns the HTTP API of the daemon (see the package documentation for
// the endpoints). It panics when cfg is invalid (cfg.Validate names the
// problem; call it first to report it nicely). The handler is safe for
// concurrent use; serve it with an http.Server that sets read, write and
// idle timeouts.
func New(cfg Config) http.Handler {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg.withDefaults()
	secrets := append([]string{cfg.Token}, cfg.Secrets...)
	h := &handler{
		cfg:    cfg,
		log:    cfg.Logger.With().Str("component", "httpapi").Logger(),
		redact: newRedactor(secrets),
		mux:    http.NewServeMux(),
		bodies: semaphore.NewWeighted(cfg.MaxBodyBytesInFlight),
	}
	auth := h.requireToken
	// route serves pattern with one handler per method; any other method
	// gets 405 with an Allow header.
	route := func(pattern string, protect bool, handlers map[string]http.HandlerFunc) {
		var methods []string
		for m, hf := range handlers {
			var handler http.Handler = hf
			if protect {
				handler = auth(handler)
			}
			h.mux.Handle(m+" "+pattern, handler)
			methods = append(methods, m)
			if m == http.MethodGet {
				methods = append(methods, http.MethodHead) // the mux serves HEAD with GET handlers
			}
		}
		slices.SortFunc(methods, func(a, b string) int { return cmp.Compare(methodOrder(a), methodOrder(b)) })
		for _, m := range methods {
			if m != http.MethodHead {
				h.endpoints = append(h.endpoints, m+" "+pattern)
			}
		}
		var others http.Handler = h.methodNotAllowed(strings.Join(methods, ", "))
		if protect {
			others = auth(others)
		}
		h.mux.Handle(pattern, others)
	}
	route("/v1/slideshows", true, map[string]http.HandlerFunc{http.MethodPost: h.create, http.MethodGet: h.list})
	route("/v1/slideshows/{id}", true, map[string]http.HandlerFunc{http.MethodGet: h.status, http.MethodDelete: h.cancel})
	route("/v1/slideshows/{id}/images/{n}", true, map[string]http.HandlerFunc{http.MethodGet: h.image})
	route("/v1/slideshows/{id}/retry", true, map[string]http.HandlerFunc{http.MethodPost: h.retry})
	route("/v1/usage", true, map[string]http.HandlerFunc{http.MethodGet: h.usage})
	route("/v1/keys", true, map[string]http.HandlerFunc{http.MethodGet: h.keys})
	route("/v1/keys/{id}/enable", true, map[string]http.HandlerFunc{http.MethodPost: h.enableKey})
	route("/v1/keys/{id}/disable", true, map[string]http.HandlerFunc{http.MethodPost: h.disableKey})
	route("/v1/lanes/{class}/{project}/resume", true, map[string]http.HandlerFunc{http.MethodPost: h.resumeLane})
	route("/healthz", false, map[string]http.HandlerFunc{http.MethodGet: h.healthz})
	route("/readyz", false, map[string]http.HandlerFunc{http.MethodGet: h.readyz})
	if cfg.Backup != nil {
		route("/v1/store/backup", true, map[string]http.HandlerFunc{http.MethodGet: h.backup})
	}
	if cfg.Gatherer != nil {
		metrics := promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      promLogger{h},
			ErrorHandling: promhttp.ContinueOnError,
		})
		route("/metrics", !cfg.PublicMetrics, map[string]http.HandlerFunc{http.MethodGet: metrics.ServeHTTP})
	}
	h.registerPage()
	h.endpoints = append(h.endpoints, "GET / (the status page)")
	// "/v1" too: without it the mux answers "/v1" a 307 redirect in HTML
	// to the "/v1/" catch-all; every answer under /v1 is JSON.
	h.mux.Handle("/v1", auth(http.HandlerFunc(h.notFound)))
	h.mux.Handle("/v1/", auth(http.HandlerFunc(h.notFound)))
	h.mux.HandleFunc("/", h.notFound)
	return http.HandlerFunc(h.serveLogged)
}

// readBody reads a body into one buffer of its announced length (no
// doubling copies of io.ReadAll); an unknown length grows as needed.
func readBody(r io.Reader, length int64) ([]byte, error) {
	if length < 0 {
		return io.ReadAll(r)
	}
	b := make([]byte, length, length+1)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errors.New("the body is shorter than its Content-Length")
		}
		return nil, err
	}
	return b, nil
}

// bigBody is the size from which a finished body gives its memory back.
const bigBody = 4 << 20

// releaseBody gives back a body's weight; when the last big body in flight
// is done, it returns the freed memory to the operating system at once
// (debug.FreeOSMemory) rather than holding the peak for minutes.
func (h *handler) releaseBody(weight int64) {
	h.bodies.Release(weight)
	if weight < bigBody {
		return
	}
	if h.bigBodies.Add(-1) == 0 {
		debug.FreeOSMemory()
	}
}

// backup serves GET /v1/store/backup: the store's bytes, from one read
// transaction. An error once bytes are sent cuts the body short (the
// client's copy then fails its check: slideshowd store backup verifies it).
func (h *handler) backup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	cw := &countingWriter{w: w}
	n, err := h.cfg.Backup(r.Context(), cw)
	if err != nil {
		if cw.n == 0 {
			h.internalError(w, r, "store backup", err)
			return
		}
		h.log.Error().Str("request_id", requestID(r.Context())).Str("error", h.redact.String(err.Error())).Int64("bytes", n).Msg("store backup cut short")
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// create serves POST /v1/slideshows.
func (h *handler) create(w http.ResponseWriter, r *http.Request) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		h.writeError(w, r, http.StatusUnsupportedMediaType, "Content-Type: missing: want application/json")
		return
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		h.writeError(w, r, http.StatusUnsupportedMediaType, "Content-Type: "+quoteValue(ct)+": want application/json")
		return
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		h.writeError(w, r, http.StatusUnsupportedMediaType, "Content-Type: charset "+quoteValue(cs)+": want utf-8")
		return
	}
	// No header: no key. A header sent, even empty or twice, is a key that
	// must be valid: an empty one is not read as "no key", nor the first
	// of two as the key.
	keys, keyed := r.Header[idempotencyHeader]
	key := ""
	if keyed {
		if len(keys) != 1 {
			h.writeError(w, r, http.StatusBadRequest, fmt.Sprintf("%s: sent %d times: send it once", idempotencyHeader, len(keys)))
			return
		}
		key = keys[0]
		if key == "" || len(key) > maxIDLength || strings.IndexFunc(key, func(c rune) bool { return c < 0x21 || c > 0x7e }) >= 0 {
			h.writeError(w, r, http.StatusBadRequest, idempotencyHeader+": must be 1 to 128 printable ASCII characters without spaces")
			return
		}
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		h.tooLarge(w, r)
		return
	}
	// Bound the bytes of bodies read and decoded at once.
	weight := h.cfg.MaxBodyBytes
	if r.ContentLength >= 0 {
		weight = max(r.ContentLength, 1)
	}
	if !h.bodies.TryAcquire(weight) {
		// The body is read to its end (discarded: no memory held, at most
		// MaxBodyBytes) before the answer. Answered first, a client still
		// sending it got a reset instead of the 503 whenever it did not read
		// the answer within the 500 ms net/http waits before closing a
		// connection with unread data: Go's client reports the write error
		// then (a loaded machine, 32 clients sending 32 MiB each).
		io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Connection", "close")
		h.writeError(w, r, http.StatusServiceUnavailable, fmt.Sprintf("too many request bodies being read at once (at most %d bytes): try again shortly", h.cfg.MaxBodyBytesInFlight))
		return
	}
	if weight >= bigBody {
		h.bigBodies.Add(1)
	}
	defer h.releaseBody(weight)
	body, err := readBody(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.tooLarge(w, r)
			return
		}
		h.writeError(w, r, http.StatusBadRequest, "body: reading failed: "+err.Error())
		return
	}
	req, err := decodeCreate(body)
	if err != nil {
		h.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if key != "" {
		req.Key = "http:" + key
	}
	var id string
	existing := false
	if ks, ok := h.cfg.Service.(KeyedSubmitter); ok && req.Key != "" {
		id, existing, err = ks.SubmitKeyed(r.Context(), req)
	} else {
		id, err = h.cfg.Service.Submit(r.Context(), req)
	}
	var kr *pipeline.KeyReusedError
	if errors.As(err, &kr) {
		h.writeError(w, r, http.StatusUnprocessableEntity, idempotencyHeader+": "+quoteValue(key)+
			": already used for a different request body (job "+kr.ID+"); send the same body again to get that job, or use a new key")
		return
	}
	if err != nil {
		h.serviceError(w, r, err, "submitting the slideshow")
		return
	}
	loc := "/v1/slideshows/" + url.PathEscape(id)
	w.Header().Set("Location", loc)
	h.writeJSON(w, r, http.StatusAccepted, struct {
		ID       string `json:"id"`
		Existing bool   `json:"existing,omitempty"`
	}{id, existing})
}

// KeyedSubmitter is implemented by a Service that can tell whether a keyed
// Submit found the job already stored (*pipeline.Pipeline does). With it,
// POST /v1/slideshows with an Idempotency-Key that names a stored job
// answers {"id": ..., "existing": true}.
type KeyedSubmitter interface {
	SubmitKeyed(ctx context.Context, r pipeline.Request) (id string, existed bool, err error)
}

func (h *handler) tooLarge(w http.ResponseWriter, r *http.Request) {
	h.writeError(w, r, http.StatusRequestEntityTooLarge,
		fmt.Sprintf("body: larger than the limit of %d bytes", h.cfg.MaxBodyBytes))
}

// MaxWait is the longest ?wait= GET /v1/slideshows/{id} accepts. Serve the
// handler with an http.Server whose WriteTimeout is longer.
const MaxWait = 60 * time.Second

// status serves GET /v1/slideshows/{id}, with ?wait=DURATION a long poll:
// the answer comes once the job is done or failed, or when the duration has
// passed, the request's context ends or Config.Stopping is closed; it is the
// job's status then, 200 in every case.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) > maxIDLength {
		h.writeError(w, r, http.StatusNotFound, "slideshow not found")
		return
	}
	wait, err := waitParam(r.URL.Query())
	if err != nil {
		h.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if wait > 0 && h.stopping() {
		// A long poll would answer at once: the client would poll again
		// and again through the grace. Retry-After makes it wait.
		h.shuttingDown(w, r, stoppingRetryAfter, "the service is shutting down and takes no new long polls; try again later")
		return
	}
	var st pipeline.Status
	if wait > 0 {
		st, err = h.wait(r.Context(), id, wait)
	} else {
		st, err = h.cfg.Service.Status(r.Context(), id)
	}
	if err != nil {
		h.serviceError(w, r, err, "reading the slideshow's status")
		return
	}
	h.writeJSON(w, r, http.StatusOK, st)
}

// wait is the long poll of status: the job's status once it is final, or
// when wait has passed, ctx has ended or the server is stopping.
func (h *handler) wait(ctx context.Context, id string, wait time.Duration) (pipeline.Status, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if stopping := h.cfg.Stopping; stopping != nil {
		done, ended := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(ended)
			select {
			case <-stopping:
				cancel()
			case <-done:
			}
		}()
		defer func() { close(done); <-ended }()
	}
	h.log.Debug().Str("request_id", requestID(ctx)).Dur("wait", wait).Msg("long poll: waiting for the job to end")
	st, err := h.cfg.Service.Wait(wctx, id)
	if wctx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		// The wait is over before the job: answer what is stored now, also
		// when the client has gone (nobody reads it then).
		return h.cfg.Service.Status(context.WithoutCancel(ctx), id)
	}
	return st, err
}

// waitParam reads the wait query parameter: absent means 0 (answer at
// once); else one Go duration from 0 to MaxWait.
func waitParam(q url.Values) (time.Duration, error) {
	vs, ok := q["wait"]
	if !ok {
		return 0, nil
	}
	if len(vs) != 1 {
		return 0, &fieldError{Field: "wait", Value: fmt.Sprintf("%d values", len(vs)), Reason: "give it once"}
	}
	d, err := time.ParseDuration(vs[0])
	if err != nil || d < 0 || d > MaxWait {
		return 0, &fieldError{Field: "wait", Value: quoteValue(vs[0]),
			Reason: fmt.Sprintf("want a duration from 0s to %ds, like 30s", int(MaxWait/time.Second))}
	}
	return d, nil
}

// image serves GET /v1/slideshows/{id}/images/{n}: the image file when it
// is done; 404 for an unknown job or image (n beyond the job's images,
// whatever its state), or one that failed or will never be made; 409
// while it is still pending or running.
func (h *handler) image(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n, err := strconv.Atoi(r.PathValue("n"))
	if len(id) > maxIDLength || err != nil || n < 1 {
		h.writeError(w, r, http.StatusNotFound, "image not found: want /v1/slideshows/{id}/images/{n} with n from 1")
		return
	}
	st, err := h.cfg.Service.Status(r.Context(), id)
	if err != nil {
		h.serviceError(w, r, err, "reading the slideshow's status")
		return
	}
	var img *pipeline.ImageStatus
	for i := range st.Images {
		if st.Images[i].N == n {
			img = &st.Images[i]
			break
		}
	}
	final := st.State.Final()
	switch {
	case img == nil: // beyond the job's images (listed from its submission on): never made
		h.writeError(w, r, http.StatusNotFound, fmt.Sprintf("image %d not found: the slideshow has %d image%s", n, len(st.Images), map[bool]string{true: "", false: "s"}[len(st.Images) == 1]))
		return
	case img.State == pipeline.ImageFailed:
		h.writeError(w, r, http.StatusNotFound, fmt.Sprintf("image %d failed; see GET /v1/slideshows/{id} for the reason", n))
		return
	case img.State != pipeline.ImageDone && final:
		h.writeError(w, r, http.StatusNotFound, fmt.Sprintf("image %d will not be made: the slideshow is %s", n, st.State))
		return
	case img.State != pipeline.ImageDone:
		h.writeError(w, r, http.StatusConflict, fmt.Sprintf("image %d is not ready: it is %s; wait for the job with GET /v1/slideshows/{id}?wait=60s", n, img.State))
		return
	}
	path, err := h.cfg.Service.ImagePath(r.Context(), id, n)
	if err != nil {
		h.serviceError(w, r, err, "finding the image")
		return
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			h.damagedImage(w, r, id, n, "missing", "its stored file is missing", err)
			return
		}
		h.internalError(w, r, "opening the image", err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		if err == nil {
			h.damagedImage(w, r, id, n, "not_a_file", "its stored file is not a regular file", errors.New(fi.Mode().String()))
			return
		}
		h.internalError(w, r, "reading the image", err)
		return
	}
	// The bytes must be the recorded type: a file cut short to nothing or
	// overwritten is damage, never served as the image.
	head := make([]byte, 16)
	k, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		h.internalError(w, r, "reading the image", err)
		return
	}
	want := img.MIMEType
	if got := gemini.ImageType(head[:k]); got == "" || (want != "" && got != want) {
		if want == "" {
			want = "an image"
		}
		h.damagedImage(w, r, id, n, "wrong_type",
			fmt.Sprintf("its stored file (%d bytes) is not %s", fi.Size(), want),
			fmt.Errorf("first bytes %q, type %q", head[:k], got))
		return
	} else if want == "" {
		want = got
	}
	w.Header().Set("Content-Type", want)
	// A done image never changes.
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// Without a MIME type in the status, ServeContent takes it from the
	// file's extension, else sniffs the content.
	http.ServeContent(w, r, filepath.Base(path), fi.ModTime(), f)
}

// retry serves POST /v1/slideshows/{id}/retry: it reopens a failed job
// (Service.Retry) and answers 202 with the job's status once the reopened
// record is stored: queued, or already further along when a worker took it
// at once. A job that is not failed is a 409 naming its state. The request
// body, if any, is ignored.
func (h *handler) retry(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) > maxIDLength {
		h.writeError(w, r, http.StatusNotFound, "slideshow not found")
		return
	}
	if err := h.cfg.Service.Retry(r.Context(), id); err != nil {
		if errors.Is(err, pipeline.ErrNotFailed) {
			h.notFailed(w, r, id)
			return
		}
		h.serviceError(w, r, err, "retrying the slideshow")
		return
	}
	st, err := h.cfg.Service.Status(r.Context(), id)
	if err != nil {
		// The job is reopened; only its status could not be read.
		h.serviceError(w, r, err, "reading the retried slideshow's status")
		return
	}
	w.Header().Set("Location", "/v1/slideshows/"+url.PathEscape(id))
	h.writeJSON(w, r, http.StatusAccepted, st)
}

// notFailed answers 409 for a retry of job id, which Service.Retry found
// not failed; the message names the job's state of now.
func (h *handler) notFailed(w http.ResponseWriter, r *http.Request, id string) {
	const only = "only a failed or canceled slideshow can be retried"
	st, err := h.cfg.Service.Status(r.Context(), id)
	switch {
	case err != nil:
		h.writeError(w, r, http.StatusConflict, "the slideshow is not failed: "+only)
	case st.State == pipeline.JobFailed || st.State == pipeline.JobCanceled:
		// It failed (or was canceled) between Retry and Status.
		h.writeError(w, r, http.StatusConflict, "the slideshow was still running when asked and has "+string(st.State)+" since: retry again")
	default:
		h.writeError(w, r, http.StatusConflict, fmt.Sprintf("the slideshow is %s: %s", st.State, only))
	}
}

// usage serves GET /v1/usage.
func (h *handler) usage(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Summary == nil {
		h.writeError(w, r, http.StatusServiceUnavailable, "usage is not available: no scheduler attached")
		return
	}
	h.writeJSON(w, r, http.StatusOK, h.cfg.Summary())
}

// healthz serves GET /healthz.
// DiskHealther is a Service that can tell whether its data directory takes
// writes (the pipeline can: (*pipeline.Pipeline).DiskHealth). GET /healthz
// and GET /readyz report it.
type DiskHealther interface {
	DiskHealth() error
}

type health struct {
	Status string `json:"status"`           // "ok", "degraded" or "stopping"
	Reason string `json:"reason,omitempty"` // why not ok
}

// check returns the service's health; withShared adds the shared quota's
// (Config.Shared), which /readyz leaves out.
func (h *handler) check(withShared bool) health {
	if h.cfg.Stopping != nil {
		select {
		case <-h.cfg.Stopping:
			return health{"stopping", "the server is shutting down"}
		default:
		}
	}
	if dh, ok := h.cfg.Service.(DiskHealther); ok {
		if err := dh.DiskHealth(); err != nil {
			reason := "the data directory does not take writes: " + h.redact.String(err.Error())
			if errors.Is(err, pipeline.ErrNoSpace) {
				reason = "no space left on the data directory's disk: submits answer 507 until space is freed"
			}
			return health{"degraded", reason}
		}
	}
	if withShared && h.cfg.Shared != nil {
		if err := h.cfg.Shared(); err != nil {
			return health{"degraded", h.redact.String(err.Error())}
		}
	}
	return health{Status: "ok"}
}

// healthz serves GET /healthz, the liveness check: 200 while the process
// serves, with status "ok", or "degraded" or "stopping" and the reason.
func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	h.writeJSON(w, r, http.StatusOK, h.check(true))
}

// readyz serves GET /readyz, for load balancers: 200 {"status":"ok"} when
// the service takes submits, else 503 with the status and reason.
func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	st := h.check(false)
	code := http.StatusOK
	if st.Status != "ok" {
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "10")
		if ri, ok := r.Context().Value(ctxKey{}).(*requestInfo); ok && st.Status == "stopping" {
			ri.shuttingDown = true // a load balancer asks while the server drains: expected
		}
	}
	h.writeJSON(w, r, code, st)
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.writeError(w, r, http.StatusNotFound, "no such endpoint: see "+strings.Join(h.endpoints, ", "))
}

func (h *handler) methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		h.writeError(w, r, http.StatusMethodNotAllowed, "method "+quoteValue(r.Method)+" not allowed: use "+allow)
	})
}

// serviceError answers for an error of the Service. Only errors the
// pipeline marks as the client's (bad input, unknown id) reach the client
// with their details; anything else is logged and answered with a generic
// message that carries the request id.
func (h *handler) serviceError(w http.ResponseWriter, r *http.Request, err error, doing string) {
	var ie *pipeline.InputError
	switch {
	case errors.As(err, &ie):
		fe := &fieldError{Field: ie.Field, Value: shorten(ie.Value), Reason: ie.Reason}
		h.writeError(w, r, http.StatusBadRequest, fe.Error())
	case errors.Is(err, pipeline.ErrNotFound):
		h.writeError(w, r, http.StatusNotFound, "slideshow not found")
	case errors.Is(err, pipeline.ErrNoSpace):
		if h.cfg.Metrics != nil {
			h.cfg.Metrics.diskFull.Inc()
		}
		w.Header().Set("Retry-After", "60")
		h.writeError(w, r, http.StatusInsufficientStorage, "no space left on the data directory's disk: nothing was stored; try again once space is freed")
	case errors.Is(err, scheduler.ErrUnknownKey):
		h.writeError(w, r, http.StatusNotFound, "key not found: see GET /v1/keys for the key ids")
	case errors.Is(err, pipeline.ErrClosed):
		h.shuttingDown(w, r, stoppingRetryAfter, "the service is shutting down; try again later")
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		h.log.Info().Str("request_id", requestID(r.Context())).Str("error", h.redact.String(err.Error())).
			Msg(doing + " stopped: the request was cancelled")
		h.writeError(w, r, http.StatusServiceUnavailable, "request cancelled")
	default:
		h.internalError(w, r, doing, err)
	}
}

// damagedImage answers 500 for a done image whose stored file is missing
// or not its recorded type: damage to the data directory, not a missing
// image. The message names the job and image, never a path; the log has
// the cause at error level, and slideshowd_damaged_images_total{reason}
// counts it.
func (h *handler) damagedImage(w http.ResponseWriter, r *http.Request, id string, n int, reason, what string, cause error) {
	rid := requestID(r.Context())
	h.log.Error().Str("request_id", rid).Str("job", id).Int("image", n).Str("reason", reason).
		Str("error", h.redact.String(cause.Error())).Msg("stored image damaged: " + what)
	if h.cfg.Metrics != nil {
		h.cfg.Metrics.damagedImages.WithLabelValues(reason).Inc()
	}
	h.writeError(w, r, http.StatusInternalServerError, fmt.Sprintf(
		"image %d of slideshow %s is damaged: %s although the job records it as done; the daemon's log has the cause (request id %s)",
		n, id, what, rid))
}

// internalError logs err (without secrets) and answers 500 with the request
// id only.
func (h *handler) internalError(w http.ResponseWriter, r *http.Request, doing string, err error) {
	id := requestID(r.Context())
	h.log.Error().Str("request_id", id).Str("error", h.redact.String(err.Error())).Msg(doing + " failed")
	h.writeError(w, r, http.StatusInternalServerError, "internal error while "+doing+" (request id "+id+")")
}

// writeError answers with the JSON error body.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h.writeJSON(w, r, code, errorBody{Error: errorDetail{Code: code, Status: statusName(code), Message: msg}})
}

// writeJSON answers with v as JSON, secrets removed.
func (h *handler) writeJSON(w http.ResponseWriter, r *http.Request, code int, v any) {
	b, err := marshalJSON(v)
	if err != nil {
		h.log.Error().Str("request_id", requestID(r.Context())).Str("error", h.redact.String(err.Error())).Msg("encoding an answer failed")
		code = http.StatusInternalServerError
		b, _ = marshalJSON(errorBody{Error: errorDetail{Code: code, Status: statusName(code),
			Message: "internal error while encoding the answer (request id " + requestID(r.Context()) + ")"}})
	}
	b = h.redact.JSON(b)
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// promLogger sends promhttp's errors to the handler's logger.
type promLogger struct{ h *handler }

func (l promLogger) Println(v ...any) {
	l.h.log.Error().Str("error", l.h.redact.String(fmt.Sprint(v...))).Msg("serving metrics")
}

// marshalJSON encodes v as one line of JSON ending in a newline, without
// HTML escaping (answers are read by programs and people, not browsers).
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
