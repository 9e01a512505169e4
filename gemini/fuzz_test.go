package gemini

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/genai"
)

// FuzzClassify serves arbitrary (status, body) answers through the real SDK
// and checks that both calls and Classify never panic and always give a typed
// outcome (or a context error) without the key's secret.
func FuzzClassify(f *testing.F) {
	for _, c := range loadCorpus(f) {
		f.Add(c.Status, c.body())
	}
	// Successful answers: valid, malformed, one the SDK itself cannot decode.
	for _, body := range []string{
		okAnalysisBody, okImageBody, `{"candidates":[{"content":{"parts":[{"text":"{\"summary\":"}]},"finishReason":"MAX_TOKENS"}]}`,
		`{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}`, `{"candidates":"x"}`, `not json`, ``,
	} {
		f.Add(200, body)
	}
	f.Fuzz(func(t *testing.T, status int, body string) {
		// ResponseWriter.WriteHeader accepts 100..999; keep to real classes.
		if status < 100 || status > 599 {
			status = 100 + (status%500+500)%500
		}
		c := newTestClient(t, serve(status, body))
		ctx := context.Background()

		// check: err is nil or a typed outcome, and so is Classify(err);
		// with classified false, only Classify(err) must be typed.
		check := func(what string, err error, classified bool) {
			t.Helper()
			if err == nil {
				return
			}
			errs := []error{Classify(err)}
			if classified {
				errs = append(errs, err)
			}
			for _, e := range errs {
				if e == nil {
					t.Fatalf("%s: nil outcome for %v", what, err)
				}
				if outcomeKind(e) == "" {
					t.Fatalf("%s: untyped outcome %T: %v", what, e, e)
				}
				if strings.Contains(e.Error(), testSecret) {
					t.Fatalf("%s: secret in error: %v", what, e)
				}
			}
		}

		a, err := c.analyze(ctx, testLease("text"), testSlideshow())
		check("analyze", err, true)
		if err == nil && (len(a.Slides) != 3 || len(a.ImagePrompts) != 2 || a.Summary == "" || a.Hook == "") {
			t.Fatalf("analysis accepted that does not match the request: %+v", a)
		}
		img, err := c.image(ctx, testLease("image"), "a lighthouse", ImageOptions{})
		check("image", err, true)
		if err == nil && (len(img.Data) == 0 || !strings.HasPrefix(img.MIMEType, "image/")) {
			t.Fatalf("image accepted without image data: %q, %d bytes", img.MIMEType, len(img.Data))
		}
		// The raw SDK error, classified without this package's wrapping.
		_, raw := c.keys[testKeyID].safeGenerate(ctx, DefaultTextModel, genai.Text("hi"), nil)
		check("raw", raw, false)
		var ae genai.APIError
		if status >= 400 && !errors.As(raw, &ae) {
			t.Fatalf("status %d gave no APIError: %v", status, raw)
		}
	})
}
