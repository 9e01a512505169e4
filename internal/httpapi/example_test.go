package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/slideshowd/slideshowd/internal/httpapi"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// memService keeps jobs in a map; the daemon serves a *pipeline.Pipeline.
type memService struct{ jobs map[string]pipeline.Status }

func (m *memService) Submit(ctx context.Context, r pipeline.Request) (string, error) {
	id := fmt.Sprintf("job%d", len(m.jobs)+1)
	m.jobs[id] = pipeline.Status{ID: id, Source: r.Source, Priority: r.Priority, State: pipeline.JobQueued,
		Images: []pipeline.ImageStatus{}, Attempts: 1, CreatedAt: time.Unix(0, 0).UTC(), UpdatedAt: time.Unix(0, 0).UTC()}
	return id, nil
}

func (m *memService) Status(ctx context.Context, id string) (pipeline.Status, error) {
	st, ok := m.jobs[id]
	if !ok {
		return pipeline.Status{}, pipeline.ErrNotFound
	}
	return st, nil
}

// Wait returns a final job's status; the jobs here never change, so for
// any other it waits for ctx.
func (m *memService) Wait(ctx context.Context, id string) (pipeline.Status, error) {
	st, err := m.Status(ctx, id)
	if err != nil || st.State.Final() {
		return st, err
	}
	<-ctx.Done()
	return pipeline.Status{}, ctx.Err()
}

func (m *memService) ImagePath(ctx context.Context, id string, n int) (string, error) {
	return "", pipeline.ErrNotFound
}

// Retry reopens a failed job: queued again for one more attempt.
func (m *memService) Retry(ctx context.Context, id string) error {
	st, ok := m.jobs[id]
	switch {
	case !ok:
		return pipeline.ErrNotFound
	case st.State != pipeline.JobFailed:
		return fmt.Errorf("%w: job %s is %s", pipeline.ErrNotFailed, id, st.State)
	}
	st.State, st.Error = pipeline.JobQueued, ""
	st.Attempts++
	m.jobs[id] = st
	return nil
}

// Cancel ends a job that has not ended.
func (m *memService) Cancel(ctx context.Context, id string) (pipeline.Status, error) {
	st, ok := m.jobs[id]
	switch {
	case !ok:
		return pipeline.Status{}, pipeline.ErrNotFound
	case st.State.Final():
		return st, fmt.Errorf("%w: job %s is %s", pipeline.ErrFinal, id, st.State)
	}
	st.State = pipeline.JobCanceled
	m.jobs[id] = st
	return st, nil
}

// Jobs lists every job in one page (no filter, in no particular order).
func (m *memService) Jobs(ctx context.Context, f pipeline.Filter) (pipeline.Page, error) {
	pg := pipeline.Page{Jobs: []pipeline.Status{}}
	for _, st := range m.jobs {
		pg.Jobs = append(pg.Jobs, st)
	}
	return pg, nil
}

// Serve the API with a bearer token: submit a slideshow, poll it, and see
// what an unauthenticated client gets.
func ExampleNew() {
	h := httpapi.New(httpapi.Config{
		Service: &memService{jobs: map[string]pipeline.Status{}},
		Token:   "s3cret-token-for-the-example",
	})
	send := func(method, path, body, token string) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Print(w.Code, " ", w.Header().Get("Location"), " ", w.Body)
	}
	send("POST", "/v1/slideshows", `{"source":"deck.pptx","slides":[{"text":"Hello"}],"images":2}`, "s3cret-token-for-the-example")
	send("GET", "/v1/slideshows/job1", "", "s3cret-token-for-the-example")
	send("POST", "/v1/slideshows", `{"source":"deck.pptx","slides":[{"text":"Hello"}],"images":30}`, "s3cret-token-for-the-example")
	send("GET", "/v1/slideshows/job1", "", "")
	// Output:
	// 202 /v1/slideshows/job1 {"id":"job1"}
	// 200  {"id":"job1","source":"deck.pptx","priority":"normal","state":"queued","images":[],"attempts":1,"created_at":"1970-01-01T00:00:00Z","updated_at":"1970-01-01T00:00:00Z"}
	// 400  {"error":{"code":400,"status":"INVALID_ARGUMENT","message":"images: 30: must be in 1..20"}}
	// 401  {"error":{"code":401,"status":"UNAUTHENTICATED","message":"missing bearer token: send \"Authorization: Bearer <token>\""}}
}

// Retry a failed job: 202 with its status, queued for a second attempt;
// retrying it again while it is not failed is a 409.
func ExampleNew_retry() {
	epoch := time.Unix(0, 0).UTC()
	h := httpapi.New(httpapi.Config{Service: &memService{jobs: map[string]pipeline.Status{
		"job1": {ID: "job1", Source: "deck.pptx", Priority: "normal", State: pipeline.JobFailed,
			Error: "image 2: no image in the answer", Images: []pipeline.ImageStatus{}, Attempts: 1,
			CreatedAt: epoch, UpdatedAt: epoch},
	}}})
	for range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/slideshows/job1/retry", nil))
		fmt.Print(w.Code, " ", w.Body)
	}
	// Output:
	// 202 {"id":"job1","source":"deck.pptx","priority":"normal","state":"queued","images":[],"attempts":2,"created_at":"1970-01-01T00:00:00Z","updated_at":"1970-01-01T00:00:00Z"}
	// 409 {"error":{"code":409,"status":"FAILED_PRECONDITION","message":"the slideshow is queued: only a failed or canceled slideshow can be retried"}}
}

// Metrics observe the scheduler's events and read its Summary at scrape
// time; New serves them at GET /metrics.
func ExampleNewMetrics() {
	reg := prometheus.NewRegistry()
	m := httpapi.NewMetrics(reg)
	// In the daemon: scheduler.Config{Observer: m, ...}, then m.Attach(s.Summary).
	m.Observe(scheduler.Event{Kind: scheduler.EventFinished, Class: "image", KeyID: "key1", Outcome: "ok", Latency: 8 * time.Second})
	m.Observe(scheduler.Event{Kind: scheduler.EventFinished, Class: "image", KeyID: "key2", Outcome: "rate_limited",
		Err: &scheduler.RateLimitedError{Scope: scheduler.ScopeMinute}})
	m.Attach(func() scheduler.Summary {
		return scheduler.Summary{Classes: []scheduler.ClassSummary{{Name: "image", DayUsed: 2, DayLimit: 480, DayRemaining: 478}}}
	})

	h := httpapi.New(httpapi.Config{Service: &memService{}, Metrics: m})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(line, "slideshowd_calls_total") || strings.HasPrefix(line, "slideshowd_rate_limited_total") ||
			strings.HasPrefix(line, "slideshowd_day_remaining") {
			fmt.Println(line)
		}
	}
	n, _ := testutil.GatherAndCount(reg, "slideshowd_call_duration_seconds")
	fmt.Println("latency series:", n)
	// Output:
	// slideshowd_calls_total{class="image",key="key1",outcome="ok"} 1
	// slideshowd_calls_total{class="image",key="key2",outcome="rate_limited"} 1
	// slideshowd_day_remaining{class="image"} 478
	// slideshowd_rate_limited_total{class="image",key="key2",scope="minute"} 1
	// latency series: 1
}
