package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// requestIDHeader carries the request id: taken from the request when it is
// a short token of letters, digits, '.', '_' and '-', else generated; always
// echoed in the answer and logged.
const requestIDHeader = "X-Request-Id"

type ctxKey struct{}

// requestInfo travels in the request's context.
type requestInfo struct {
	id string
	// shuttingDown: the answer is a 503 because the server shuts down, an
	// expected refusal the client retries: its log line is at info, not
	// error.
	shuttingDown bool
}

func requestID(ctx context.Context) string {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri.id
	}
	return ""
}

// shuttingDown answers 503 with Retry-After (seconds) and msg: the server
// is shutting down and refuses the request. The request's log line says it
// at info level: such answers are expected during the shutdown grace.
func (h *handler) shuttingDown(w http.ResponseWriter, r *http.Request, retryAfter int, msg string) {
	if ri, ok := r.Context().Value(ctxKey{}).(*requestInfo); ok {
		ri.shuttingDown = true
	}
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	h.writeError(w, r, http.StatusServiceUnavailable, msg)
}

// validRequestID reports whether a client's request id may be reused.
func validRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// recorder remembers the status and size of an answer.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveLogged is the outermost layer: request id, panic recovery, one log
// line and the HTTP metrics per request. It logs the method, the path
// (without the query), the matched route, status, size, duration, remote
// address and request id; never a header value or a body.
func (h *handler) serveLogged(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get(requestIDHeader)
	if !validRequestID(id) || h.redact.String(id) != id {
		id = rand.Text()
	}
	w.Header().Set(requestIDHeader, id)
	rec := &recorder{ResponseWriter: w}
	ri := &requestInfo{id: id}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))

	defer func() {
		p := recover()
		if p == http.ErrAbortHandler {
			panic(p) // the server aborts the connection quietly
		}
		if p != nil {
			h.log.Error().Str("request_id", id).Str("method", r.Method).Str("path", h.logPath(r)).
				Str("panic", h.redact.String(fmt.Sprint(p))).Str("stack", h.redact.String(string(debug.Stack()))).
				Msg("handler panicked")
			if rec.status == 0 {
				h.writeError(rec, r, http.StatusInternalServerError, "internal error (request id "+id+")")
			} else {
				// Too late for an error answer: after logging, cut the
				// connection so the client sees a broken response, not a
				// truncated success.
				defer panic(http.ErrAbortHandler)
				rec.status = http.StatusInternalServerError
			}
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		d := time.Since(start)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		if h.cfg.Metrics != nil {
			h.cfg.Metrics.observeHTTP(route, r.Method, status, d)
		}
		var ev *zerolog.Event
		switch {
		case status >= 500 && !(status == http.StatusServiceUnavailable && ri.shuttingDown):
			ev = h.log.Error()
		case status < 400 && (r.Pattern == "GET /healthz" || r.Pattern == "GET /metrics"):
			ev = h.log.Debug() // probes and scrapes would drown the rest
		default:
			ev = h.log.Info()
		}
		ev.Str("request_id", id).Str("method", r.Method).Str("path", h.logPath(r)).Str("route", route).
			Int("status", status).Int64("bytes", rec.bytes).Dur("duration", d).Str("remote", r.RemoteAddr).
			Msg("http request")
	}()
	if h.stopping() && r.Method != http.MethodGet && r.Method != http.MethodHead {
		// New work during the shutdown grace: the listener stays open so
		// clients get an answer to retry on, not a refused connection.
		h.shuttingDown(rec, r, stoppingRetryAfter, "the service is shutting down and takes no new work; try again later")
		return
	}
	if p := r.URL.Path; p != "" && cleanPath(p) != p {
		// The mux would answer a redirect to the cleaned path, in HTML
		// ("/v1/slideshows//images/1", an empty id, to
		// "/v1/slideshows/images/1"): every error is JSON.
		var unclean http.Handler = http.HandlerFunc(h.uncleanPath)
		if strings.HasPrefix(p, "/v1/") {
			unclean = h.requireToken(unclean)
		}
		unclean.ServeHTTP(rec, r)
		return
	}
	h.mux.ServeHTTP(rec, r)
}

// cleanPath is the path the mux serves p as (net/http's cleaning: no
// empty, "." or ".." segment; a trailing slash kept).
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// uncleanPath answers a path with an empty, "." or ".." segment: 404, in
// JSON, naming the path (redacted).
func (h *handler) uncleanPath(w http.ResponseWriter, r *http.Request) {
	h.writeError(w, r, http.StatusNotFound, fmt.Sprintf("no such endpoint: the path %q has an empty, \".\" or \"..\" segment (an id left empty?)", h.logPath(r)))
}

// stoppingRetryAfter is the Retry-After (seconds) of the 503s answered while
// the server shuts down.
const stoppingRetryAfter = 5

// stopping reports whether Config.Stopping is closed.
func (h *handler) stopping() bool {
	if h.cfg.Stopping == nil {
		return false
	}
	select {
	case <-h.cfg.Stopping:
		return true
	default:
		return false
	}
}

// logPath is the request's path for a log line: without the query (where
// clients sometimes put credentials), without secrets, at most 256 bytes.
func (h *handler) logPath(r *http.Request) string {
	p := h.redact.String(r.URL.EscapedPath())
	if len(p) > 256 {
		p = p[:256] + "..."
	}
	return p
}

// tokenDigest hashes a token so comparisons take the same time whatever the
// lengths of the two tokens.
func tokenDigest(tok string) [sha256.Size]byte { return sha256.Sum256([]byte(tok)) }

// tokenMatches compares the digests of the presented and the configured
// token in constant time (crypto/subtle).
func tokenMatches(presented string, want [sha256.Size]byte) bool {
	got := tokenDigest(presented)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header; the scheme is case-insensitive (RFC 7235).
func bearerToken(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// requireToken wraps next so that it runs only for requests that carry the
// configured bearer token; others get 401 with a WWW-Authenticate challenge
// (RFC 6750). Without a configured token it returns next.
func (h *handler) requireToken(next http.Handler) http.Handler {
	if h.cfg.Token == "" {
		return next
	}
	want := tokenDigest(h.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearerToken(r)
		switch {
		case !ok:
			w.Header().Set("WWW-Authenticate", `Bearer realm="slideshowd"`)
			h.writeError(w, r, http.StatusUnauthorized, `missing bearer token: send "Authorization: Bearer <token>"`)
		case !tokenMatches(tok, want):
			w.Header().Set("WWW-Authenticate", `Bearer realm="slideshowd", error="invalid_token"`)
			h.writeError(w, r, http.StatusUnauthorized, "invalid bearer token")
		default:
			next.ServeHTTP(w, r)
		}
	})
}
