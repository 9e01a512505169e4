package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

func TestCreatePollFetch(t *testing.T) {
	env := newEnv(t, nil)
	pngData, jpegData := pngBytes(t), jpegBytes(t)
	body := fmt.Sprintf(`{"source":"deck.pptx","slides":[{"text":"Intro"},{"text":"Chart","image":%q},{"image":%q}],"images":2,"priority":"high"}`,
		b64(pngData), "data:image/jpeg;base64,"+b64(jpegData))

	w := env.do(t, "POST", "/v1/slideshows", body)
	if w.Code != http.StatusAccepted {
		t.Fatalf("POST: %d %s", w.Code, w.Body)
	}
	var created struct{ ID string }
	if err := json.Unmarshal(w.Body.Bytes(), &created); err != nil || created.ID != "job1" {
		t.Fatalf("POST body %q: id %q, err %v", w.Body, created.ID, err)
	}
	if loc := w.Header().Get("Location"); loc != "/v1/slideshows/job1" {
		t.Errorf("Location %q", loc)
	}
	want := pipeline.Request{Source: "deck.pptx", Images: 2, Priority: "high", Slides: []pipeline.SlideInput{
		{Text: "Intro"},
		{Text: "Chart", Image: pngData, ImageMIME: "image/png"},
		{Image: jpegData, ImageMIME: "image/jpeg"},
	}}
	if got := env.svc.requests(); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("submitted %+v, want %+v", got, want)
	}

	// Poll: queued, both images pending.
	w = env.do(t, "GET", "/v1/slideshows/job1", "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET status: %d %s", w.Code, w.Body)
	}
	var st pipeline.Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.ID != "job1" || st.State != pipeline.JobQueued || len(st.Images) != 2 || st.Images[0].State != pipeline.ImagePending {
		t.Fatalf("status %+v", st)
	}
	if w := env.do(t, "GET", "/v1/slideshows/job1/images/1", ""); w.Code != http.StatusConflict {
		t.Fatalf("image of a queued job: %d %s", w.Code, w.Body)
	}

	// The job finishes; image 1 is served from its file.
	st.State = pipeline.JobDone
	st.Analysis = &gemini.Analysis{Summary: "s", Hook: "h", ImagePrompts: []string{"a", "b"}}
	out := pngBytes(t)
	for i := range st.Images {
		st.Images[i].State, st.Images[i].MIMEType = pipeline.ImageDone, "image/png"
		env.svc.setPath("job1", i+1, writeFile(t, t.TempDir(), "image.png", out))
	}
	env.svc.setJob(st)
	w = env.do(t, "GET", "/v1/slideshows/job1", "")
	var got pipeline.Status
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.Analysis == nil || got.Analysis.Summary != "s" || got.State != pipeline.JobDone {
		t.Fatalf("done status %s (%v)", w.Body, err)
	}
	w = env.do(t, "GET", "/v1/slideshows/job1/images/2", "")
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), out) {
		t.Fatalf("image: %d, %d bytes", w.Code, w.Body.Len())
	}
	if ct := w.Header().Get("Content-Type"); ct != "image/png" {
		t.Errorf("image Content-Type %q", ct)
	}
	if w.Header().Get("Last-Modified") == "" || w.Header().Get("Accept-Ranges") != "bytes" {
		t.Errorf("image headers %v: want Last-Modified and Accept-Ranges from http.ServeContent", w.Header())
	}
	// HEAD and ranges come with http.ServeContent.
	if w := env.do(t, "HEAD", "/v1/slideshows/job1/images/2", ""); w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("HEAD image: %d, %d bytes", w.Code, w.Body.Len())
	}
	w = env.do(t, "GET", "/v1/slideshows/job1/images/2", "", withHeader("Range", "bytes=0-7"))
	if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), out[:8]) {
		t.Errorf("ranged image: %d %q", w.Code, w.Body.Bytes())
	}
}

func TestCreateIdempotencyKey(t *testing.T) {
	env := newEnv(t, nil)
	first := env.do(t, "POST", "/v1/slideshows", validBody, withHeader("Idempotency-Key", "abc-1"))
	second := env.do(t, "POST", "/v1/slideshows", validBody, withHeader("Idempotency-Key", "abc-1"))
	other := env.do(t, "POST", "/v1/slideshows", validBody)
	if first.Code != 202 || second.Code != 202 || other.Code != 202 {
		t.Fatalf("codes %d %d %d", first.Code, second.Code, other.Code)
	}
	if first.Body.String() != second.Body.String() || first.Body.String() == other.Body.String() {
		t.Fatalf("bodies %s %s %s", first.Body, second.Body, other.Body)
	}
	if reqs := env.svc.requests(); reqs[0].Key != "http:abc-1" || reqs[1].Key != "" {
		t.Fatalf("keys %q %q", reqs[0].Key, reqs[1].Key)
	}
	w := env.do(t, "POST", "/v1/slideshows", validBody, withHeader("Idempotency-Key", "has space"))
	if w.Code != 400 || !strings.HasPrefix(apiErr(t, w).Message, "Idempotency-Key:") {
		t.Fatalf("bad key: %d %s", w.Code, w.Body)
	}
	// An empty header is not "no key", and of two headers the first is
	// not silently the key: both are a 400 naming the header.
	for _, tc := range []struct {
		name string
		opt  reqOpt
		want string
	}{
		{"empty", withHeader("Idempotency-Key", ""), "Idempotency-Key: must be 1 to 128 printable ASCII characters"},
		{"twice", func(r *http.Request) {
			r.Header.Add("Idempotency-Key", "abc-1")
			r.Header.Add("Idempotency-Key", "abc-2")
		}, "Idempotency-Key: sent 2 times: send it once"},
	} {
		n := len(env.svc.requests())
		w := env.do(t, "POST", "/v1/slideshows", validBody, tc.opt)
		if w.Code != 400 || !strings.HasPrefix(apiErr(t, w).Message, tc.want) {
			t.Errorf("%s key: %d %s, want 400 %q", tc.name, w.Code, w.Body, tc.want)
		}
		if len(env.svc.requests()) != n {
			t.Errorf("%s key: a request was submitted", tc.name)
		}
	}
}

// TestCreateKeyReused: a Service refusing a key reused with a different
// request (pipeline.KeyReusedError) is a 422 naming the key and the job.
func TestCreateKeyReused(t *testing.T) {
	env := newEnv(t, nil)
	env.svc.submitErr = fmt.Errorf("submitting: %w", &pipeline.KeyReusedError{Key: "http:abc-1", ID: "job7"})
	w := env.do(t, "POST", "/v1/slideshows", validBody, withHeader("Idempotency-Key", "abc-1"))
	e := apiErr(t, w)
	want := `Idempotency-Key: "abc-1": already used for a different request body (job job7)`
	if w.Code != 422 || e.Status != "UNPROCESSABLE_ENTITY" || !strings.HasPrefix(e.Message, want) {
		t.Fatalf("%d %s, want 422 UNPROCESSABLE_ENTITY %q...", w.Code, w.Body, want)
	}
}

func TestCreateBadRequest(t *testing.T) {
	png := b64(pngBytes(t))
	tests := []struct {
		name, body string
		want       string // prefix of the message
	}{
		{"empty body", ``, "body: empty"},
		{"bad JSON", `{"source": "x",}`, "body: invalid JSON at byte 16"},
		{"truncated JSON", `{"source": "x"`, "body: truncated JSON"},
		{"not an object", `["x"]`, "body: got array, want an object"},
		{"trailing object", validBody + ` {}`, "body: unexpected data after the JSON object"},
		{"trailing garbage", validBody + `x`, "body: unexpected data after the JSON object"},
		{"unknown field", `{"source":"s","slides":[{"text":"a"}],"images":1,"color":"red"}`, "color: unknown field"},
		{"field name case", `{"Source":"s","slides":[{"text":"a"}],"images":1}`, "Source: unknown field"},
		{"duplicate field", `{"images":1,"slides":[{"text":"a"}],"images":2}`, "images: duplicate field"},
		{"unknown slide field", `{"slides":[{"text":"a"},{"text":"b","caption":"c"}],"images":1}`, "slides[1].caption: unknown field"},
		{"source type", `{"source":5,"slides":[{"text":"a"}],"images":1}`, `source: 5: got number, want a string`},
		{"slides missing", `{"source":"s","images":1}`, "slides: missing"},
		{"slides null", `{"slides":null,"images":1}`, "slides: missing"},
		{"slides type", `{"slides":{"text":"a"},"images":1}`, "slides: got object, want an array"},
		{"slides empty", `{"slides":[],"images":1}`, "slides: empty"},
		{"slide type", `{"slides":["a"],"images":1}`, "slides[0]: got string, want an object"},
		{"slide text type", `{"slides":[{"text":true}],"images":1}`, `slides[0].text: true: got boolean, want a string`},
		{"slide without content", `{"slides":[{"text":"a"},{"text":"  "}],"images":1}`, "slides[1]: no text and no image"},
		{"images missing", `{"slides":[{"text":"a"}]}`, "images: missing"},
		{"images string", `{"slides":[{"text":"a"}],"images":"5"}`, `images: "5": got string, want an integer`},
		{"images fraction", `{"slides":[{"text":"a"}],"images":2.5}`, `images: 2.5: want an integer`},
		{"images whole fraction", `{"slides":[{"text":"a"}],"images":2.0}`, `images: 2.0: want an integer`},
		{"images exponent", `{"slides":[{"text":"a"}],"images":1e1}`, `images: 1e1: want an integer`},
		{"images zero", `{"slides":[{"text":"a"}],"images":0}`, "images: 0: must be in 1..20"},
		{"images negative", `{"slides":[{"text":"a"}],"images":-3}`, "images: -3: must be in 1..20"},
		{"images too many", `{"slides":[{"text":"a"}],"images":21}`, "images: 21: must be in 1..20"},
		{"images huge", `{"slides":[{"text":"a"}],"images":99999999999999}`, `images: 99999999999999: out of range`},
		{"images long", `{"slides":[{"text":"a"}],"images":` + strings.Repeat("9", 60) + `}`, `images: ` + strings.Repeat("9", 40) + `...: out of range`},
		{"priority unknown", `{"slides":[{"text":"a"}],"images":1,"priority":"urgent"}`, `priority: "urgent": want "high", "normal" or "low"`},
		{"priority type", `{"slides":[{"text":"a"}],"images":1,"priority":1}`, `priority: 1: got number, want a string`},
		{"priority case", `{"slides":[{"text":"a"}],"images":1,"priority":"HIGH"}`, `priority: "HIGH": want`},
		{"image type", `{"slides":[{"image":[1,2]}],"images":1}`, "slides[0].image: got array, want a string"},
		{"image bad base64", `{"slides":[{"text":"a"},{"text":"b"},{"image":"abc$"}],"images":1}`, "slides[2].image: not valid base64: illegal base64 data at input byte 3"},
		{"image unpadded", `{"slides":[{"image":"aGk"}],"images":1}`, "slides[0].image: not valid base64"},
		{"image empty", `{"slides":[{"image":""}],"images":1}`, "slides[0].image: empty"},
		{"image not an image", `{"slides":[{"image":"aGVsbG8gd29ybGQ="}],"images":1}`, "slides[0].image: not a PNG, JPEG, WebP or GIF image"},
		{"source not UTF-8", "{\"source\":\"a\xffb\",\"slides\":[{\"text\":\"a\"}],\"images\":1}", "source: not valid UTF-8"},
		{"text not UTF-8", "{\"slides\":[{\"text\":\"ok\"},{\"text\":\"\xc3\x28\"}],\"images\":1}", "slides[1].text: not valid UTF-8"},
		{"source lone high surrogate", `{"source":"a\ud800","slides":[{"text":"a"}],"images":1}`, `source: not valid UTF-8: unpaired surrogate escape \ud800`},
		{"source lone low surrogate", `{"source":"\uDC00x","slides":[{"text":"a"}],"images":1}`, `source: not valid UTF-8: unpaired surrogate escape \uDC00`},
		{"text high then not low", `{"slides":[{"text":"a\ud83d\u0041"}],"images":1}`, `slides[0].text: not valid UTF-8: unpaired surrogate escape \ud83d`},
		{"text reversed pair", `{"slides":[{"text":"\\\ude00\ud83d"}],"images":1}`, `slides[0].text: not valid UTF-8: unpaired surrogate escape \ude00`},
		{"priority lone surrogate", `{"slides":[{"text":"a"}],"images":1,"priority":"\ud800"}`, `priority: not valid UTF-8: unpaired surrogate escape \ud800`},
		{"priority not UTF-8", "{\"slides\":[{\"text\":\"a\"}],\"images\":1,\"priority\":\"\xfe\"}", "priority: not valid UTF-8"},
		{"data URL not base64", `{"slides":[{"image":"data:image/png,abc"}],"images":1}`, "slides[0].image: data URL: must be base64-encoded"},
		{"data URL without comma", `{"slides":[{"image":"data:image/png;base64"}],"images":1}`, "slides[0].image: not a valid data URL"},
		{"data URL wrong type", `{"slides":[{"image":"data:image/jpeg;base64,` + png + `"}],"images":1}`, `slides[0].image: data URL says "image/jpeg" but the data is image/png`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, nil)
			w := env.do(t, "POST", "/v1/slideshows", tt.body)
			if w.Code != http.StatusBadRequest {
				t.Fatalf("%d %s, want 400", w.Code, w.Body)
			}
			if msg := apiErr(t, w).Message; !strings.HasPrefix(msg, tt.want) {
				t.Errorf("message %q, want prefix %q", msg, tt.want)
			}
			if n := len(env.svc.requests()); n != 0 {
				t.Errorf("%d requests submitted, want none", n)
			}
		})
	}
}

func TestCreateAcceptedVariants(t *testing.T) {
	tests := []struct {
		name, body string
		check      func(t *testing.T, r pipeline.Request)
	}{
		{"priority default", `{"slides":[{"text":"a"}],"images":1}`, func(t *testing.T, r pipeline.Request) {
			if r.Priority != "normal" || r.Source != "" {
				t.Errorf("priority %q source %q", r.Priority, r.Source)
			}
		}},
		{"null optional fields", `{"source":null,"slides":[{"text":"a","image":null}],"images":20,"priority":null}`, func(t *testing.T, r pipeline.Request) {
			if r.Priority != "normal" || r.Images != 20 || r.Slides[0].Image != nil {
				t.Errorf("%+v", r)
			}
		}},
		{"surrogate pair and escaped backslash", `{"source":"\ud83d\ude00 \\ud800","slides":[{"text":"\uD83D\uDE00"}],"images":1}`, func(t *testing.T, r pipeline.Request) {
			if r.Source != "\U0001F600 \\ud800" || r.Slides[0].Text != "\U0001F600" {
				t.Errorf("source %q, text %q", r.Source, r.Slides[0].Text)
			}
		}},
		{"empty priority", `{"slides":[{"text":"a"}],"images":1,"priority":""}`, func(t *testing.T, r pipeline.Request) {
			if r.Priority != "normal" {
				t.Errorf("priority %q", r.Priority)
			}
		}},
		{"low", `{"slides":[{"text":"a"}],"images":1,"priority":"low"}`, func(t *testing.T, r pipeline.Request) {
			if r.Priority != "low" {
				t.Errorf("priority %q", r.Priority)
			}
		}},
		{"webp image only", `{"slides":[{"image":"` + b64(webpBytes()) + `"}],"images":1}`, func(t *testing.T, r pipeline.Request) {
			if r.Slides[0].ImageMIME != "image/webp" {
				t.Errorf("mime %q", r.Slides[0].ImageMIME)
			}
		}},
		{"data URL image/jpg with params", `{"slides":[{"image":"data:image/jpg;name=a.jpg;base64,` + b64(jpegBytes(t)) + `"}],"images":1}`, func(t *testing.T, r pipeline.Request) {
			if r.Slides[0].ImageMIME != "image/jpeg" {
				t.Errorf("mime %q", r.Slides[0].ImageMIME)
			}
		}},
		{"whitespace and unicode", " \n{\"slides\":[{\"text\":\"caf\\u00e9 ☕\"}],\"images\":1}\n\n", func(t *testing.T, r pipeline.Request) {
			if r.Slides[0].Text != "café ☕" {
				t.Errorf("text %q", r.Slides[0].Text)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, nil)
			w := env.do(t, "POST", "/v1/slideshows", tt.body)
			if w.Code != http.StatusAccepted {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			tt.check(t, env.svc.requests()[0])
		})
	}
}

func TestCreateContentType(t *testing.T) {
	tests := []struct {
		ct   string
		want int
	}{
		{"application/json", 202},
		{"application/json; charset=utf-8", 202},
		{"Application/JSON;charset=UTF-8", 202},
		{"", 415},
		{"text/plain", 415},
		{"application/x-www-form-urlencoded", 415},
		{"application/json; charset=latin1", 415},
		{"application/json; =bad", 415},
	}
	for _, tt := range tests {
		t.Run(tt.ct, func(t *testing.T) {
			env := newEnv(t, nil)
			w := env.do(t, "POST", "/v1/slideshows", validBody, func(r *http.Request) {
				if tt.ct == "" {
					r.Header.Del("Content-Type")
				} else {
					r.Header.Set("Content-Type", tt.ct)
				}
			})
			if w.Code != tt.want {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tt.want)
			}
			if w.Code == 415 && !strings.HasPrefix(apiErr(t, w).Message, "Content-Type:") {
				t.Errorf("message %q", apiErr(t, w).Message)
			}
		})
	}
}

func TestCreateTooLarge(t *testing.T) {
	big := `{"slides":[{"text":"` + strings.Repeat("x", 2000) + `"}],"images":1}`
	tests := []struct {
		name    string
		chunked bool // no Content-Length: only the MaxBytesReader can tell
	}{{"content length", false}, {"chunked", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, func(c *Config) { c.MaxBodyBytes = 1024 })
			w := env.do(t, "POST", "/v1/slideshows", big, func(r *http.Request) {
				if tt.chunked {
					r.ContentLength = -1
				}
			})
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("%d %s, want 413", w.Code, w.Body)
			}
			if msg := apiErr(t, w).Message; msg != "body: larger than the limit of 1024 bytes" {
				t.Errorf("message %q", msg)
			}
			if w := env.do(t, "POST", "/v1/slideshows", validBody); w.Code != 202 {
				t.Errorf("small body: %d", w.Code)
			}
		})
	}
}

func TestServiceErrors(t *testing.T) {
	secretErr := fmt.Errorf("bolt: write failed for key %s: disk full", testSecret)
	tests := []struct {
		name     string
		set      func(*fakeService)
		method   string
		path     string
		wantCode int
		wantMsg  string // prefix
	}{
		{"input error", func(f *fakeService) {
			f.submitErr = fmt.Errorf("checking: %w", &pipeline.InputError{Field: "slides[0].image", Value: "12 MB", Reason: "too large"})
		}, "POST", "/v1/slideshows", 400, "slides[0].image: 12 MB: too large"},
		{"input error without value", func(f *fakeService) {
			f.submitErr = &pipeline.InputError{Field: "source", Reason: "required"}
		}, "POST", "/v1/slideshows", 400, "source: required"},
		{"closed", func(f *fakeService) { f.submitErr = pipeline.ErrClosed }, "POST", "/v1/slideshows", 503, "the service is shutting down"},
		{"internal on submit", func(f *fakeService) { f.submitErr = secretErr }, "POST", "/v1/slideshows", 500, "internal error while submitting the slideshow (request id "},
		{"internal on status", func(f *fakeService) { f.statusErr = secretErr }, "GET", "/v1/slideshows/job1", 500, "internal error while reading the slideshow's status (request id "},
		{"closed on retry", func(f *fakeService) { f.retryErr = pipeline.ErrClosed }, "POST", "/v1/slideshows/job1/retry", 503, "the service is shutting down"},
		{"internal on retry", func(f *fakeService) { f.retryErr = secretErr }, "POST", "/v1/slideshows/job1/retry", 500, "internal error while retrying the slideshow (request id "},
		{"internal on image path", func(f *fakeService) {
			f.setJob(pipeline.Status{ID: "j", State: pipeline.JobDone, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone}}})
			f.pathErr = secretErr
		}, "GET", "/v1/slideshows/j/images/1", 500, "internal error while finding the image (request id "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, func(c *Config) { c.Secrets = []string{testSecret} })
			tt.set(env.svc)
			body := ""
			if tt.method == "POST" {
				body = validBody
			}
			w := env.do(t, tt.method, tt.path, body)
			if w.Code != tt.wantCode {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tt.wantCode)
			}
			msg := apiErr(t, w).Message
			if !strings.HasPrefix(msg, tt.wantMsg) {
				t.Errorf("message %q, want prefix %q", msg, tt.wantMsg)
			}
			if strings.Contains(w.Body.String(), "disk full") || strings.Contains(w.Body.String(), "bolt") {
				t.Errorf("internal error echoed to the client: %s", w.Body)
			}
			if tt.wantCode == 500 {
				id := w.Header().Get("X-Request-Id")
				if id == "" || !strings.Contains(msg, id) {
					t.Errorf("message %q lacks the request id %q", msg, id)
				}
				// The operator sees the cause, without the secret.
				logs := env.logs.String()
				if !strings.Contains(logs, "disk full") || !strings.Contains(logs, redacted) {
					t.Errorf("log lacks the redacted cause: %s", logs)
				}
			}
			assertNoSecret(t, w.Body.String()+env.logs.String(), testSecret)
		})
	}
}

func TestStatusNotFound(t *testing.T) {
	env := newEnv(t, nil)
	for _, path := range []string{"/v1/slideshows/nope", "/v1/slideshows/" + strings.Repeat("a", 200)} {
		w := env.do(t, "GET", path, "")
		if w.Code != http.StatusNotFound || apiErr(t, w).Message != "slideshow not found" {
			t.Errorf("%s: %d %s", path, w.Code, w.Body)
		}
	}
}

func TestImage(t *testing.T) {
	data := pngBytes(t)
	tests := []struct {
		name     string
		job      pipeline.Status
		file     bool   // write the file of image 1
		fileName string // default image-01.png
		path     string
		wantCode int
		wantMsg  string // prefix, for errors
		wantCT   string // for 200
	}{
		{"unknown job", pipeline.Status{ID: "j"}, false, "", "/v1/slideshows/other/images/1", 404, "slideshow not found", ""},
		{"n zero", pipeline.Status{ID: "j"}, false, "", "/v1/slideshows/j/images/0", 404, "image not found", ""},
		{"n not a number", pipeline.Status{ID: "j"}, false, "", "/v1/slideshows/j/images/one", 404, "image not found", ""},
		{"n beyond a finished job", pipeline.Status{ID: "j", State: pipeline.JobDone, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone}}},
			true, "", "/v1/slideshows/j/images/2", 404, "image 2 not found: the slideshow has 1 image", ""},
		{"n beyond a running job", pipeline.Status{ID: "j", State: pipeline.JobGenerating, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone}, {N: 2, State: pipeline.ImageRunning}, {N: 3}}},
			false, "", "/v1/slideshows/j/images/4", 404, "image 4 not found: the slideshow has 3 images", ""}, // 409 "not ready" before: it never would be
		{"n beyond an analyzing job", pipeline.Status{ID: "j", State: pipeline.JobAnalyzing, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImagePending}}},
			false, "", "/v1/slideshows/j/images/2", 404, "image 2 not found: the slideshow has 1 image", ""},
		{"pending, analyzing", pipeline.Status{ID: "j", State: pipeline.JobAnalyzing, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImagePending}}},
			false, "", "/v1/slideshows/j/images/1", 409, "image 1 is not ready: it is pending", ""},
		{"pending", pipeline.Status{ID: "j", State: pipeline.JobGenerating, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImagePending}}},
			false, "", "/v1/slideshows/j/images/1", 409, "image 1 is not ready: it is pending", ""},
		{"running", pipeline.Status{ID: "j", State: pipeline.JobGenerating, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageRunning}}},
			false, "", "/v1/slideshows/j/images/1", 409, "image 1 is not ready: it is running", ""},
		{"failed image", pipeline.Status{ID: "j", State: pipeline.JobGenerating, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageFailed, Error: "blocked"}}},
			false, "", "/v1/slideshows/j/images/1", 404, "image 1 failed", ""},
		{"pending in a failed job", pipeline.Status{ID: "j", State: pipeline.JobFailed, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImagePending}}},
			false, "", "/v1/slideshows/j/images/1", 404, "image 1 will not be made: the slideshow is failed", ""},
		{"done but no path", pipeline.Status{ID: "j", State: pipeline.JobDone, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone}}},
			false, "", "/v1/slideshows/j/images/1", 404, "slideshow not found", ""},
		{"done, file gone", pipeline.Status{ID: "j", State: pipeline.JobDone, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone}}},
			false, "missing", "/v1/slideshows/j/images/1", 500, "image 1 of slideshow j is damaged: its stored file is missing although the job records it as done", ""},
		{"done, file a directory", pipeline.Status{ID: "j", State: pipeline.JobDone, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone}}},
			false, "dir", "/v1/slideshows/j/images/1", 500, "image 1 of slideshow j is damaged: its stored file is not a regular file", ""},
		{"done, MIME from status", pipeline.Status{ID: "j", State: pipeline.JobGenerating, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone, MIMEType: "image/png"}, {N: 2}}},
			true, "blob", "/v1/slideshows/j/images/1", 200, "", "image/png"},
		{"done, MIME sniffed", pipeline.Status{ID: "j", State: pipeline.JobDone, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone}}},
			true, "blob", "/v1/slideshows/j/images/1", 200, "", "image/png"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, nil)
			env.svc.setJob(tt.job)
			dir := t.TempDir()
			name := tt.fileName
			if name == "" {
				name = "image-01.png"
			}
			switch {
			case tt.file:
				env.svc.setPath("j", 1, writeFile(t, dir, name, data))
			case tt.fileName == "missing":
				env.svc.setPath("j", 1, dir+"/missing.png")
			case tt.fileName == "dir":
				env.svc.setPath("j", 1, dir)
			}
			w := env.do(t, "GET", tt.path, "")
			if w.Code != tt.wantCode {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tt.wantCode)
			}
			if tt.wantCode != 200 {
				if msg := apiErr(t, w).Message; !strings.HasPrefix(msg, tt.wantMsg) {
					t.Errorf("message %q, want prefix %q", msg, tt.wantMsg)
				}
				return
			}
			if ct := w.Header().Get("Content-Type"); ct != tt.wantCT {
				t.Errorf("Content-Type %q, want %q", ct, tt.wantCT)
			}
			if !bytes.Equal(w.Body.Bytes(), data) {
				t.Errorf("body differs")
			}
		})
	}
}

// TestImageDamaged: a done image whose stored bytes are not its recorded
// type (garbage, cut to nothing, another format) is damage: 500 naming the
// job and image, never the file's path, logged at error level and counted
// by slideshowd_damaged_images_total; it is never served as the image.
func TestImageDamaged(t *testing.T) {
	tests := []struct {
		name    string
		mime    string // recorded
		content []byte
		want    string // message prefix
	}{
		{"garbage as png", "image/png", []byte("this is not an image at all"), "image 1 of slideshow j is damaged: its stored file (27 bytes) is not image/png"},
		{"empty", "image/png", nil, "image 1 of slideshow j is damaged: its stored file (0 bytes) is not image/png"},
		{"jpeg as png", "image/png", []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'}, "image 1 of slideshow j is damaged: its stored file (10 bytes) is not image/png"},
		{"png as webp", "image/webp", pngBytes(t), "image 1 of slideshow j is damaged: its stored file"},
		{"garbage, no type recorded", "", []byte("GIF89a-not-ours"), "image 1 of slideshow j is damaged: its stored file (15 bytes) is not an image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			env := newEnv(t, func(c *Config) { c.Metrics = m })
			env.svc.setJob(pipeline.Status{ID: "j", State: pipeline.JobDone, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone, MIMEType: tt.mime}}})
			dir := t.TempDir()
			path := writeFile(t, dir, "image-01.png", tt.content)
			env.svc.setPath("j", 1, path)
			w := env.do(t, "GET", "/v1/slideshows/j/images/1", "")
			if w.Code != 500 {
				t.Fatalf("%d %q, want 500", w.Code, w.Body)
			}
			if msg := apiErr(t, w).Message; !strings.HasPrefix(msg, tt.want) {
				t.Errorf("message %q, want prefix %q", msg, tt.want)
			}
			if strings.Contains(w.Body.String(), dir) {
				t.Errorf("answer shows the path: %s", w.Body)
			}
			if !strings.Contains(env.logs.String(), `"level":"error"`) || !strings.Contains(env.logs.String(), `"job":"j"`) ||
				!strings.Contains(env.logs.String(), `"reason":"wrong_type"`) {
				t.Errorf("log %s: want an error line naming the job and reason", env.logs.String())
			}
			if got := testutil.ToFloat64(m.damagedImages.WithLabelValues("wrong_type")); got != 1 {
				t.Errorf("slideshowd_damaged_images_total{reason=wrong_type} = %v, want 1", got)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	sum := scheduler.Summary{
		Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Classes: []scheduler.ClassSummary{{Name: "image", DayUsed: 3, DayLimit: 240, DayRemaining: 237, RPMLimit: 18, Keys: 1,
			Lanes: []scheduler.LaneSummary{{Project: "p1", Keys: []string{"key1"}, Enabled: true, RPMUsed: 1, RPMLimit: 18, DayUsed: 3, DayLimit: 240}}}},
		DisabledKeys: []scheduler.DisabledKey{{ID: "key2", Project: "p2", Reason: "invalid"}},
	}
	env := newEnv(t, func(c *Config) { c.Summary = func() scheduler.Summary { return sum } })
	w := env.do(t, "GET", "/v1/usage", "")
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	want, _ := json.Marshal(sum)
	if strings.TrimSpace(w.Body.String()) != string(want) {
		t.Errorf("usage %s, want %s", w.Body, want)
	}

	env = newEnv(t, nil)
	if w := env.do(t, "GET", "/v1/usage", ""); w.Code != 503 || !strings.HasPrefix(apiErr(t, w).Message, "usage is not available") {
		t.Errorf("without a scheduler: %d %s", w.Code, w.Body)
	}
}

func TestHealthz(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Token = testToken })
	w := env.do(t, "GET", "/healthz", "")
	if w.Code != 200 || w.Body.String() != "{\"status\":\"ok\"}\n" || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q %v", w.Code, w.Body, w.Header())
	}
	if w := env.do(t, "HEAD", "/healthz", ""); w.Code != 200 || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d %q", w.Code, w.Body)
	}
}

// TestHealthzShared: while the shared quota (Redis) is unreachable,
// /healthz says degraded with the reason, secrets redacted, and /readyz
// stays ok (the process still takes work).
func TestHealthzShared(t *testing.T) {
	var down error
	env := newEnv(t, func(c *Config) {
		c.Secrets = []string{"redis-pw-123"}
		c.Shared = func() error { return down }
	})
	if w := env.do(t, "GET", "/healthz", ""); w.Body.String() != "{\"status\":\"ok\"}\n" {
		t.Errorf("healthy: %s", w.Body)
	}
	down = errors.New("store: redis: unreachable; sending within this process's safe share: last error: auth redis-pw-123 refused")
	w := env.do(t, "GET", "/healthz", "")
	var h struct{ Status, Reason string }
	if err := json.Unmarshal(w.Body.Bytes(), &h); err != nil || w.Code != 200 || h.Status != "degraded" ||
		!strings.Contains(h.Reason, "safe share") || strings.Contains(h.Reason, "redis-pw-123") {
		t.Errorf("unreachable: %d %s", w.Code, w.Body)
	}
	if w := env.do(t, "GET", "/readyz", ""); w.Code != 200 {
		t.Errorf("readyz while Redis is unreachable: %d %s", w.Code, w.Body)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	tests := []struct{ method, path, allow string }{
		{"DELETE", "/v1/slideshows", "GET, HEAD, POST"},
		{"PUT", "/v1/slideshows", "GET, HEAD, POST"},
		{"POST", "/v1/slideshows/job1", "GET, HEAD, DELETE"},
		{"PUT", "/v1/slideshows/job1", "GET, HEAD, DELETE"},
		{"POST", "/v1/keys", "GET, HEAD"},
		{"GET", "/v1/keys/key1/enable", "POST"},
		{"DELETE", "/v1/keys/key1/disable", "POST"},
		{"POST", "/v1/slideshows/job1/images/1", "GET, HEAD"},
		{"GET", "/v1/slideshows/job1/retry", "POST"},
		{"DELETE", "/v1/slideshows/job1/retry", "POST"},
		{"POST", "/v1/usage", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			env := newEnv(t, func(c *Config) { c.Metrics = NewMetrics(nil) })
			w := env.do(t, tt.method, tt.path, "")
			if w.Code != http.StatusMethodNotAllowed {
				t.Fatalf("%d %s, want 405", w.Code, w.Body)
			}
			if got := w.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if msg := apiErr(t, w).Message; !strings.Contains(msg, tt.method) {
				t.Errorf("message %q", msg)
			}
		})
	}
}

func TestNotFoundEndpoints(t *testing.T) {
	env := newEnv(t, nil)
	for _, path := range []string{"/v1/", "/x", "/v1/slideshows/", "/v2/slideshows", "/v1/slideshows/a/images", "/v1/slideshows/a/images/1/x", "/metrics"} {
		w := env.do(t, "GET", path, "")
		if w.Code != http.StatusNotFound {
			t.Errorf("%s: %d %s", path, w.Code, w.Body)
			continue
		}
		apiErr(t, w)
	}
}

func TestPanicRecovery(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Secrets = []string{testSecret} })
	env.svc.panicWith = "boom with " + testSecret
	w := env.do(t, "GET", "/v1/slideshows/job1", "")
	if w.Code != 500 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if msg := apiErr(t, w).Message; !strings.Contains(msg, w.Header().Get("X-Request-Id")) {
		t.Errorf("message %q lacks the request id", msg)
	}
	var panicked, logged bool
	for _, l := range env.logs.lines(t) {
		switch l["message"] {
		case "handler panicked":
			panicked = strings.Contains(l["panic"].(string), "boom") && strings.Contains(l["stack"].(string), "fakeService")
		case "http request":
			logged = l["status"] == float64(500)
		}
	}
	if !panicked || !logged {
		t.Errorf("logs %s", env.logs)
	}
	assertNoSecret(t, env.logs.String()+w.Body.String(), testSecret)

	// http.ErrAbortHandler is the server's to handle.
	env.svc.panicWith = http.ErrAbortHandler
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler re-panicked", p)
			}
		}()
		env.do(t, "GET", "/v1/slideshows/job1", "")
	}()
}

func TestRequestLog(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Token = testToken })
	w := env.do(t, "POST", "/v1/slideshows?token=query-secret", validBody, withToken(testToken), withHeader("X-Request-Id", "client-id.1"))
	if w.Code != 202 || w.Header().Get("X-Request-Id") != "client-id.1" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	w2 := env.do(t, "GET", "/v1/slideshows/job1", "", withToken(testToken), withHeader("X-Request-Id", "bad id with spaces"))
	gen := w2.Header().Get("X-Request-Id")
	if gen == "" || gen == "bad id with spaces" {
		t.Fatalf("generated request id %q", gen)
	}
	lines := env.logs.lines(t)
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2: %s", len(lines), env.logs)
	}
	want := map[string]any{"level": "info", "component": "httpapi", "message": "http request", "request_id": "client-id.1",
		"method": "POST", "path": "/v1/slideshows", "route": "POST /v1/slideshows", "status": float64(202)}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("log %s = %v, want %v", k, lines[0][k], v)
		}
	}
	if _, ok := lines[0]["duration"]; !ok {
		t.Error("no duration logged")
	}
	if lines[1]["request_id"] != gen || lines[1]["route"] != "GET /v1/slideshows/{id}" {
		t.Errorf("second line %v", lines[1])
	}
	logs := env.logs.String()
	for _, never := range []string{testToken, "query-secret", "Hello", "Authorization", "Bearer"} {
		if strings.Contains(logs, never) {
			t.Errorf("log contains %q: %s", never, logs)
		}
	}
}

// assertNoSecret fails when text contains one of the secrets, whole or
// JSON-escaped.
func assertNoSecret(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		esc, _ := json.Marshal(s)
		if strings.Contains(text, s) || strings.Contains(text, string(esc[1:len(esc)-1])) {
			t.Errorf("secret %q found in %q", s, text)
		}
	}
}

func TestNoSecretsInOutput(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.Token = testToken
		c.Secrets = []string{testSecret}
		c.Metrics = NewMetrics(nil)
		c.Summary = func() scheduler.Summary { return scheduler.Summary{} }
	})
	env.svc.setJob(pipeline.Status{ID: "j", State: pipeline.JobFailed, Error: "gemini said: bad key " + testSecret})
	auth := withToken(testToken)
	var out strings.Builder
	record := func(w interface {
		Header() http.Header
	}, body string) {
		for k, vs := range w.Header() {
			out.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
		}
		out.WriteString(body)
	}
	requests := []struct {
		method, path, body string
		opts               []reqOpt
	}{
		{"POST", "/v1/slideshows", `{"slides":[{"text":"a"}],"images":1,"priority":"` + testToken + `"}`, []reqOpt{auth}},
		{"POST", "/v1/slideshows", `{"slides":[{"text":"a"}],"images":1,"priority":"` + testSecret + `"}`, []reqOpt{auth}},
		{"POST", "/v1/slideshows", `{"slides":[{"text":"a"}],"images":1,"` + testSecret + `":1}`, []reqOpt{auth}},
		{"POST", "/v1/slideshows", validBody, []reqOpt{auth, withHeader("Content-Type", testSecret)}},
		{"POST", "/v1/slideshows", validBody, []reqOpt{auth, withHeader("X-Request-Id", testToken)}},
		{"GET", "/v1/slideshows/" + testSecret, "", []reqOpt{auth}},
		{"GET", "/v1/slideshows/" + testToken + "/images/1", "", []reqOpt{auth}},
		{"GET", "/v1/slideshows/j", "", []reqOpt{auth}},
		{"GET", "/v1/slideshows/j", "", []reqOpt{withToken(testToken + "x")}},
		{"GET", "/v1/slideshows/j", "", []reqOpt{withToken(testSecret)}},
		{"GET", "/v1/usage", "", []reqOpt{auth}},
		{"GET", "/metrics", "", []reqOpt{auth}},
		{"GET", "/" + testToken, "", nil},
	}
	for _, r := range requests {
		w := env.do(t, r.method, r.path, r.body, r.opts...)
		if w.Code >= 500 {
			t.Errorf("%s %s: %d %s", r.method, r.path, w.Code, w.Body)
		}
		record(w, w.Body.String())
	}
	out.WriteString(env.logs.String())
	assertNoSecret(t, out.String(), testToken, testSecret)
	if !strings.Contains(out.String(), "gemini said: bad key "+redacted) {
		t.Errorf("the job's error was not served redacted")
	}
}

func TestConfigValidate(t *testing.T) {
	svc := newFakeService()
	tests := []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"minimal", Config{Service: svc}, ""},
		{"no service", Config{}, "httpapi: service: nil: required"},
		{"negative body limit", Config{Service: svc, MaxBodyBytes: -1}, "httpapi: max_body_bytes: -1: must be > 0"},
		{"short token", Config{Service: svc, Token: "short"}, "httpapi: token: 5 characters: must be at least 16"},
		{"token with space", Config{Service: svc, Token: "0123456789 abcdef"}, "httpapi: token: character 11: must be printable ASCII without spaces"},
		{"token with newline", Config{Service: svc, Token: "0123456789abcdef\n"}, "httpapi: token: character 17"},
		{"good token", Config{Service: svc, Token: testToken}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), tt.cfg.Token) && tt.cfg.Token != "" {
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
	t.Run("New panics", func(t *testing.T) {
		defer func() {
			if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "service") {
				t.Errorf("recovered %v", p)
			}
		}()
		New(Config{})
	})
}

func TestErrorsUnwrapped(t *testing.T) {
	// A wrapped ErrNotFound from ImagePath is still a 404.
	env := newEnv(t, nil)
	env.svc.setJob(pipeline.Status{ID: "j", State: pipeline.JobDone, Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone}}})
	env.svc.pathErr = fmt.Errorf("image 1: %w", errors.Join(errors.New("x"), pipeline.ErrNotFound))
	if w := env.do(t, "GET", "/v1/slideshows/j/images/1", ""); w.Code != 404 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

// TestStoppingRefusesNewWork: once Config.Stopping is closed, requests other
// than GET and HEAD answer 503 with Retry-After and submit nothing; reads
// are served and /readyz answers 503.
func TestStoppingRefusesNewWork(t *testing.T) {
	stopping := make(chan struct{})
	env := newEnv(t, func(c *Config) { c.Stopping = stopping })
	env.svc.setJob(pipeline.Status{ID: "j", State: pipeline.JobQueued})
	close(stopping)
	for _, path := range []string{"/v1/slideshows", "/v1/slideshows/j/retry", "/v1/keys/key1/disable"} {
		w := env.do(t, "POST", path, validBody)
		if w.Code != 503 || w.Header().Get("Retry-After") != "5" || !strings.HasPrefix(apiErr(t, w).Message, "the service is shutting down") {
			t.Errorf("POST %s: %d %q %s, want 503 with Retry-After 5", path, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
	if w := env.do(t, "DELETE", "/v1/slideshows/j", ""); w.Code != 503 {
		t.Errorf("DELETE: %d, want 503", w.Code)
	}
	if n := len(env.svc.requests()); n != 0 {
		t.Errorf("%d submitted while stopping", n)
	}
	if w := env.do(t, "GET", "/v1/slideshows/j", ""); w.Code != 200 {
		t.Errorf("GET a job while stopping: %d %s", w.Code, w.Body)
	}
	if w := env.do(t, "GET", "/readyz", ""); w.Code != 503 {
		t.Errorf("GET /readyz while stopping: %d %s", w.Code, w.Body)
	}
	// A new long poll would answer at once, again and again: 503 instead.
	if w := env.do(t, "GET", "/v1/slideshows/j?wait=30s", ""); w.Code != 503 || w.Header().Get("Retry-After") != "5" {
		t.Errorf("long poll while stopping: %d %q %s, want 503 with Retry-After 5", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	// The refusals are expected during the shutdown grace: their request
	// lines are at info. A 503 for another cause stays at error.
	if w := env.do(t, "GET", "/v1/usage", ""); w.Code != 503 {
		t.Errorf("GET /v1/usage without a scheduler: %d %s", w.Code, w.Body)
	}
	refusals := 0
	for _, l := range env.logs.lines(t) {
		if l["message"] != "http request" || l["status"] != float64(503) {
			continue
		}
		want := "info"
		if l["path"] == "/v1/usage" {
			want = "error"
		} else {
			refusals++
		}
		if l["level"] != want {
			t.Errorf("%s %s answered 503: logged at %v, want %s", l["method"], l["path"], l["level"], want)
		}
	}
	if refusals != 6 {
		t.Errorf("%d request lines of 503 refusals, want 6:\n%s", refusals, env.logs)
	}
}

// TestClosedServiceLoggedAtInfo: a Service that has stopped (ErrClosed)
// answers 503 logged at info: the pipeline closes during the shutdown
// grace, an expected refusal.
func TestClosedServiceLoggedAtInfo(t *testing.T) {
	env := newEnv(t, nil)
	env.svc.submitErr = pipeline.ErrClosed
	if w := env.do(t, "POST", "/v1/slideshows", validBody); w.Code != 503 || w.Header().Get("Retry-After") != "5" {
		t.Fatalf("%d %q %s, want 503 with Retry-After 5", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	lines := env.logs.lines(t)
	if len(lines) != 1 || lines[0]["level"] != "info" || lines[0]["status"] != float64(503) {
		t.Errorf("log %v, want one request line at info", lines)
	}
}
