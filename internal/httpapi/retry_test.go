package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/internal/pipeline"
)

// failedJob is a job whose analysis and first image were made and whose
// second image failed.
func failedJob(id string) pipeline.Status {
	return pipeline.Status{ID: id, Source: "deck.pptx", Priority: "normal", State: pipeline.JobFailed,
		Error: "image 2 failed", Attempts: 1, Images: []pipeline.ImageStatus{
			{N: 1, State: pipeline.ImageDone, Prompt: "a tide", MIMEType: "image/png"},
			{N: 2, State: pipeline.ImageFailed, Prompt: "the moon", Error: "no image in the answer"},
		}}
}

func TestRetry(t *testing.T) {
	tests := []struct {
		name      string
		job       pipeline.JobState // state of job "j"; "" for no job
		retryErr  error             // Service.Retry's error, when set
		path      string
		opts      []reqOpt
		wantCode  int
		wantMsg   string // error message, for codes >= 400
		wantRetry int    // jobs reopened
	}{
		{name: "failed", job: pipeline.JobFailed, path: "/v1/slideshows/j/retry", wantCode: 202, wantRetry: 1},
		{name: "unknown id", job: pipeline.JobFailed, path: "/v1/slideshows/nope/retry", wantCode: 404,
			wantMsg: "slideshow not found"},
		{name: "id too long", path: "/v1/slideshows/" + strings.Repeat("a", 200) + "/retry", wantCode: 404,
			wantMsg: "slideshow not found"},
		{name: "done", job: pipeline.JobDone, path: "/v1/slideshows/j/retry", wantCode: 409,
			wantMsg: "the slideshow is done: only a failed or canceled slideshow can be retried"},
		{name: "queued", job: pipeline.JobQueued, path: "/v1/slideshows/j/retry", wantCode: 409,
			wantMsg: "the slideshow is queued: only a failed or canceled slideshow can be retried"},
		{name: "generating", job: pipeline.JobGenerating, path: "/v1/slideshows/j/retry", wantCode: 409,
			wantMsg: "the slideshow is generating: only a failed or canceled slideshow can be retried"},
		{name: "failed since Retry looked", job: pipeline.JobFailed, retryErr: pipeline.ErrNotFailed,
			path: "/v1/slideshows/j/retry", wantCode: 409,
			wantMsg: "the slideshow was still running when asked and has failed since: retry again"},
		{name: "closed", job: pipeline.JobFailed, retryErr: pipeline.ErrClosed, path: "/v1/slideshows/j/retry",
			wantCode: 503, wantMsg: "the service is shutting down; try again later"},
		{name: "without token", job: pipeline.JobFailed, path: "/v1/slideshows/j/retry", opts: []reqOpt{withHeader("Authorization", "")},
			wantCode: 401, wantMsg: "missing bearer token"},
		{name: "wrong token", job: pipeline.JobFailed, path: "/v1/slideshows/j/retry",
			opts: []reqOpt{withToken("wrong-token-0123456789abcdef")}, wantCode: 401, wantMsg: "invalid bearer token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, func(c *Config) { c.Token = testToken })
			if tt.job != "" {
				st := failedJob("j")
				st.State = tt.job
				env.svc.setJob(st)
			}
			env.svc.retryErr = tt.retryErr
			opts := append([]reqOpt{withToken(testToken)}, tt.opts...)
			w := env.do(t, http.MethodPost, tt.path, "", opts...)
			if w.Code != tt.wantCode {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tt.wantCode)
			}
			if got := env.svc.retried(); got != tt.wantRetry {
				t.Errorf("%d jobs reopened, want %d", got, tt.wantRetry)
			}
			if tt.wantCode >= 400 {
				if msg := apiErr(t, w).Message; !strings.HasPrefix(msg, tt.wantMsg) {
					t.Errorf("message %q, want prefix %q", msg, tt.wantMsg)
				}
				if tt.wantCode == 503 && w.Header().Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				return
			}
			// 202: the status as GET answers it after the retry.
			if loc := w.Header().Get("Location"); loc != "/v1/slideshows/j" {
				t.Errorf("Location %q", loc)
			}
			get := env.do(t, http.MethodGet, "/v1/slideshows/j", "", withToken(testToken))
			if get.Code != 200 || w.Body.String() != get.Body.String() {
				t.Errorf("retry answered %s, GET answers %d %s", w.Body, get.Code, get.Body)
			}
			var st pipeline.Status
			if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
				t.Fatal(err)
			}
			if st.State != pipeline.JobQueued || st.Error != "" || st.Attempts != 2 || st.RetriedAt == nil ||
				st.Images[0].State != pipeline.ImageDone || st.Images[1].State != pipeline.ImagePending {
				t.Errorf("status after retry %+v", st)
			}
		})
	}
}

func TestRetryMethodNotAllowed(t *testing.T) {
	for _, method := range []string{"GET", "HEAD", "PUT", "DELETE", "PATCH"} {
		t.Run(method, func(t *testing.T) {
			env := newEnv(t, func(c *Config) { c.Token = testToken })
			env.svc.setJob(failedJob("j"))
			w := env.do(t, method, "/v1/slideshows/j/retry", "", withToken(testToken))
			if w.Code != http.StatusMethodNotAllowed {
				t.Fatalf("%d %s, want 405", w.Code, w.Body)
			}
			if got := w.Header().Get("Allow"); got != "POST" {
				t.Errorf("Allow %q, want POST", got)
			}
			if method != "HEAD" {
				if msg := apiErr(t, w).Message; !strings.Contains(msg, method) {
					t.Errorf("message %q", msg)
				}
			}
			if n := env.svc.retried(); n != 0 {
				t.Errorf("%s reopened %d jobs", method, n)
			}
		})
	}
}
