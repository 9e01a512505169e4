package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/internal/pipeline"
)

// TestStatusWait runs GET /v1/slideshows/{id}?wait= in a synctest bubble
// against jobs that change at scripted moments: the answer comes when the
// job ends, or when the wait is over, with the status of that moment.
func TestStatusWait(t *testing.T) {
	type change struct {
		at    time.Duration // after the request
		state pipeline.JobState
	}
	tests := []struct {
		name      string
		query     string
		start     pipeline.JobState
		changes   []change
		wantState pipeline.JobState
		wantAt    time.Duration
	}{
		{"done while waiting", "?wait=30s", pipeline.JobQueued,
			[]change{{10 * time.Second, pipeline.JobGenerating}, {25 * time.Second, pipeline.JobDone}}, pipeline.JobDone, 25 * time.Second},
		{"failed while waiting", "?wait=60s", pipeline.JobGenerating,
			[]change{{5 * time.Second, pipeline.JobFailed}}, pipeline.JobFailed, 5 * time.Second},
		{"the wait ends first", "?wait=5s", pipeline.JobQueued,
			[]change{{2 * time.Second, pipeline.JobAnalyzing}, {9 * time.Second, pipeline.JobDone}}, pipeline.JobAnalyzing, 5 * time.Second},
		{"fractional", "?wait=1500ms", pipeline.JobQueued, nil, pipeline.JobQueued, 1500 * time.Millisecond},
		{"the most", "?wait=60s", pipeline.JobQueued, nil, pipeline.JobQueued, 60 * time.Second},
		{"already done", "?wait=60s", pipeline.JobDone, nil, pipeline.JobDone, 0},
		{"zero", "?wait=0s", pipeline.JobQueued, []change{{time.Second, pipeline.JobDone}}, pipeline.JobQueued, 0},
		{"no wait", "", pipeline.JobQueued, []change{{time.Second, pipeline.JobDone}}, pipeline.JobQueued, 0},
		{"other parameters", "?verbose=1&wait=3s", pipeline.JobQueued, nil, pipeline.JobQueued, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				env := newEnv(t, nil)
				env.svc.setJob(pipeline.Status{ID: "job1", State: tt.start, Images: []pipeline.ImageStatus{}})
				start := time.Now()
				type answer struct {
					w  *httptest.ResponseRecorder
					at time.Duration
				}
				answered := make(chan answer, 1)
				go func() {
					w := env.do(t, "GET", "/v1/slideshows/job1"+tt.query, "")
					answered <- answer{w, time.Since(start)}
				}()
				for _, c := range tt.changes {
					time.Sleep(c.at - time.Since(start)) // the script's clock (virtual)
					env.svc.setJob(pipeline.Status{ID: "job1", State: c.state, Images: []pipeline.ImageStatus{}})
				}
				a := <-answered
				if a.w.Code != http.StatusOK {
					t.Fatalf("%d %s", a.w.Code, a.w.Body)
				}
				var st pipeline.Status
				if err := json.Unmarshal(a.w.Body.Bytes(), &st); err != nil {
					t.Fatal(err)
				}
				if st.State != tt.wantState || a.at != tt.wantAt {
					t.Errorf("answered %s after %v, want %s after %v", st.State, a.at, tt.wantState, tt.wantAt)
				}
				// No polling: Wait is called once and looks again only when
				// the job changed.
				if n, most := env.svc.waitLooks(), 1+len(tt.changes); n > most {
					t.Errorf("Wait looked at the job %d times, want at most %d", n, most)
				}
			})
		})
	}
}

// TestStatusWaitEnds: a long poll ends with the request's context (the
// client left) or when the server begins to stop (Config.Stopping), and
// answers the status of that moment; errors end it at once.
func TestStatusWaitEnds(t *testing.T) {
	t.Run("request context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			env := newEnv(t, nil)
			env.svc.setJob(pipeline.Status{ID: "job1", State: pipeline.JobGenerating, Images: []pipeline.ImageStatus{}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			time.AfterFunc(3*time.Second, cancel)
			r := httptest.NewRequestWithContext(ctx, "GET", "/v1/slideshows/job1?wait=60s", nil)
			w := httptest.NewRecorder()
			start := time.Now()
			env.h.ServeHTTP(w, r)
			if took := time.Since(start); took != 3*time.Second {
				t.Errorf("answered after %v, want 3s (when the context ended)", took)
			}
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"state":"generating"`) {
				t.Errorf("%d %s", w.Code, w.Body)
			}
		})
	})
	t.Run("server stopping", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			stopping := make(chan struct{})
			env := newEnv(t, func(c *Config) { c.Stopping = stopping })
			env.svc.setJob(pipeline.Status{ID: "job1", State: pipeline.JobAnalyzing, Images: []pipeline.ImageStatus{}})
			time.AfterFunc(4*time.Second, func() { close(stopping) })
			start := time.Now()
			w := env.do(t, "GET", "/v1/slideshows/job1?wait=60s", "")
			if took := time.Since(start); took != 4*time.Second {
				t.Errorf("answered after %v, want 4s (when the server began to stop)", took)
			}
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"state":"analyzing"`) {
				t.Errorf("%d %s", w.Code, w.Body)
			}
			// Once stopping, a new long poll answers 503 at once, with
			// Retry-After (a 200 at once would be polled again and again
			// through the grace); a plain GET is still served.
			start = time.Now()
			if w := env.do(t, "GET", "/v1/slideshows/job1?wait=60s", ""); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || time.Since(start) != 0 {
				t.Errorf("after the stop: %d after %v", w.Code, time.Since(start))
			}
			if w := env.do(t, "GET", "/v1/slideshows/job1", ""); w.Code != http.StatusOK {
				t.Errorf("GET after the stop: %d", w.Code)
			}
		})
	})
	t.Run("unknown job", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			env := newEnv(t, nil)
			start := time.Now()
			w := env.do(t, "GET", "/v1/slideshows/nope?wait=60s", "")
			if w.Code != http.StatusNotFound || time.Since(start) != 0 {
				t.Errorf("%d after %v: %s", w.Code, time.Since(start), w.Body)
			}
		})
	})
	t.Run("service error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			env := newEnv(t, nil)
			env.svc.statusErr = errors.New("disk on fire")
			w := env.do(t, "GET", "/v1/slideshows/job1?wait=60s", "")
			if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "disk on fire") {
				t.Errorf("%d %s", w.Code, w.Body)
			}
		})
	})
}

func TestStatusWaitInvalid(t *testing.T) {
	const reason = "want a duration from 0s to 60s, like 30s"
	tests := []struct{ query, want string }{
		{"wait=soon", `wait: "soon": ` + reason},
		{"wait=30", `wait: "30": ` + reason},
		{"wait=-1s", `wait: "-1s": ` + reason},
		{"wait=61s", `wait: "61s": ` + reason},
		{"wait=2m", `wait: "2m": ` + reason},
		{"wait=", `wait: "": ` + reason},
		{"wait=1s&wait=2s", "wait: 2 values: give it once"},
		{"wait=" + strings.Repeat("9", 100), `wait: "` + strings.Repeat("9", 40) + `"...: ` + reason},
	}
	env := newEnv(t, nil)
	env.svc.setJob(pipeline.Status{ID: "job1", State: pipeline.JobQueued, Images: []pipeline.ImageStatus{}})
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			w := env.do(t, "GET", "/v1/slideshows/job1?"+tt.query, "")
			if w.Code != http.StatusBadRequest {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if got := apiErr(t, w).Message; got != tt.want {
				t.Errorf("message\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	if n := env.svc.waitLooks(); n != 0 {
		t.Errorf("a refused wait reached the service %d times", n)
	}
}
