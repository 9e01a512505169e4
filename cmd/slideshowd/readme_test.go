package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/slideshowd/slideshowd/internal/pipeline"
)

// readmeBlock returns the first ```lang block of the README that contains
// marker.
func readmeBlock(t *testing.T, lang, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], marker) {
			return m[1]
		}
	}
	t.Fatalf("README has no %s block with %q", lang, marker)
	return ""
}

// TestREADMELongPollLoop runs the README's long-poll loop (bash, curl, jq)
// against a fake daemon: it stops on 401 and 404, waits (sleep) after no
// answer or a 503 and tries again, and ends with the job once it is done.
func TestREADMELongPollLoop(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the README's loop needs %s, which is not installed", tool)
		}
	}
	loop := readmeBlock(t, "sh", "?wait=60s\")")
	const running, done = `{"id":"j1","state":"generating"}`, `{"id":"j1","state":"done"}`
	tests := []struct {
		name    string
		answers []string // status: body, in order; "drop" closes the connection unanswered
		sleeps  int
		last    string // job.json at the end
	}{
		{"done after two polls", []string{"200:" + running, "200:" + done}, 0, done},
		{"wrong token", []string{"401:{\"error\":{\"code\":401}}"}, 0, `{"error":{"code":401}}`},
		{"unknown job", []string{"404:{\"error\":{\"code\":404}}"}, 0, `{"error":{"code":404}}`},
		{"shutting down", []string{"503:{\"error\":{\"code\":503}}", "200:" + done}, 1, done},
		{"daemon gone", []string{"drop", "drop", "200:" + done}, 2, done},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			n := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				i := n
				n++
				mu.Unlock()
				if r.URL.Path != "/v1/slideshows/j1" || r.URL.Query().Get("wait") != "60s" || r.Header.Get("Authorization") != "Bearer tok" {
					http.Error(w, "unexpected request "+r.URL.String(), http.StatusUnauthorized) // ends the loop; the count fails the test
					return
				}
				if i >= len(tt.answers) {
					http.Error(w, "too many requests", http.StatusUnauthorized) // ends the loop; the count fails the test
					return
				}
				a := tt.answers[i]
				if a == "drop" {
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						conn.Close()
					}
					return
				}
				code, body, _ := strings.Cut(a, ":")
				w.Header().Set("Content-Type", "application/json")
				switch code {
				case "200":
					w.WriteHeader(200)
				case "401":
					w.WriteHeader(401)
				case "404":
					w.WriteHeader(404)
				case "503":
					w.WriteHeader(503)
				}
				w.Write([]byte(body))
			}))
			defer srv.Close()
			dir := t.TempDir()
			// sleep is a stand-in that records its calls.
			bindir := writeTestFile(t, filepath.Join(dir, "bin", "sleep"), "#!/bin/sh\necho \"$@\" >> \"$SLEEPS\"\n")
			if err := os.Chmod(bindir, 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", "-c", strings.ReplaceAll(loop, "http://127.0.0.1:8080", srv.URL))
			cmd.Dir = dir
			cmd.Env = []string{"PATH=" + filepath.Join(dir, "bin") + ":" + os.Getenv("PATH"), "AUTH=Authorization: Bearer tok", "ID=j1",
				"SLEEPS=" + filepath.Join(dir, "sleeps")}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Logf("loop: %v", err) // its exit status is the last command's
			}
			if n != len(tt.answers) {
				t.Errorf("the loop asked %d times, want %d\n%s", n, len(tt.answers), out)
			}
			sleeps, _ := os.ReadFile(filepath.Join(dir, "sleeps"))
			if got := strings.Count(string(sleeps), "\n"); got != tt.sleeps {
				t.Errorf("the loop slept %d times, want %d\n%s", got, tt.sleeps, out)
			}
			if job, _ := os.ReadFile(filepath.Join(dir, "job.json")); strings.TrimSpace(string(job)) != tt.last {
				t.Errorf("job.json %q, want %q", job, tt.last)
			}
		})
	}
}

// TestREADMEInputLimits: the README's field table of POST /v1/slideshows
// states the limits the pipeline enforces, with the code's figures.
func TestREADMEInputLimits(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := func(field string) string {
		for line := range strings.Lines(string(b)) {
			if strings.HasPrefix(line, "| `"+field+"` |") {
				return line
			}
		}
		t.Fatalf("README: no field table row for %s", field)
		return ""
	}
	for _, c := range []struct{ field, want string }{
		{"source", fmt.Sprintf("at most %d bytes", pipeline.MaxSourceBytes)},
		{"slides", fmt.Sprintf("1 to %d slides", pipeline.MaxSlides)},
		{"slides", fmt.Sprintf("`text` at most %d bytes", pipeline.MaxTextBytes)},
		{"slides", fmt.Sprintf("at most %d bytes (%d MiB) together", pipeline.MaxInlineBytes, pipeline.MaxInlineBytes>>20)},
		{"images", fmt.Sprintf("1..%d", pipeline.MaxImages)},
	} {
		if r := row(c.field); !strings.Contains(r, c.want) {
			t.Errorf("README: the %s row lacks %q:\n%s", c.field, c.want, r)
		}
	}
}
