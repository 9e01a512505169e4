package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// The 404's list of endpoints is built from the routes, so it names every
// one (the store backup and metrics when configured, the status page), and
// the README's HTTP API table has a row for each.
func TestNotFoundListsEveryEndpoint(t *testing.T) {
	h := New(Config{
		Service: newFakeService(), Logger: zerolog.Nop(), Gatherer: prometheus.NewRegistry(),
		Backup: func(ctx context.Context, w io.Writer) (int64, error) { return 0, nil },
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/nope", nil))
	msg := apiErr(t, w).Message
	if w.Code != http.StatusNotFound {
		t.Fatalf("GET /v1/nope: %d %s", w.Code, msg)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	table := string(readme)
	table = table[strings.Index(table, "## HTTP API"):]
	table = table[:strings.Index(table, "\n\n### ")]
	endpoints := strings.Split(strings.TrimPrefix(msg, "no such endpoint: see "), ", ")
	for _, want := range []string{"GET /v1/store/backup", "GET /v1/slideshows/{id}/images/{n}", "GET /metrics", "GET /readyz",
		"POST /v1/keys/{id}/disable", "DELETE /v1/slideshows/{id}", "GET / (the status page)"} {
		if !slices.Contains(endpoints, want) {
			t.Errorf("the 404 lacks %q: %s", want, msg)
		}
	}
	for _, e := range endpoints {
		e = strings.TrimSuffix(e, " (the status page)")
		if !strings.Contains(table, "`"+e+"`") {
			t.Errorf("the README's HTTP API table has no row for `%s`", e)
		}
	}
}

// A path with an empty, "." or ".." segment (an id left empty by an unset
// shell variable) is answered a JSON 404 naming it, after the token check
// under /v1/; the mux had answered a 307 redirect in HTML to the cleaned
// path ("/v1/slideshows/images/1"), against "every error is JSON".
func TestUncleanPathJSON(t *testing.T) {
	env := newEnv(t, nil)
	for _, p := range []string{"/v1/slideshows//images/1", "/v1/slideshows/", "/v1/slideshows/j/../j", "/v1//usage", "//healthz"} {
		w := env.do(t, "GET", p, "")
		if p == "/v1/slideshows/" { // clean: the /v1/ catch-all's 404
			if w.Code != http.StatusNotFound {
				t.Errorf("%s: %d %s", p, w.Code, w.Body)
			}
			continue
		}
		if w.Code != http.StatusNotFound || w.Header().Get("Location") != "" || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %v %s, want a JSON 404", p, w.Code, w.Header(), w.Body)
			continue
		}
		if want := `no such endpoint: the path "` + p + `" has an empty, "." or ".." segment (an id left empty?)`; apiErr(t, w).Message != want {
			t.Errorf("%s: %q, want %q", p, apiErr(t, w).Message, want)
		}
	}
	h := New(Config{Service: newFakeService(), Logger: zerolog.Nop(), Token: strings.Repeat("t", 32)})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/slideshows//images/1", nil))
	if w.Code != http.StatusUnauthorized {
		t.Errorf("without the token: %d %s, want 401", w.Code, w.Body)
	}
}
