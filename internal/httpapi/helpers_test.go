package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/internal/testutil"
)

const (
	testToken  = "test-token-0123456789abcdef"
	testSecret = "AIzaFAKE-secret-key-0000000000000000000"
)

// fakeService is an in-memory Service for the handler's tests.
type fakeService struct {
	mu        sync.Mutex
	next      int
	submitted []pipeline.Request
	jobs      map[string]pipeline.Status
	paths     map[string]string // "id/n" -> file
	keys      map[string]string // idempotency key -> id

	changed chan struct{} // closed and replaced when a job changes

	submitErr error
	statusErr error
	pathErr   error
	retryErr  error // Retry returns it when set
	retries   int   // jobs Retry reopened
	panicWith any   // Status panics with it when set
	waits     int   // times Wait looked at a job
	filters   []pipeline.Filter
}

func newFakeService() *fakeService {
	return &fakeService{jobs: map[string]pipeline.Status{}, paths: map[string]string{}, keys: map[string]string{},
		changed: make(chan struct{})}
}

func (f *fakeService) Submit(ctx context.Context, r pipeline.Request) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.submitErr != nil {
		return "", f.submitErr
	}
	if id, ok := f.keys[r.Key]; ok && r.Key != "" {
		return id, nil
	}
	f.next++
	id := "job" + strconv.Itoa(f.next)
	f.submitted = append(f.submitted, r)
	st := pipeline.Status{ID: id, Source: r.Source, Priority: r.Priority, State: pipeline.JobQueued,
		CreatedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	st.UpdatedAt = st.CreatedAt
	for n := 1; n <= r.Images; n++ {
		st.Images = append(st.Images, pipeline.ImageStatus{N: n, State: pipeline.ImagePending})
	}
	f.jobs[id] = st
	if r.Key != "" {
		f.keys[r.Key] = id
	}
	return id, nil
}

func (f *fakeService) Status(ctx context.Context, id string) (pipeline.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicWith != nil {
		panic(f.panicWith)
	}
	if f.statusErr != nil {
		return pipeline.Status{}, f.statusErr
	}
	st, ok := f.jobs[id]
	if !ok {
		return pipeline.Status{}, fmt.Errorf("job %q: %w", id, pipeline.ErrNotFound)
	}
	return st, nil
}

// Wait blocks until the job is final, woken by setJob (no polling).
func (f *fakeService) Wait(ctx context.Context, id string) (pipeline.Status, error) {
	for {
		f.mu.Lock()
		st, ok := f.jobs[id]
		err := f.statusErr
		changed := f.changed
		f.waits++
		f.mu.Unlock()
		switch {
		case err != nil:
			return pipeline.Status{}, err
		case !ok:
			return pipeline.Status{}, fmt.Errorf("job %q: %w", id, pipeline.ErrNotFound)
		case st.State.Final():
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return pipeline.Status{}, ctx.Err()
		}
	}
}

func (f *fakeService) ImagePath(ctx context.Context, id string, n int) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pathErr != nil {
		return "", f.pathErr
	}
	p, ok := f.paths[id+"/"+strconv.Itoa(n)]
	if !ok {
		return "", pipeline.ErrNotFound
	}
	return p, nil
}

// Retry reopens a failed job like the pipeline: failed images back to
// pending, the job queued, the attempt counted.
func (f *fakeService) Retry(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.retryErr != nil {
		return f.retryErr
	}
	st, ok := f.jobs[id]
	switch {
	case !ok:
		return fmt.Errorf("job %q: %w", id, pipeline.ErrNotFound)
	case st.State != pipeline.JobFailed:
		return fmt.Errorf("%w: job %s is %s", pipeline.ErrNotFailed, id, st.State)
	}
	now := time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC)
	st.State, st.Error, st.UpdatedAt, st.RetriedAt = pipeline.JobQueued, "", now, &now
	st.Attempts++
	st.Images = append([]pipeline.ImageStatus(nil), st.Images...)
	for i, is := range st.Images {
		if is.State == pipeline.ImageFailed {
			st.Images[i] = pipeline.ImageStatus{N: is.N, State: pipeline.ImagePending, Prompt: is.Prompt}
		}
	}
	f.jobs[id] = st
	f.retries++
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

// retried returns how many jobs Retry reopened.
func (f *fakeService) Cancel(ctx context.Context, id string) (pipeline.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.jobs[id]
	if !ok {
		return pipeline.Status{}, pipeline.ErrNotFound
	}
	if st.State.Final() {
		return st, fmt.Errorf("%w: job %s is %s", pipeline.ErrFinal, id, st.State)
	}
	st.State = pipeline.JobCanceled
	f.jobs[id] = st
	return st, nil
}

// Jobs returns the jobs in the filter's states, by id; it records the filter.
func (f *fakeService) Jobs(ctx context.Context, flt pipeline.Filter) (pipeline.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, flt)
	if flt.Priority == "urgent" {
		return pipeline.Page{}, &pipeline.InputError{Field: "priority", Value: `"urgent"`, Reason: "want high, normal or low"}
	}
	pg := pipeline.Page{Jobs: []pipeline.Status{}}
	for _, id := range slices.Sorted(maps.Keys(f.jobs)) {
		if st := f.jobs[id]; len(flt.States) == 0 || slices.Contains(flt.States, st.State) {
			pg.Jobs = append(pg.Jobs, st)
		}
	}
	if flt.Cursor == "" && len(pg.Jobs) > 1 {
		pg.Next = "page2"
	}
	return pg, nil
}

func (f *fakeService) retried() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.retries
}

func (f *fakeService) setJob(st pipeline.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[st.ID] = st
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeService) setPath(id string, n int, path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paths[id+"/"+strconv.Itoa(n)] = path
}

// waitLooks returns how many times Wait looked at a job.
func (f *fakeService) waitLooks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waits
}

func (f *fakeService) requests() []pipeline.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]pipeline.Request(nil), f.submitted...)
}

// syncBuffer is a log sink safe for concurrent writes, with its lines.
type syncBuffer struct{ testutil.Buffer }

// lines returns the JSON log lines.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

type testEnv struct {
	h    http.Handler
	svc  *fakeService
	logs *syncBuffer
}

// newEnv builds a handler around a fake service; edit changes the config.
func newEnv(t *testing.T, edit func(*Config)) *testEnv {
	t.Helper()
	env := &testEnv{svc: newFakeService(), logs: &syncBuffer{}}
	cfg := Config{
		Service: env.svc,
		Logger:  zerolog.New(env.logs).Level(zerolog.DebugLevel),
	}
	if edit != nil {
		edit(&cfg)
	}
	env.h = New(cfg)
	return env
}

type reqOpt func(*http.Request)

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }
func withToken(tok string) reqOpt   { return withHeader("Authorization", "Bearer "+tok) }

// do serves one request; a POST body is sent as application/json unless an
// option says otherwise.
func (e *testEnv) do(t *testing.T, method, path, body string, opts ...reqOpt) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	if method == http.MethodPost {
		r.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(r)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// apiErr decodes an error answer, failing the test when the body is not one.
func apiErr(t *testing.T, w *httptest.ResponseRecorder) errorDetail {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json (body %q)", ct, w.Body.String())
	}
	var b errorBody
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	if b.Error.Code != w.Code || b.Error.Status != statusName(w.Code) || b.Error.Message == "" {
		t.Fatalf("error body %+v does not match status %d", b.Error, w.Code)
	}
	return b.Error
}

func pngBytes(t testing.TB) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	img.Set(0, 0, color.RGBA{R: 255, A: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegBytes(t testing.TB) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// webpBytes is a WebP container header: enough for the signature check.
func webpBytes() []byte {
	return []byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00")
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// writeFile writes data to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const validBody = `{"source":"deck.pptx","slides":[{"text":"Hello"}],"images":2}`
