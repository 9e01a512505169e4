package gemini

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/scheduler"
)

// corpusDir holds one file per answer the API has been seen to give, each
// with the outcome Classify must reach. Add a file whenever a new layout is
// met: TestCorpus replays it and FuzzClassify starts from it.
const corpusDir = "testdata/answers"

// corpusCase is one file of corpusDir.
type corpusCase struct {
	Source string            `json:"source"` // where the answer was seen
	Status int               `json:"status"` // HTTP status
	Header map[string]string `json:"header"` // extra response headers
	// The body: Body when it is JSON (kept byte for byte), else BodyText.
	Body     json.RawMessage `json:"body"`
	BodyText string          `json:"body_text"`
	Want     corpusWant      `json:"want"`
}

type corpusWant struct {
	// Outcome of the Client's calls: rate_limited, key, transient, permanent.
	Outcome string `json:"outcome"`
	// RawOutcome is Classify's outcome on the raw SDK error, when it differs
	// (the raw error has no HTTP status to fall back on).
	RawOutcome string `json:"raw_outcome"`
	// For rate_limited: scope ("minute", "day", "no quota", "unknown"),
	// retry delay, quota id and limit (0: not given).
	Scope      string `json:"scope"`
	RetryAfter string `json:"retry_after"`
	Quota      string `json:"quota"`
	Limit      int    `json:"limit"`
	// For key: the reason, and whether the whole project is out.
	Reason  string `json:"reason"`
	Project bool   `json:"project"`
	// Text of the answer that must survive in the error.
	Contains string `json:"contains"`
}

func (c corpusCase) body() string {
	if len(c.Body) > 0 {
		return string(c.Body)
	}
	return c.BodyText
}

func (c corpusCase) header() http.Header {
	if len(c.Header) == 0 {
		return nil
	}
	h := http.Header{}
	for k, v := range c.Header {
		h.Set(k, v)
	}
	return h
}

// loadCorpus reads every case of corpusDir, by file name.
func loadCorpus(t testing.TB) map[string]corpusCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in %s: %v", corpusDir, err)
	}
	out := make(map[string]corpusCase, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		var c corpusCase
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if c.Status < 100 || c.Status > 599 || c.Want.Outcome == "" || c.Source == "" {
			t.Fatalf("%s: want a status, a source and want.outcome", f)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = c
	}
	return out
}

func parseScope(s string) (scheduler.Scope, error) {
	for _, sc := range []scheduler.Scope{scheduler.ScopeUnknown, scheduler.ScopeMinute, scheduler.ScopeDay, scheduler.ScopeNoQuota} {
		if sc.String() == s {
			return sc, nil
		}
	}
	return 0, fmt.Errorf("unknown scope %q", s)
}

// TestCorpus serves every answer of the corpus through the real SDK and
// checks the outcome of both calls' work and of Classify on the raw SDK
// error.
func TestCorpus(t *testing.T) {
	for name, tc := range loadCorpus(t) {
		t.Run(name, func(t *testing.T) {
			w := tc.Want
			var wantScope scheduler.Scope
			var wantRetry time.Duration
			if w.Outcome == "rate_limited" {
				var err error
				if wantScope, err = parseScope(w.Scope); err != nil {
					t.Fatal(err)
				}
				if w.RetryAfter != "" {
					if wantRetry, err = time.ParseDuration(w.RetryAfter); err != nil {
						t.Fatal(err)
					}
				}
			}
			check := func(t *testing.T, what, wantKind string, err error, viaClient bool) {
				t.Helper()
				if got := outcomeKind(err); got != wantKind {
					t.Fatalf("%s: outcome %q, want %q; error: %v", what, got, wantKind, err)
				}
				if again := Classify(err); again != err {
					t.Errorf("%s: Classify of an outcome changed it: %v -> %v", what, err, again)
				}
				var ae genai.APIError
				if !errors.As(err, &ae) {
					t.Errorf("%s: the outcome does not wrap the APIError: %v", what, err)
				}
				if w.Contains != "" && !strings.Contains(err.Error(), w.Contains) {
					t.Errorf("%s: error %q lost %q", what, err, w.Contains)
				}
				switch wantKind {
				case "rate_limited":
					var rl *scheduler.RateLimitedError
					errors.As(err, &rl)
					retry := wantRetry
					if !viaClient && tc.Header != nil {
						retry = 0 // the header is seen only by the Client's transport
					}
					if rl.Scope != wantScope || rl.RetryAfter != retry || rl.Quota != w.Quota || rl.Limit != w.Limit {
						t.Errorf("%s: got scope %v retry %v quota %q limit %d, want %v %v %q %d",
							what, rl.Scope, rl.RetryAfter, rl.Quota, rl.Limit, wantScope, retry, w.Quota, w.Limit)
					}
				case "key":
					var ke *scheduler.KeyError
					errors.As(err, &ke)
					if ke.Reason != w.Reason || ke.Project != w.Project {
						t.Errorf("%s: got reason %q project %v, want %q %v", what, ke.Reason, ke.Project, w.Reason, w.Project)
					}
				}
			}
			for _, call := range []string{"analyze", "image"} {
				c := newTestClient(t, newRecorder(answer{tc.Status, tc.header(), tc.body()}))
				var err error
				if call == "analyze" {
					_, err = c.analyze(t.Context(), testLease("text"), testSlideshow())
				} else {
					_, err = c.image(t.Context(), testLease("image"), "a lighthouse", ImageOptions{})
				}
				check(t, call, w.Outcome, err, true)
				if !strings.Contains(err.Error(), "on key "+testKeyID) {
					t.Errorf("%s: error does not name the key: %v", call, err)
				}
			}
			// The raw SDK error, as any genai user would get it.
			c := newTestClient(t, newRecorder(answer{tc.Status, tc.header(), tc.body()}))
			_, raw := c.keys[testKeyID].safeGenerate(t.Context(), DefaultTextModel, genai.Text("hi"), nil)
			if raw == nil {
				t.Fatal("raw call succeeded")
			}
			want := w.Outcome
			if w.RawOutcome != "" {
				want = w.RawOutcome
			}
			check(t, "raw", want, Classify(raw), false)
		})
	}
}
