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
