package gemini

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// Tests against the emulator of gemini/emulator, first one attempt at a time
// (the work with a lease), then through the scheduler.

// usageTransport records the promptTokenCount of every 200 answer.
type usageTransport struct {
	base   http.RoundTripper
	mu     sync.Mutex
	tokens []int
}

func (u *usageTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := u.base.RoundTrip(r)
	if err != nil || resp.StatusCode != 200 {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var body struct {
		UsageMetadata struct{ PromptTokenCount int } `json:"usageMetadata"`
	}
	if json.Unmarshal(b, &body) == nil {
		u.mu.Lock()
		u.tokens = append(u.tokens, body.UsageMetadata.PromptTokenCount)
		u.mu.Unlock()
	}
	return resp, nil
}

func (u *usageTransport) seen() []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int(nil), u.tokens...)
}

func newEmulator(t testing.TB, cfg emulator.Config) *emulator.Emulator {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys = []emulator.Key{{Name: testKeyID, Secret: testSecret, Project: "project-" + testKeyID}}
	}
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// emulatorClient is a Client with the test key whose requests go to e.
func emulatorClient(t testing.TB, e *emulator.Emulator) (*Client, *usageTransport) {
	t.Helper()
	ut := &usageTransport{base: e.Transport()}
	return newTestClientRT(t, ut), ut
}

func TestEmulatorAnalysis(t *testing.T) {
	e := newEmulator(t, emulator.Config{})
	c, ut := emulatorClient(t, e)
	var reported []int
	c.reportTokens = func(_ scheduler.Lease, n int) { reported = append(reported, n) }
	for _, tt := range []struct{ slides, images int }{{1, 1}, {3, 2}, {7, MaxImagePrompts}} {
		s := Slideshow{Source: "tides", Images: tt.images}
		for i := range tt.slides {
			sl := Slide{Text: "The moon pulls the sea; high tide number " + string(rune('A'+i)) + " follows it around the earth."}
			if i%2 == 1 {
				sl.Image = pngBytes(8, 8)
			}
			s.Slides = append(s.Slides, sl)
		}
		a, err := c.analyze(t.Context(), testLease("text"), s)
		if err != nil {
			t.Fatalf("%d slides, %d images: %v", tt.slides, tt.images, err)
		}
		if a.Summary == "" || a.Hook == "" || len(a.ImagePrompts) != tt.images || len(a.Slides) != tt.slides {
			t.Fatalf("analysis %+v", a)
		}
		for i, n := range a.Slides {
			if n.Index != i+1 || n.Notes == "" {
				t.Errorf("slides[%d] = %+v", i, n)
			}
		}
	}
	if seen := ut.seen(); len(seen) != 3 || !equalInts(reported, seen) {
		t.Errorf("reported tokens %v, the answers said %v", reported, seen)
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

func TestEmulatorImage(t *testing.T) {
	e := newEmulator(t, emulator.Config{})
	c, _ := emulatorClient(t, e)
	area := map[string]int{}
	for _, tt := range []struct{ ratio, size string }{
		{"", ""}, {"9:16", "2K"}, {"16:9", "1K"}, {"1:1", "4K"}, {"21:9", "1K"}, {"4:5", "1K"}, {"9:16", "1K"},
	} {
		img, err := c.image(t.Context(), testLease("image"), "a lighthouse at dusk, boats in the fog", ImageOptions{AspectRatio: tt.ratio, Size: tt.size})
		if err != nil {
			t.Fatalf("%s %s: %v", tt.ratio, tt.size, err)
		}
		if img.MIMEType != "image/png" {
			t.Errorf("MIME %q", img.MIMEType)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(img.Data))
		if err != nil {
			t.Fatalf("%s %s: not a PNG: %v", tt.ratio, tt.size, err)
		}
		if _, err := png.Decode(bytes.NewReader(img.Data)); err != nil {
			t.Fatalf("%s %s: PNG does not decode: %v", tt.ratio, tt.size, err)
		}
		o := ImageOptions{AspectRatio: tt.ratio, Size: tt.size}
		o.withDefaults()
		w, h, ok := emulator.RealImageSize(o.AspectRatio, o.Size)
		if !ok {
			t.Fatalf("emulator refuses %s %s", o.AspectRatio, o.Size)
		}
		if got, want := float64(cfg.Width)/float64(cfg.Height), float64(w)/float64(h); math.Abs(got-want) > 0.03 {
			t.Errorf("%s %s: %dx%d, want the proportions of %dx%d", o.AspectRatio, o.Size, cfg.Width, cfg.Height, w, h)
		}
		area[o.AspectRatio+" "+o.Size] = cfg.Width * cfg.Height
	}
	if area["9:16 2K"] <= area["9:16 1K"] {
		t.Errorf("a 2K image is not larger than a 1K one: %v", area)
	}
}

func TestEmulatorFaults(t *testing.T) {
	tests := []struct {
		name     string
		faults   emulator.Faults
		call     string
		kind     string
		is       error
		contains []string
	}{
		{"malformed JSON", emulator.Faults{MalformedJSON: 1}, "analyze", "transient", ErrBadAnswer, []string{"not the JSON object asked for", "finishReason STOP"}},
		{"image refused", emulator.Faults{NoImage: 1}, "image", "permanent", ErrBlocked, []string{"finishReason IMAGE_SAFETY"}},
		{"prompt blocked (text)", emulator.Faults{Blocked: 1}, "analyze", "permanent", ErrBlocked, []string{"blockReason PROHIBITED_CONTENT"}},
		{"prompt blocked (image)", emulator.Faults{Blocked: 1}, "image", "permanent", ErrBlocked, []string{"blockReason PROHIBITED_CONTENT"}},
		{"503", emulator.Faults{Rate503: 1}, "analyze", "transient", nil, []string{"HTTP 503", "overloaded"}},
		{"500", emulator.Faults{Rate500: 1}, "image", "transient", nil, []string{"HTTP 500"}},
		{"504", emulator.Faults{Rate504: 1}, "analyze", "transient", nil, []string{"HTTP 504"}},
		{"model down", emulator.Faults{Down: map[string]bool{DefaultImageModel: true}}, "image", "transient", nil, []string{"HTTP 503"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := emulatorClient(t, newEmulator(t, emulator.Config{Faults: tt.faults}))
			var err error
			if tt.call == "analyze" {
				_, err = c.analyze(t.Context(), testLease("text"), testSlideshow())
			} else {
				_, err = c.image(t.Context(), testLease("image"), "a lighthouse", ImageOptions{})
			}
			if got := outcomeKind(err); got != tt.kind {
				t.Fatalf("outcome %q, want %q: %v", got, tt.kind, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error is not %v: %v", tt.is, err)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q: %v", s, err)
				}
			}
		})
	}
}

func TestEmulatorRateLimits(t *testing.T) {
	const (
		rpm = emulator.QuotaRequestsPerMinute
		rpd = emulator.QuotaRequestsPerDay
		tpm = emulator.QuotaTokensPerMinute
	)
	tests := []struct {
		name     string
		limits   emulator.Limits
		layout   emulator.Layout
		freeTier bool
		scope    scheduler.Scope
		quota    string
		retry    time.Duration
	}{
		{"per minute 2025", emulator.Limits{RPM: 1}, emulator.Layout2025, false, scheduler.ScopeMinute, rpm, time.Minute},
		{"per minute 2026 free tier", emulator.Limits{RPM: 1}, emulator.Layout2026, true, scheduler.ScopeMinute, rpm + emulator.FreeTierSuffix, time.Minute},
		{"per day", emulator.Limits{RPD: 1}, emulator.Layout2025, false, scheduler.ScopeDay, rpd, 0},
		{"per day 2026 free tier", emulator.Limits{RPD: 1}, emulator.Layout2026, true, scheduler.ScopeDay, rpd + emulator.FreeTierSuffix, 0},
		{"day and minute: day wins", emulator.Limits{RPM: 1, RPD: 1}, emulator.Layout2025, false, scheduler.ScopeDay, rpd, time.Minute},
		{"input tokens per minute", emulator.Limits{TPM: 400}, emulator.Layout2025, false, scheduler.ScopeMinute, tpm, time.Minute},
		{"bare", emulator.Limits{RPM: 1}, emulator.LayoutBare, false, scheduler.ScopeUnknown, "", 0},
		{"help only", emulator.Limits{RPM: 1}, emulator.LayoutHelpOnly, false, scheduler.ScopeUnknown, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEmulator(t, emulator.Config{
					Models: map[string]emulator.Limits{DefaultTextModel: tt.limits},
					Layout: tt.layout, FreeTier: tt.freeTier,
				})
				c, _ := emulatorClient(t, e)
				s := Slideshow{Slides: []Slide{{Text: strings.Repeat("A tide table for the harbour. ", 30)}}, Images: 1}
				if _, err := c.analyze(t.Context(), testLease("text"), s); err != nil {
					t.Fatalf("first call: %v", err)
				}
				_, err := c.analyze(t.Context(), testLease("text"), s)
				var rl *scheduler.RateLimitedError
				if outcomeKind(err) != "rate_limited" || !errors.As(err, &rl) {
					t.Fatalf("second call: %v, want rate limited", err)
				}
				if rl.Scope != tt.scope || rl.Quota != tt.quota || rl.RetryAfter != tt.retry {
					t.Errorf("got scope %v quota %q retry %v, want %v %q %v", rl.Scope, rl.Quota, rl.RetryAfter, tt.scope, tt.quota, tt.retry)
				}
				if tt.scope == scheduler.ScopeMinute {
					time.Sleep(rl.RetryAfter)
					if _, err := c.analyze(t.Context(), testLease("text"), s); err != nil {
						t.Errorf("after the retry delay: %v", err)
					}
				}
			})
		})
	}
}

func TestEmulatorKeys(t *testing.T) {
	t.Run("unknown key", func(t *testing.T) {
		e := newEmulator(t, emulator.Config{Keys: []emulator.Key{{Name: "other", Secret: "other-secret"}}})
		c, _ := emulatorClient(t, e)
		_, err := c.analyze(t.Context(), testLease("text"), testSlideshow())
		var ke *scheduler.KeyError
		if !errors.As(err, &ke) || ke.Reason != "invalid" || ke.Project {
			t.Fatalf("outcome %v, want an invalid-key KeyError", err)
		}
		if strings.Contains(err.Error(), testSecret) {
			t.Errorf("secret in error: %v", err)
		}
	})
	t.Run("leaked key", func(t *testing.T) {
		e := newEmulator(t, emulator.Config{Keys: []emulator.Key{{Name: testKeyID, Secret: testSecret, Leaked: true}}})
		c, _ := emulatorClient(t, e)
		_, err := c.image(t.Context(), testLease("image"), "a cat", ImageOptions{})
		var ke *scheduler.KeyError
		if !errors.As(err, &ke) || ke.Reason != "leaked" {
			t.Fatalf("outcome %v, want a leaked-key KeyError", err)
		}
		if strings.Contains(err.Error(), testSecret) {
			t.Errorf("secret in error: %v", err)
		}
	})
	t.Run("unknown model", func(t *testing.T) {
		e := newEmulator(t, emulator.Config{})
		c, err := New(t.Context(), Config{Keys: []Key{{ID: testKeyID, Secret: testSecret}}, BaseURL: testBase,
			TextModel: "gemini-0-nonexistent", HTTPClient: &http.Client{Transport: e.Transport()}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.analyze(t.Context(), testLease("text"), testSlideshow())
		if outcomeKind(err) != "permanent" || !strings.Contains(err.Error(), "gemini-0-nonexistent") {
			t.Fatalf("outcome %v, want a permanent 404", err)
		}
	})
}

// Through the scheduler ----------------------------------------------------

type stackKey struct {
	id, secret, project string
	inEmulator          bool // false: the emulator does not know the key
}

type stack struct {
	emu    *emulator.Emulator
	sched  *scheduler.Scheduler
	client *Client
	mu     sync.Mutex
	events []scheduler.Event
}

func (s *stack) Observe(ev scheduler.Event) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
}

func (s *stack) eventsOf(kind scheduler.EventKind) []scheduler.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []scheduler.Event
	for _, ev := range s.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// newStack runs an emulator, a scheduler (classes text and image, generous
// limits unless given) and a Client on keys, until the test ends. Call it
// inside a synctest bubble.
func newStack(t *testing.T, ecfg emulator.Config, keys []stackKey, mod func(*scheduler.Config)) *stack {
	t.Helper()
	st := &stack{}
	var ekeys []emulator.Key
	var ckeys []Key
	var skeys []bucket.Key
	for _, k := range keys {
		if k.inEmulator {
			ekeys = append(ekeys, emulator.Key{Name: k.id, Secret: k.secret, Project: k.project})
		}
		ckeys = append(ckeys, Key{ID: k.id, Secret: k.secret})
		skeys = append(skeys, bucket.Key{ID: k.id, Project: k.project})
	}
	ecfg.Keys = ekeys
	st.emu = newEmulator(t, ecfg)
	scfg := scheduler.Config{
		Classes: []scheduler.ClassConfig{
			{Name: DefaultTextClass, Limits: bucket.Limits{RPM: 100, RPD: 1000, TPM: 1_000_000}},
			{Name: DefaultImageClass, Limits: bucket.Limits{RPM: 10, RPD: 100}},
		},
		Keys:       skeys,
		Classifier: Classify,
		Observer:   st,
		Seed:       1,
	}
	if mod != nil {
		mod(&scfg)
	}
	sched, err := scheduler.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	st.sched = sched
	st.client, err = New(t.Context(), Config{Keys: ckeys, BaseURL: testBase,
		HTTPClient: &http.Client{Transport: st.emu.Transport()}, Scheduler: sched})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return st
}

func TestSchedulerCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStack(t, emulator.Config{}, []stackKey{
			{"k1", "secret-1", "p1", true}, {"k2", "secret-2", "p2", true},
		}, nil)
		ut := &usageTransport{base: st.emu.Transport()}
		// Same client, but recording usage: rebuild it on the recording transport.
		c, err := New(t.Context(), Config{Keys: []Key{{ID: "k1", Secret: "secret-1"}, {ID: "k2", Secret: "secret-2"}}, BaseURL: testBase,
			HTTPClient: &http.Client{Transport: ut}, Scheduler: st.sched})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		results := make([]Analysis, 6)
		errs := make([]error, 6)
		for i := range results {
			wg.Go(func() { results[i], errs[i] = c.AnalyzeSlideshow(t.Context(), testSlideshow()) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("analysis %d: %v", i, err)
			}
			if len(results[i].Slides) != 3 || len(results[i].ImagePrompts) != 2 {
				t.Errorf("analysis %d: %+v", i, results[i])
			}
		}
		img, err := c.GenerateImage(t.Context(), Prompt(results[0].ImagePrompts[0]), ImageOptions{Priority: scheduler.PriorityHigh})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(img.Data)); err != nil {
			t.Errorf("image: %v", err)
		}
		// Both keys served, and the lanes' TPM holds what the answers
		// reported, not the estimates.
		stats := st.emu.Stats()
		if stats.Requests[emulator.RequestKey{Key: "k1", Model: DefaultTextModel, Status: 200}] == 0 ||
			stats.Requests[emulator.RequestKey{Key: "k2", Model: DefaultTextModel, Status: 200}] == 0 {
			t.Errorf("requests were not spread over the keys: %v", stats.Requests)
		}
		reported := 0
		for _, n := range ut.seen()[:6] {
			reported += n
		}
		used := 0
		for _, cs := range st.sched.Summary().Classes {
			if cs.Name == DefaultTextClass {
				for _, l := range cs.Lanes {
					used += l.TPMUsed
				}
			}
		}
		req, _ := c.analysisRequest(testSlideshow())
		if used != reported || used == 6*req.tokens {
			t.Errorf("text lanes hold %d tokens; the answers reported %d (estimate %d each)", used, reported, req.tokens)
		}
	})
}

func TestSchedulerRateLimitedLaneCools(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStack(t, emulator.Config{Models: map[string]emulator.Limits{
			DefaultTextModel: {RPM: 5, RPD: 1000}, DefaultImageModel: {RPM: 5, RPD: 1000},
		}}, []stackKey{{"k1", "secret-1", "p1", true}}, nil)
		// Someone else used p1's minute: the scheduler does not know.
		if n := st.emu.Spend("p1", DefaultTextModel, 5, 10); n != 5 {
			t.Fatalf("spent %d", n)
		}
		start := time.Now()
		if _, err := st.client.AnalyzeSlideshow(t.Context(), testSlideshow()); err != nil {
			t.Fatal(err)
		}
		cooled := st.eventsOf(scheduler.EventLaneCooled)
		if len(cooled) != 1 || cooled[0].Project != "p1" || cooled[0].Until.Sub(cooled[0].Time) != time.Minute {
			t.Fatalf("lane cooled events %+v, want p1 for the emulator's 60s", cooled)
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Errorf("the job succeeded after %v, want when the window opened (1m)", waited)
		}
		stats := st.emu.Stats()
		if stats.Status(429) != 1 || stats.Status(200) != 1 {
			t.Errorf("emulator served %v", stats.Requests)
		}
	})
}

func TestSchedulerDayExhausted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStack(t, emulator.Config{Models: map[string]emulator.Limits{
			DefaultTextModel: {RPM: 100, RPD: 3}, DefaultImageModel: {RPM: 5, RPD: 3},
		}}, []stackKey{{"k1", "secret-1", "p1", true}, {"k2", "secret-2", "p2", true}}, nil)
		st.emu.Spend("p1", DefaultImageModel, 3, 10)
		st.emu.Spend("p2", DefaultImageModel, 3, 10)
		for i := range 2 {
			// Each image job meets a project out for the day: both lanes end
			// exhausted and the second job finds no lane left today.
			ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
			_, err := st.client.GenerateImage(ctx, "a lighthouse", ImageOptions{})
			cancel()
			if err == nil {
				t.Fatalf("image %d succeeded on exhausted projects", i)
			}
		}
		ex := st.eventsOf(scheduler.EventLaneExhausted)
		if len(ex) != 2 {
			t.Fatalf("lane exhausted events %+v, want both projects", ex)
		}
		for _, ev := range ex {
			if ev.Reason != emulator.QuotaRequestsPerDay || ev.Class != DefaultImageClass {
				t.Errorf("exhausted event %+v", ev)
			}
			pacific, _ := time.LoadLocation("America/Los_Angeles")
			if u := ev.Until.In(pacific); u.Hour() != 0 || u.Minute() != 0 || !u.After(ev.Time) {
				t.Errorf("exhausted until %v, want the next Pacific midnight", u)
			}
		}
		// The text class of the same keys is untouched.
		if _, err := st.client.AnalyzeSlideshow(t.Context(), testSlideshow()); err != nil {
			t.Errorf("text after image exhaustion: %v", err)
		}
		if got := st.emu.Stats().Status(429); got != 2 {
			t.Errorf("emulator answered %d 429s, want 2 (one per project, never retried on it)", got)
		}
	})
}

func TestSchedulerInvalidKeyDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStack(t, emulator.Config{}, []stackKey{{"kbad", "secret-bad", "p1", false}}, nil)
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		_, err := st.client.AnalyzeSlideshow(ctx, testSlideshow())
		if err == nil {
			t.Fatal("a job succeeded with an invalid key")
		}
		dis := st.eventsOf(scheduler.EventKeyDisabled)
		if len(dis) != 1 || dis[0].KeyID != "kbad" || !strings.Contains(dis[0].Reason, "invalid") {
			t.Fatalf("key disabled events %+v", dis)
		}
		for _, ev := range st.eventsOf(scheduler.EventFinished) {
			if ev.Err != nil && strings.Contains(ev.Err.Error(), "secret-bad") {
				t.Errorf("secret in an event: %v", ev.Err)
			}
		}
		if strings.Contains(err.Error(), "secret-bad") {
			t.Errorf("secret in the error: %v", err)
		}
	})
}

func TestSchedulerBadAnswers(t *testing.T) {
	tests := []struct {
		name     string
		faults   emulator.Faults
		call     string
		requests int // the emulator sees this many before the job fails
		is       error
		contains string
	}{
		{"malformed JSON is retried once", emulator.Faults{MalformedJSON: 1}, "analyze", 2, ErrBadAnswer, "giving up after 2 unusable answers"},
		{"blocked text is not retried", emulator.Faults{Blocked: 1}, "analyze", 1, ErrBlocked, "PROHIBITED_CONTENT"},
		{"refused image is not retried", emulator.Faults{NoImage: 1}, "image", 1, ErrBlocked, "IMAGE_SAFETY"},
		{"503 is retried up to the budget", emulator.Faults{Rate503: 1}, "analyze", 3, scheduler.ErrRetriesExhausted, "overloaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newStack(t, emulator.Config{Faults: tt.faults}, []stackKey{{"k1", "secret-1", "p1", true}},
					func(c *scheduler.Config) { c.MaxAttempts = 3 })
				var err error
				if tt.call == "analyze" {
					_, err = st.client.AnalyzeSlideshow(t.Context(), testSlideshow())
				} else {
					_, err = st.client.GenerateImage(t.Context(), "a lighthouse", ImageOptions{})
				}
				if err == nil || !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.contains) {
					t.Fatalf("error %v, want %v mentioning %q", err, tt.is, tt.contains)
				}
				if n := st.emu.Stats().Total(); n != tt.requests {
					t.Errorf("emulator served %d requests, want %d", n, tt.requests)
				}
			})
		})
	}
}

func TestSchedulerCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStack(t, emulator.Config{Faults: emulator.Faults{Latency: emulator.UniformLatency(time.Minute, time.Minute)}},
			[]stackKey{{"k1", "secret-1", "p1", true}}, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err := st.client.GenerateImage(ctx, "a lighthouse", ImageOptions{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want the caller's deadline", err)
		}
		if got := st.emu.Stats().Status(499); got != 1 {
			t.Errorf("emulator saw %d abandoned requests, want 1", got)
		}
	})
}

// TestEmulatorFieldAnswers drives every answer of issue #10 the emulator
// learned through the Client: each is classified (cases 1-5) or repaired
// (cases 6-8) as the corpus says.
func TestEmulatorFieldAnswers(t *testing.T) {
	const project = "project-" + testKeyID
	key := emulator.Key{Name: testKeyID, Secret: testSecret, Project: project}
	expired := key
	expired.Expired = true
	tests := []struct {
		name    string
		cfg     emulator.Config
		call    string
		kind    string // "" for success
		reason  string
		project bool
		scope   scheduler.Scope
		quota   string
		limit   int
		mime    string // of the image, on success
	}{
		{name: "out of credit", cfg: emulator.Config{Projects: map[string]emulator.Project{project: {OutOfCredit: true}}},
			call: "analyze", kind: "key", reason: scheduler.ReasonOutOfCredit, project: true},
		{name: "billing required", cfg: emulator.Config{Projects: map[string]emulator.Project{project: {BillingRequired: true}}},
			call: "image", kind: "key", reason: scheduler.ReasonBillingRequired, project: true},
		{name: "ErrorInfo layout per day", cfg: emulator.Config{Layout: emulator.LayoutErrorInfo, Models: map[string]emulator.Limits{
			DefaultTextModel: {RPM: 1000, RPD: 1}, DefaultImageModel: {RPM: 20, RPD: 250}}},
			call: "analyze2", kind: "rate_limited", scope: scheduler.ScopeDay, quota: emulator.QuotaRequestsPerDay, limit: 1},
		{name: "no quota, 2026 body", cfg: emulator.Config{FreeTier: true, Projects: map[string]emulator.Project{project: {NoQuota: []string{DefaultImageModel}}}},
			call: "image", kind: "rate_limited", scope: scheduler.ScopeNoQuota, quota: emulator.QuotaRequestsPerMinute + emulator.FreeTierSuffix},
		{name: "no quota, paid tier", cfg: emulator.Config{Projects: map[string]emulator.Project{project: {NoQuota: []string{DefaultImageModel}}}},
			call: "image", kind: "rate_limited", scope: scheduler.ScopeNoQuota, quota: emulator.QuotaRequestsPerMinute},
		{name: "no quota, ErrorInfo layout", cfg: emulator.Config{Layout: emulator.LayoutErrorInfo, Projects: map[string]emulator.Project{project: {NoQuota: []string{DefaultTextModel}}}},
			call: "analyze", kind: "rate_limited", scope: scheduler.ScopeNoQuota, quota: emulator.QuotaRequestsPerDay},
		{name: "no quota on the other model serves", cfg: emulator.Config{Projects: map[string]emulator.Project{project: {NoQuota: []string{DefaultImageModel}}}},
			call: "analyze"},
		{name: "expired key", cfg: emulator.Config{Keys: []emulator.Key{expired}}, call: "analyze", kind: "key", reason: scheduler.ReasonExpired},
		{name: "fenced JSON", cfg: emulator.Config{Faults: emulator.Faults{FencedJSON: 1}}, call: "analyze"},
		{name: "wrong numbers", cfg: emulator.Config{Faults: emulator.Faults{WrongNumbers: 1}}, call: "analyze"},
		{name: "fenced and numbered", cfg: emulator.Config{Faults: emulator.Faults{WrongNumbers: 1, FencedJSON: 1}}, call: "analyze"},
		{name: "mislabeled image", cfg: emulator.Config{Faults: emulator.Faults{MislabeledImage: 1}}, call: "image", mime: MIMEJPEG},
		{name: "image as labeled", cfg: emulator.Config{}, call: "image", mime: MIMEPNG},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := emulatorClient(t, newEmulator(t, tt.cfg))
			var err error
			var img Image
			switch tt.call {
			case "analyze2": // the second call of the day meets the quota
				if _, err = c.analyze(t.Context(), testLease("text"), testSlideshow()); err != nil {
					t.Fatal(err)
				}
				fallthrough
			case "analyze":
				var a Analysis
				a, err = c.analyze(t.Context(), testLease("text"), testSlideshow())
				if err == nil && (len(a.Slides) != 3 || a.Slides[2].Index != 3 || len(a.ImagePrompts) != 2) {
					t.Fatalf("analysis %+v", a)
				}
			default:
				img, err = c.image(t.Context(), testLease("image"), "a lighthouse", ImageOptions{})
			}
			if tt.kind == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.mime != "" && (img.MIMEType != tt.mime || ImageType(img.Data) != tt.mime) {
					t.Fatalf("image %s (bytes %s), want %s", img.MIMEType, ImageType(img.Data), tt.mime)
				}
				return
			}
			if got := outcomeKind(err); got != tt.kind {
				t.Fatalf("outcome %q, want %q: %v", got, tt.kind, err)
			}
			var ke *scheduler.KeyError
			var rl *scheduler.RateLimitedError
			switch {
			case errors.As(err, &ke):
				if ke.Reason != tt.reason || ke.Project != tt.project {
					t.Errorf("reason %q project %v, want %q %v", ke.Reason, ke.Project, tt.reason, tt.project)
				}
			case errors.As(err, &rl):
				if rl.Scope != tt.scope || rl.Quota != tt.quota || rl.Limit != tt.limit {
					t.Errorf("scope %v quota %q limit %d, want %v %q %d", rl.Scope, rl.Quota, rl.Limit, tt.scope, tt.quota, tt.limit)
				}
			}
		})
	}
}
