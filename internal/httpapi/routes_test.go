package httpapi

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Every path under /v1 that is not an endpoint, with or without a trailing
// slash, and /v1 itself, is a JSON 404; an endpoint's path with a method it
// does not serve is a JSON 405 with Allow. None is the mux's 307 redirect
// in HTML ("GET /v1" had been redirected to "/v1/").
func TestV1PathsAnswerJSON(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.Gatherer = prometheus.NewRegistry()
		c.Backup = func(ctx context.Context, w io.Writer) (int64, error) { return 0, nil }
	})
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string // for a 405
	}{
		{"GET", "/v1", 404, ""},
		{"POST", "/v1", 404, ""},
		{"DELETE", "/v1", 404, ""},
		{"HEAD", "/v1", 404, ""},
		{"GET", "/v1/", 404, ""},
		{"GET", "/v1/nope", 404, ""},
		{"GET", "/v1/nope/", 404, ""},
		{"GET", "/v1/slideshows/", 404, ""},
		{"POST", "/v1/slideshows/", 404, ""},
		{"GET", "/v1/slideshows/j1/", 404, ""},
		{"GET", "/v1/slideshows/j1/images", 404, ""},
		{"GET", "/v1/slideshows/j1/images/", 404, ""},
		{"GET", "/v1/slideshows/j1/images/1/", 404, ""},
		{"POST", "/v1/slideshows/j1/retry/", 404, ""},
		{"GET", "/v1/usage/", 404, ""},
		{"GET", "/v1/keys/", 404, ""},
		{"GET", "/v1/keys/k1", 404, ""},
		{"POST", "/v1/keys/k1/enable/", 404, ""},
		{"POST", "/v1/lanes/text/p1/resume/", 404, ""},
		{"POST", "/v1/lanes/text/p1", 404, ""},
		{"GET", "/v1/lanes", 404, ""},
		{"GET", "/v1/store", 404, ""},
		{"GET", "/v1/store/", 404, ""},
		{"GET", "/v1/store/backup/", 404, ""},
		{"PUT", "/v1/slideshows", 405, "GET, HEAD, POST"},
		{"DELETE", "/v1/slideshows", 405, "GET, HEAD, POST"},
		{"POST", "/v1/slideshows/j1", 405, "GET, HEAD, DELETE"},
		{"POST", "/v1/slideshows/j1/images/1", 405, "GET, HEAD"},
		{"GET", "/v1/slideshows/j1/retry", 405, "POST"},
		{"POST", "/v1/usage", 405, "GET, HEAD"},
		{"DELETE", "/v1/keys", 405, "GET, HEAD"},
		{"GET", "/v1/keys/k1/enable", 405, "POST"},
		{"GET", "/v1/keys/k1/disable", 405, "POST"},
		{"GET", "/v1/lanes/text/p1/resume", 405, "POST"},
		{"POST", "/v1/store/backup", 405, "GET, HEAD"},
	} {
		w := env.do(t, tc.method, tc.path, "")
		if w.Code != tc.code || w.Header().Get("Location") != "" {
			t.Errorf("%s %s: %d (Location %q) %q, want %d", tc.method, tc.path, w.Code, w.Header().Get("Location"), w.Body, tc.code)
			continue
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q, want application/json", tc.method, tc.path, ct)
			continue
		}
		if got := w.Header().Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		if tc.method == "HEAD" {
			continue
		}
		msg := apiErr(t, w).Message
		if tc.code == 404 && !strings.HasPrefix(msg, "no such endpoint: see ") {
			t.Errorf("%s %s: %q, want the endpoints' list", tc.method, tc.path, msg)
		}
	}
}
