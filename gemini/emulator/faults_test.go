package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genai"
)

func TestRate503AtConfiguredFraction(t *testing.T) {
	run := func(seed int64) []int {
		e := mustNew(t, Config{
			Keys:   []Key{{Name: "k", Secret: "s"}},
			Faults: Faults{Rate503: 0.2, Rate500: 0.05},
			Seed:   seed,
		})
		c := client(t, e, "s")
		var codes []int
		for range 600 {
			_, err := generate(t.Context(), c, textModel, "hi")
			if err == nil {
				codes = append(codes, 200)
				continue
			}
			ae := asAPIError(t, err)
			codes = append(codes, ae.Code)
			switch ae.Code {
			case 503:
				if ae.Status != "UNAVAILABLE" || ae.Message != "The model is overloaded. Please try again later." {
					t.Fatalf("503 body %+v", ae)
				}
			case 500:
				if ae.Status != "INTERNAL" {
					t.Fatalf("500 body %+v", ae)
				}
			default:
				t.Fatalf("unexpected %v", err)
			}
		}
		s := e.Stats()
		// Faults are not admitted: the day counts only successes.
		if s.Day[LaneKey{"k", textModel}] != s.Requests[RequestKey{"k", textModel, 200}] {
			t.Errorf("Day %d != successes %d", s.Day[LaneKey{"k", textModel}], s.Requests[RequestKey{"k", textModel, 200}])
		}
		return codes
	}
	a := run(7)
	count := map[int]int{}
	for _, c := range a {
		count[c]++
	}
	// 600 draws at p=0.2: mean 120, sd 9.8; at p=0.05: mean 30, sd 5.3.
	// The bounds are 3.5 sd wide; the seed is fixed, so this cannot flake.
	if count[503] < 86 || count[503] > 154 || count[500] < 12 || count[500] > 48 {
		t.Errorf("counts %v for rates 0.2 / 0.05", count)
	}
	if b := run(7); !equalInts(a, b) {
		t.Error("the same seed gave a different sequence of faults")
	}
	if b := run(8); equalInts(a, b) {
		t.Error("another seed gave the same sequence of faults")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFaultsDoNotUseQuota(t *testing.T) {
	e := mustNew(t, Config{
		Keys:   []Key{{Name: "k", Secret: "s"}},
		Models: map[string]Limits{textModel: {RPM: 1, RPD: 1}},
		Faults: Faults{Rate504: 1},
	})
	c := client(t, e, "s")
	for range 3 {
		_, err := generate(t.Context(), c, textModel, "hi")
		if ae := asAPIError(t, err); ae.Code != 504 || ae.Status != "DEADLINE_EXCEEDED" {
			t.Fatalf("got %+v", ae)
		}
	}
	mustOK(t, e.SetFaults(Faults{}))
	_, err := generate(t.Context(), c, textModel, "hi")
	mustOK(t, err)
}

func TestModelDown(t *testing.T) {
	cfg := oneKey(Limits{})
	cfg.Faults.Down = map[string]bool{imageModel: true}
	cfg.Layout = Layout2026
	e := mustNew(t, cfg)
	c := client(t, e, "secret-1")
	_, err := generate(t.Context(), c, imageModel, "a boat")
	ae := asAPIError(t, err)
	if ae.Code != 503 || ae.Status != "UNAVAILABLE" || !strings.HasPrefix(ae.Message, "This model is currently experiencing high demand.") {
		t.Fatalf("down model: %+v", ae)
	}
	_, err = generate(t.Context(), c, textModel, "hi")
	mustOK(t, err)
	e.SetModelDown(imageModel, false)
	_, err = generate(t.Context(), c, imageModel, "a boat")
	mustOK(t, err)
	e.SetModelDown(textModel, true)
	_, err = generate(t.Context(), c, textModel, "hi")
	if ae := asAPIError(t, err); ae.Code != 503 {
		t.Fatalf("after SetModelDown: %v", err)
	}
	s := e.Stats()
	if s.Requests[RequestKey{"k1", imageModel, 503}] != 1 || s.Requests[RequestKey{"k1", textModel, 503}] != 1 {
		t.Errorf("Requests %v", s.Requests)
	}
}

func TestLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := oneKey(Limits{RPM: 10})
		cfg.Faults.Latency = func(model string, _ *rand.Rand) time.Duration {
			if model == imageModel {
				return 20 * time.Second
			}
			return 3 * time.Second
		}
		e := mustNew(t, cfg)
		c := client(t, e, "secret-1")

		start := time.Now()
		_, err := generate(t.Context(), c, textModel, "hi")
		mustOK(t, err)
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("text answer took %v, want 3s", d)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start = time.Now()
		_, err = generate(ctx, c, imageModel, "a boat")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want the context's error, got %v", err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("gave up after %v, want 5s", d)
		}
		s := e.Stats()
		if s.Requests[RequestKey{"k1", imageModel, 499}] != 1 {
			t.Errorf("Requests %v, want one 499", s.Requests)
		}
		// The abandoned request was admitted: it counts against the quota.
		if s.Day[LaneKey{"k1", imageModel}] != 1 {
			t.Errorf("Day %v", s.Day)
		}
	})
}

func TestLatencyHelpers(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	u := UniformLatency(2*time.Second, time.Second) // swapped bounds are fine
	x := ExponentialLatency(time.Second, 500*time.Millisecond)
	var sum time.Duration
	for range 10000 {
		if d := u("m", r); d < time.Second || d > 2*time.Second {
			t.Fatalf("uniform %v outside [1s, 2s]", d)
		}
		d := x("m", r)
		if d < time.Second || d > 11*time.Second {
			t.Fatalf("exponential %v outside [1s, 11s]", d)
		}
		sum += d - time.Second
	}
	if mean := sum / 10000; mean < 450*time.Millisecond || mean > 550*time.Millisecond {
		t.Errorf("exponential mean %v, want about 500ms", mean)
	}
	if d := UniformLatency(time.Second, time.Second)("m", r); d != time.Second {
		t.Errorf("degenerate uniform %v", d)
	}
}

func TestContentFaults(t *testing.T) {
	schema := &genai.Schema{Type: genai.TypeObject, Properties: map[string]*genai.Schema{
		"title": {Type: genai.TypeString}, "points": {Type: genai.TypeArray, Items: &genai.Schema{Type: genai.TypeString}},
	}}
	t.Run("malformed JSON", func(t *testing.T) {
		cfg := oneKey(Limits{})
		cfg.Faults.MalformedJSON = 1
		e := mustNew(t, cfg)
		resp, err := client(t, e, "secret-1").Models.GenerateContent(t.Context(), textModel, genai.Text("harbor at dawn"),
			&genai.GenerateContentConfig{ResponseMIMEType: "application/json", ResponseSchema: schema})
		mustOK(t, err)
		if json.Valid([]byte(resp.Text())) || resp.Text() == "" {
			t.Fatalf("want invalid JSON, got %q", resp.Text())
		}
		// Plain-text answers are not affected.
		resp, err = generate(t.Context(), client(t, e, "secret-1"), textModel, "harbor at dawn")
		mustOK(t, err)
		if resp.Text() == "" {
			t.Fatal("empty text")
		}
	})
	t.Run("no image", func(t *testing.T) {
		cfg := oneKey(Limits{})
		cfg.Faults.NoImage = 1
		e := mustNew(t, cfg)
		resp, err := generate(t.Context(), client(t, e, "secret-1"), imageModel, "a lighthouse")
		mustOK(t, err)
		if len(resp.Candidates) != 1 || resp.Candidates[0].FinishReason != genai.FinishReasonImageSafety || resp.Candidates[0].Content != nil {
			t.Fatalf("candidates %+v", resp.Candidates)
		}
	})
	t.Run("blocked", func(t *testing.T) {
		cfg := oneKey(Limits{})
		cfg.Faults.Blocked = 1
		e := mustNew(t, cfg)
		resp, err := generate(t.Context(), client(t, e, "secret-1"), textModel, "anything")
		mustOK(t, err)
		if len(resp.Candidates) != 0 || resp.PromptFeedback == nil || resp.PromptFeedback.BlockReason != genai.BlockedReasonProhibitedContent {
			t.Fatalf("response %+v", resp)
		}
	})
}

func TestStream(t *testing.T) {
	t.Run("answer", func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{}))
		c := client(t, e, "secret-1")
		unary, err := generate(t.Context(), c, textModel, "lanterns over the river")
		mustOK(t, err)
		n := 0
		for resp, err := range c.Models.GenerateContentStream(t.Context(), textModel, genai.Text("lanterns over the river"), nil) {
			mustOK(t, err)
			n++
			if resp.Text() != unary.Text() {
				t.Errorf("stream text %q differs from unary %q", resp.Text(), unary.Text())
			}
			if resp.UsageMetadata.PromptTokenCount != unary.UsageMetadata.PromptTokenCount {
				t.Errorf("usage differs")
			}
		}
		if n != 1 {
			t.Fatalf("%d events, want 1", n)
		}
	})
	t.Run("fault inside the stream", func(t *testing.T) {
		cfg := oneKey(Limits{})
		cfg.Faults.Rate503 = 1
		e := mustNew(t, cfg)
		var errs []error
		for _, err := range client(t, e, "secret-1").Models.GenerateContentStream(t.Context(), textModel, genai.Text("x"), nil) {
			errs = append(errs, err)
		}
		if len(errs) != 1 || asAPIError(t, errs[0]).Code != 503 {
			t.Fatalf("errors %v", errs)
		}
		if got := e.Stats().Requests[RequestKey{"k1", textModel, 503}]; got != 1 {
			t.Errorf("a fault in a stream counts as 503, got %v", e.Stats().Requests)
		}
		code, body := rawPost(t, e, "/v1beta/models/"+textModel+":streamGenerateContent?alt=sse", "secret-1", simpleBody)
		if code != 200 || !strings.HasPrefix(string(body), `data: {"error":{"code":503,`) || !strings.HasSuffix(string(body), "\r\n\r\n") {
			t.Fatalf("%d %q", code, body)
		}
	})
	t.Run("quota before the stream", func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{RPD: 1}))
		c := client(t, e, "secret-1")
		for i := range 2 {
			for _, err := range c.Models.GenerateContentStream(t.Context(), textModel, genai.Text("x"), nil) {
				if i == 0 {
					mustOK(t, err)
				} else if ae := asAPIError(t, err); ae.Code != 429 || retryDelayOf(ae.Details) != "0s" {
					t.Fatalf("second stream: %+v", ae)
				}
			}
		}
	})
	t.Run("without alt=sse", func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{}))
		code, body := rawPost(t, e, "/v1beta/models/"+textModel+":streamGenerateContent", "secret-1", simpleBody)
		var arr []map[string]any
		if code != 200 || json.Unmarshal(body, &arr) != nil || len(arr) != 1 || arr[0]["candidates"] == nil {
			t.Fatalf("%d %s", code, body)
		}
	})
}
