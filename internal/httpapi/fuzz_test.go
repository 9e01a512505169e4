package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// FuzzCreate sends arbitrary bodies to POST /v1/slideshows: the handler
// never panics, answers 202 or a 4xx with a JSON error, and what it submits
// is always a well-formed request.
func FuzzCreate(f *testing.F) {
	png := b64(pngBytes(f))
	for _, seed := range []string{
		validBody,
		`{"source":"s","slides":[{"text":"a","image":"` + png + `"}],"images":20,"priority":"low"}`,
		`{"slides":[{"image":"data:image/png;base64,` + png + `"}],"images":1}`,
		`{"slides":[{"image":"data:image/png;base64"}],"images":1}`,
		`{"slides":[{"text":"a"}],"images":1} {}`,
		`{"slides":[{"text":"a"}],"images":1e400}`,
		`{"slides":[{"text":"a","text":"b"}],"images":-0}`,
		`{"slides":[null,{}],"images":null,"priority":"\u0000"}`,
		`{"source":"\ud800","slides":[[]],"images":"1"}`,
		`[`, ``, `null`, `"x"`, `{}`, `{"a":`, "\xff\xfe{}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		svc := newFakeService()
		h := New(Config{Service: svc, MaxBodyBytes: 64 << 10, Logger: zerolog.Nop()})
		r := httptest.NewRequest("POST", "/v1/slideshows", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		switch {
		case w.Code == http.StatusAccepted:
			reqs := svc.requests()
			if len(reqs) != 1 {
				t.Fatalf("202 with %d submitted requests", len(reqs))
			}
			checkSubmitted(t, reqs[0])
			if !utf8.ValidString(body) {
				t.Fatalf("202 for a body that is not valid UTF-8: %q", body)
			}
		case w.Code >= 400 && w.Code < 500:
			var b errorBody
			dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&b); err != nil || b.Error.Code != w.Code || b.Error.Message == "" {
				t.Fatalf("%d with body %q (%v)", w.Code, w.Body, err)
			}
			if n := len(svc.requests()); n != 0 {
				t.Fatalf("%d answered %d requests submitted", w.Code, n)
			}
		default:
			t.Fatalf("status %d for body %q: %s", w.Code, body, w.Body)
		}
	})
}

func checkSubmitted(t *testing.T, r pipeline.Request) {
	t.Helper()
	if r.Images < 1 || r.Images > pipeline.MaxImages {
		t.Fatalf("submitted images %d", r.Images)
	}
	if p, ok := scheduler.ParsePriority(r.Priority); !ok || p.String() != r.Priority {
		t.Fatalf("submitted priority %q", r.Priority)
	}
	if len(r.Slides) == 0 {
		t.Fatal("submitted no slides")
	}
	for i, s := range r.Slides {
		if strings.TrimSpace(s.Text) == "" && len(s.Image) == 0 {
			t.Fatalf("slide %d empty", i)
		}
		if (len(s.Image) == 0) != (s.ImageMIME == "") || (s.ImageMIME != "" && sniffImage(s.Image) != s.ImageMIME) {
			t.Fatalf("slide %d: %d image bytes with MIME %q", i, len(s.Image), s.ImageMIME)
		}
	}
}

// FuzzWaitParam reads arbitrary ?wait= values: a duration from 0 to
// MaxWait, or an error that names the parameter on one short line.
func FuzzWaitParam(f *testing.F) {
	for _, seed := range []string{"30s", "0", "60s", "60.000000001s", "1m", "-0s", "1h", "30", "", "1e9s", "9223372036854775807ns", "\xff"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, err := waitParam(url.Values{"wait": {v}})
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "wait: ") || strings.Contains(msg, "\n") || len(msg) > 512 {
				t.Fatalf("error %q", msg)
			}
			return
		}
		if d < 0 || d > MaxWait {
			t.Fatalf("wait %q accepted as %v", v, d)
		}
	})
}
