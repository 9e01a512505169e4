package emulator

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genai"
)

func oneKey(limits Limits) Config {
	return Config{
		Keys:   []Key{{Name: "k1", Secret: "secret-1"}},
		Models: map[string]Limits{textModel: limits, imageModel: limits},
	}
}

func TestRPMRejectsWithRealRemainingWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{RPM: 3}))
		c := client(t, e, "secret-1")
		ctx := t.Context()
		start := time.Now()
		for _, at := range []time.Duration{0, 10 * time.Second, 20 * time.Second} {
			sleepUntil(start.Add(at))
			_, err := generate(ctx, c, textModel, "hello")
			mustOK(t, err)
		}
		sleepUntil(start.Add(25*time.Second + 500*time.Millisecond))
		_, err := generate(ctx, c, textModel, "hello")
		ae := asAPIError(t, err)
		if ae.Code != 429 || ae.Status != "RESOURCE_EXHAUSTED" {
			t.Fatalf("got %d %s, want 429 RESOURCE_EXHAUSTED", ae.Code, ae.Status)
		}
		if ids := quotaIDs(ae.Details); len(ids) != 1 || ids[0] != QuotaRequestsPerMinute {
			t.Fatalf("quota ids %v, want [%s]", ids, QuotaRequestsPerMinute)
		}
		// The first request leaves the window at start+60s: 34.5 s from now.
		if d := retryDelayOf(ae.Details); d != "34.500s" {
			t.Fatalf("retryDelay %q, want 34.500s", d)
		}
		// Just before the slot frees: still limited, with the wait shrunk.
		sleepUntil(start.Add(59 * time.Second))
		_, err = generate(ctx, c, textModel, "hello")
		if d := retryDelayOf(asAPIError(t, err).Details); d != "1s" {
			t.Fatalf("retryDelay %q, want 1s", d)
		}
		sleepUntil(start.Add(60 * time.Second))
		_, err = generate(ctx, c, textModel, "hello")
		mustOK(t, err)
		// The second slot frees at start+70s.
		_, err = generate(ctx, c, textModel, "hello")
		if d := retryDelayOf(asAPIError(t, err).Details); d != "10s" {
			t.Fatalf("retryDelay %q, want 10s", d)
		}
		s := e.Stats()
		if got := s.Requests[RequestKey{"k1", textModel, 200}]; got != 4 {
			t.Errorf("200s = %d, want 4", got)
		}
		if got := s.Requests[RequestKey{"k1", textModel, 429}]; got != 3 {
			t.Errorf("429s = %d, want 3", got)
		}
		if got := s.RateLimited[QuotaRequestsPerMinute]; got != 3 {
			t.Errorf("RateLimited[%s] = %d, want 3", QuotaRequestsPerMinute, got)
		}
	})
}

func TestRPDRejectsWithZeroRetryDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := oneKey(Limits{RPD: 2})
		cfg.FreeTier = true
		e := mustNew(t, cfg)
		c := client(t, e, "secret-1")
		for range 2 {
			_, err := generate(t.Context(), c, textModel, "hello")
			mustOK(t, err)
		}
		time.Sleep(5 * time.Minute)
		_, err := generate(t.Context(), c, textModel, "hello")
		ae := asAPIError(t, err)
		want := QuotaRequestsPerDay + FreeTierSuffix
		if ids := quotaIDs(ae.Details); len(ids) != 1 || ids[0] != want {
			t.Fatalf("quota ids %v, want [%s]", ids, want)
		}
		if d := retryDelayOf(ae.Details); d != "0s" {
			t.Fatalf("retryDelay %q, want 0s", d)
		}
		if got := e.Stats().RateLimited[want]; got != 1 {
			t.Errorf("RateLimited = %d, want 1", got)
		}
	})
}

func TestRPDResetsAtPacificMidnight(t *testing.T) {
	for _, tc := range []struct {
		name    string
		day     [3]int // year, month, day in Los Angeles
		dayLong time.Duration
	}{
		{"ordinary day", [3]int{2026, 6, 15}, 24 * time.Hour},
		{"spring forward, 23 h", [3]int{2026, 3, 8}, 23 * time.Hour},
		{"fall back, 25 h", [3]int{2026, 11, 1}, 25 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				loc := pacific(t)
				e := mustNew(t, oneKey(Limits{RPD: 2}))
				c := client(t, e, "secret-1")
				ctx := t.Context()
				midnight := time.Date(tc.day[0], time.Month(tc.day[1]), tc.day[2], 0, 0, 0, 0, loc)
				next := time.Date(tc.day[0], time.Month(tc.day[1]), tc.day[2]+1, 0, 0, 0, 0, loc)
				if got := next.Sub(midnight); got != tc.dayLong {
					t.Fatalf("test setup: day is %v long, want %v", got, tc.dayLong)
				}
				// The day before is full too; midnight must reset it.
				sleepUntil(midnight.Add(-time.Hour))
				for range 2 {
					_, err := generate(ctx, c, textModel, "hello")
					mustOK(t, err)
				}
				_, err := generate(ctx, c, textModel, "hello")
				if ae := asAPIError(t, err); ae.Code != 429 {
					t.Fatalf("before midnight: %v", err)
				}
				sleepUntil(midnight)
				for range 2 {
					_, err := generate(ctx, c, textModel, "hello")
					mustOK(t, err)
				}
				// One second before the next Pacific midnight the day is still spent,
				// although 24 h have passed on the 23 h day.
				sleepUntil(next.Add(-time.Second))
				_, err = generate(ctx, c, textModel, "hello")
				ae := asAPIError(t, err)
				if ids := quotaIDs(ae.Details); len(ids) != 1 || ids[0] != QuotaRequestsPerDay {
					t.Fatalf("at %v: quota ids %v, want per-day", time.Now().In(loc), ids)
				}
				if got := e.Stats().Day[LaneKey{"k1", textModel}]; got != 2 {
					t.Errorf("Stats.Day = %d, want 2", got)
				}
				sleepUntil(next)
				_, err = generate(ctx, c, textModel, "hello")
				mustOK(t, err)
				if got := e.Stats().Day[LaneKey{"k1", textModel}]; got != 1 {
					t.Errorf("Stats.Day after midnight = %d, want 1", got)
				}
			})
		})
	}
}

func TestTextAndImageQuotasAreIndependent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{RPM: 1, RPD: 1}))
		c := client(t, e, "secret-1")
		ctx := t.Context()
		_, err := generate(ctx, c, textModel, "hello")
		mustOK(t, err)
		_, err = generate(ctx, c, textModel, "hello")
		if ae := asAPIError(t, err); ae.Code != 429 {
			t.Fatalf("second text request: %v", err)
		}
		_, err = generate(ctx, c, imageModel, "a lighthouse")
		mustOK(t, err)
		_, err = generate(ctx, c, imageModel, "a lighthouse")
		if ae := asAPIError(t, err); ae.Code != 429 {
			t.Fatalf("second image request: %v", err)
		}
	})
}

func TestQuotasBelongToProjects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, Config{
			Keys: []Key{
				{Name: "a", Secret: "sa", Project: "p1"},
				{Name: "b", Secret: "sb", Project: "p1"},
				{Name: "c", Secret: "sc", Project: "p2"},
				{Name: "d", Secret: "sd"}, // a project of its own
			},
			Models: map[string]Limits{textModel: {RPM: 2}},
		})
		ctx := t.Context()
		ca, cb, cc, cd := client(t, e, "sa"), client(t, e, "sb"), client(t, e, "sc"), client(t, e, "sd")
		for _, c := range []*genai.Client{ca, cb} {
			_, err := generate(ctx, c, textModel, "hello")
			mustOK(t, err)
		}
		for name, c := range map[string]*genai.Client{"a": ca, "b": cb} {
			_, err := generate(ctx, c, textModel, "hello")
			if ae := asAPIError(t, err); ae.Code != 429 {
				t.Errorf("key %s of the spent project: %v, want 429", name, err)
			}
		}
		for name, c := range map[string]*genai.Client{"c": cc, "d": cd} {
			for range 2 {
				_, err := generate(ctx, c, textModel, "hello")
				if err != nil {
					t.Errorf("key %s of another project: %v", name, err)
				}
			}
		}
		s := e.Stats()
		for lk, want := range map[LaneKey]int{{"p1", textModel}: 2, {"p2", textModel}: 2, {"d", textModel}: 2} {
			if s.MaxWindow[lk] != want {
				t.Errorf("MaxWindow[%v] = %d, want %d", lk, s.MaxWindow[lk], want)
			}
		}
	})
}

func TestTPM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{TPM: 100}))
		c := client(t, e, "secret-1")
		ctx := t.Context()
		prompt := strings.Repeat("abcd", 75) // 300 characters: 75 tokens
		resp, err := generate(ctx, c, textModel, prompt)
		mustOK(t, err)
		if got := resp.UsageMetadata.PromptTokenCount; got != 75 {
			t.Fatalf("promptTokenCount %d, want 75", got)
		}
		ct, err := c.Models.CountTokens(ctx, textModel, genai.Text(prompt), nil)
		mustOK(t, err)
		if ct.TotalTokens != 75 {
			t.Fatalf("countTokens %d, want 75", ct.TotalTokens)
		}
		time.Sleep(12 * time.Second)
		// 25 tokens still fit; 26 do not.
		_, err = generate(ctx, c, textModel, strings.Repeat("x", 100))
		mustOK(t, err)
		_, err = generate(ctx, c, textModel, "x")
		ae := asAPIError(t, err)
		if ids := quotaIDs(ae.Details); len(ids) != 1 || ids[0] != QuotaTokensPerMinute {
			t.Fatalf("quota ids %v, want [%s]", ids, QuotaTokensPerMinute)
		}
		// Freeing 1 token means the first request (75 tokens at 0 s) must leave: 48 s.
		if d := retryDelayOf(ae.Details); d != "48s" {
			t.Fatalf("retryDelay %q, want 48s", d)
		}
		// A prompt larger than the whole TPM can never pass.
		_, err = generate(ctx, c, textModel, strings.Repeat("y", 404))
		if ae := asAPIError(t, err); ae.Code != 429 {
			t.Fatalf("oversized prompt: %v", err)
		}
		time.Sleep(48 * time.Second)
		_, err = generate(ctx, c, textModel, "x")
		mustOK(t, err)
	})
}

func TestSeveralViolationsInOneBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := oneKey(Limits{RPM: 1, RPD: 1, TPM: 10})
		cfg.FreeTier = true
		e := mustNew(t, cfg)
		c := client(t, e, "secret-1")
		_, err := generate(t.Context(), c, textModel, strings.Repeat("z", 40))
		mustOK(t, err)
		time.Sleep(20 * time.Second)
		_, err = generate(t.Context(), c, textModel, "zz")
		ae := asAPIError(t, err)
		want := []string{QuotaRequestsPerDay + FreeTierSuffix, QuotaRequestsPerMinute + FreeTierSuffix, QuotaTokensPerMinute + FreeTierSuffix}
		if got := quotaIDs(ae.Details); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("quota ids %v, want %v", got, want)
		}
		// The wait is the per-minute one; the per-day quota adds none.
		if d := retryDelayOf(ae.Details); d != "40s" {
			t.Fatalf("retryDelay %q, want 40s", d)
		}
		s := e.Stats()
		for _, id := range want {
			if s.RateLimited[id] != 1 {
				t.Errorf("RateLimited[%s] = %d, want 1", id, s.RateLimited[id])
			}
		}
	})
}

func TestTruncateRetryDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := oneKey(Limits{RPM: 1})
		cfg.TruncateRetryDelay = true
		cfg.Layout = Layout2026
		e := mustNew(t, cfg)
		c := client(t, e, "secret-1")
		_, err := generate(t.Context(), c, textModel, "hi")
		mustOK(t, err)
		time.Sleep(1250 * time.Millisecond)
		_, err = generate(t.Context(), c, textModel, "hi")
		ae := asAPIError(t, err)
		if d := retryDelayOf(ae.Details); d != "58s" {
			t.Errorf("retryDelay %q, want 58s", d)
		}
		if !strings.HasSuffix(ae.Message, "Please retry in 58.750s.") {
			t.Errorf("message %q does not end with the precise wait", ae.Message)
		}
	})
}

func TestSpendCountsAgainstQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, Config{
			Keys:   []Key{{Name: "k1", Secret: "s1", Project: "p"}},
			Models: map[string]Limits{textModel: {RPM: 5, RPD: 8, TPM: 1000}},
		})
		if got := e.Spend("p", textModel, 3, 100); got != 3 {
			t.Fatalf("Spend admitted %d, want 3", got)
		}
		if got := e.Spend("p", "no-such-model", 3, 0); got != 0 {
			t.Fatalf("Spend on an unknown model admitted %d, want 0", got)
		}
		c := client(t, e, "s1")
		for range 2 {
			_, err := generate(t.Context(), c, textModel, "hi")
			mustOK(t, err)
		}
		_, err := generate(t.Context(), c, textModel, "hi")
		if ae := asAPIError(t, err); ae.Code != 429 {
			t.Fatalf("after spending: %v", err)
		}
		time.Sleep(time.Minute)
		// TPM: 1000 tokens / 300 each fit three, but RPD has 3 left: 8-5.
		if got := e.Spend("p", textModel, 10, 300); got != 3 {
			t.Fatalf("Spend admitted %d, want 3 (TPM)", got)
		}
		time.Sleep(time.Minute)
		if got := e.Spend("p", textModel, 10, 1); got != 0 {
			t.Fatalf("Spend admitted %d, want 0 (RPD spent)", got)
		}
		s := e.Stats()
		lk := LaneKey{"p", textModel}
		if s.Spent[lk] != 6 || s.Day[lk] != 8 || s.MaxWindow[lk] != 5 {
			t.Errorf("Spent %d Day %d MaxWindow %d, want 6 8 5", s.Spent[lk], s.Day[lk], s.MaxWindow[lk])
		}
	})
}

func TestMaxWindowUnderSaturation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{RPM: 7}))
		c := client(t, e, "secret-1")
		ok, limited := 0, 0
		// One request every 700 ms for 5 minutes: far above 7 per minute.
		for range 430 {
			_, err := generate(t.Context(), c, textModel, "tick")
			if err == nil {
				ok++
			} else if asAPIError(t, err).Code == 429 {
				limited++
			}
			time.Sleep(700 * time.Millisecond)
		}
		s := e.Stats()
		if got := s.MaxWindow[LaneKey{"k1", textModel}]; got != 7 {
			t.Errorf("MaxWindow = %d, want the limit 7", got)
		}
		if s.Requests[RequestKey{"k1", textModel, 200}] != ok || s.Requests[RequestKey{"k1", textModel, 429}] != limited {
			t.Errorf("Requests %v, want %d ok and %d limited", s.Requests, ok, limited)
		}
		if s.RateLimited[QuotaRequestsPerMinute] != limited {
			t.Errorf("RateLimited %v, want %d", s.RateLimited, limited)
		}
		// Five minutes at 7 per minute, give or take the window edges.
		if ok < 35 || ok > 42 {
			t.Errorf("admitted %d in 5 min at 7 RPM", ok)
		}
	})
}

func TestCountTokensDoesNotUseQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{RPM: 1, RPD: 1}))
		c := client(t, e, "secret-1")
		for range 5 {
			_, err := c.Models.CountTokens(t.Context(), textModel, genai.Text("count me"), nil)
			mustOK(t, err)
		}
		_, err := generate(t.Context(), c, textModel, "hi")
		mustOK(t, err)
		if got := e.Stats().CountTokens; got != 5 {
			t.Errorf("CountTokens = %d, want 5", got)
		}
	})
}

// TestLaneWindowIsBounded checks that old admissions are dropped: the
// window log never holds more than maxLate + a minute of requests.
func TestLaneWindowIsBounded(t *testing.T) {
	loc := pacific(t)
	var l lane
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 100000 {
		now = now.Add(100 * time.Millisecond)
		if len(l.check(now, Limits{}, 1, loc)) != 0 {
			t.Fatal("unlimited lane rejected a request")
		}
		l.admit(now, 1, 1, loc)
		if n := len(l.live()); n > 900 {
			t.Fatalf("after %d admissions the window log holds %d (> 900 per 90 s)", i, n)
		}
		if cap(l.win) > 4096 { // live entries plus as many dropped ones before a compaction
			t.Fatalf("window capacity grew to %d", cap(l.win))
		}
	}
	if tok := l.load(now, byTokens); tok != 600 || l.maxWin != 600 {
		t.Fatalf("tokens in the window %d, maxWin %d, want 600 600", tok, l.maxWin)
	}
}

func TestConcurrentRequestsRespectRPM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{RPM: 50}))
		c := client(t, e, "secret-1")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		results := make(chan error, 200)
		for range 200 {
			go func() {
				_, err := generate(ctx, c, textModel, "concurrent")
				results <- err
			}()
		}
		ok := 0
		for range 200 {
			if err := <-results; err == nil {
				ok++
			} else if asAPIError(t, err).Code != 429 {
				t.Errorf("unexpected %v", err)
			}
		}
		if ok != 50 {
			t.Errorf("%d admitted at once, want 50", ok)
		}
		if got := e.Stats().MaxWindow[LaneKey{"k1", textModel}]; got != 50 {
			t.Errorf("MaxWindow %d, want 50", got)
		}
	})
}

// TestLaneAgainstModel drives a lane with random traffic and checks every
// decision against a brute-force model that keeps the whole history.
func TestLaneAgainstModel(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 1))
	loc := pacific(t)
	for round := range 50 {
		lim := Limits{RPM: r.IntN(6), TPM: r.IntN(3) * (50 + r.IntN(200)), RPD: r.IntN(3) * (5 + r.IntN(40))}
		var l lane
		var hist []admission // every admission, one request each
		// Around the midnight that starts the 23 h day of 2026-03-08.
		now := time.Date(2026, 3, 7, 23, 30, 0, 0, loc).Add(time.Duration(r.IntN(1800)) * time.Second)
		for step := range 400 {
			now = now.Add(time.Duration(r.ExpFloat64() * float64(4*time.Second)))
			tokens := r.IntN(60)
			// The model: what the last 60 s and the day hold.
			inWin, tokWin, today := 0, 0, 0
			var winTimes []time.Time
			var winToks []int
			for _, a := range hist {
				if now.Before(a.t.Add(window)) {
					inWin++
					tokWin += a.tokens
					winTimes = append(winTimes, a.t)
					winToks = append(winToks, a.tokens)
				}
				if dateOf(a.t, loc) == dateOf(now, loc) {
					today++
				}
			}
			want := map[quotaKind]time.Duration{}
			if lim.RPD > 0 && today >= lim.RPD {
				want[perDay] = 0
			}
			if lim.RPM > 0 && inWin >= lim.RPM {
				want[perMinute] = winTimes[inWin-lim.RPM].Add(window).Sub(now)
			}
			if lim.TPM > 0 && tokWin+tokens > lim.TPM {
				excess, freed := tokWin+tokens-lim.TPM, 0
				var d time.Duration
				for i := range winTimes {
					freed += winToks[i]
					d = winTimes[i].Add(window).Sub(now)
					if freed >= excess {
						break
					}
				}
				want[tokensPerMinute] = d
			}
			got := l.check(now, lim, tokens, loc)
			if len(got) != len(want) {
				t.Fatalf("round %d step %d (%v, %+v): violations %+v, want %v", round, step, now, lim, got, want)
			}
			for _, v := range got {
				if d, ok := want[v.kind]; !ok || d != v.delay {
					t.Fatalf("round %d step %d: violation %+v, want %v", round, step, v, want)
				}
			}
			if len(got) == 0 {
				l.admit(now, 1, tokens, loc)
				hist = append(hist, admission{t: now, n: 1, tokens: tokens})
			}
			if lim.RPM > 0 && l.maxWin > lim.RPM {
				t.Fatalf("round %d: %d requests in a window, limit %d", round, l.maxWin, lim.RPM)
			}
		}
	}
}

func TestSpendIsConstantTime(t *testing.T) {
	e := mustNew(t, Config{Models: map[string]Limits{textModel: {}}})
	if got := e.Spend("p", textModel, 1_000_000, 10); got != 1_000_000 {
		t.Fatalf("Spend = %d", got)
	}
	e.mu.Lock()
	entries := len(e.lanes[LaneKey{"p", textModel}].win)
	e.mu.Unlock()
	if entries != 1 {
		t.Errorf("one Spend made %d window entries", entries)
	}
	if s := e.Stats(); s.MaxWindow[LaneKey{"p", textModel}] != 1_000_000 || s.Spent[LaneKey{"p", textModel}] != 1_000_000 {
		t.Errorf("stats %+v", s)
	}
}

// TestSentStats: per lane, Stats shows what the API saw: the arrival time
// of every request that reached the quota check (429s and 503s included),
// the most of them in any sliding 60 s window, and the per-minute 429s.
func TestSentStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{RPM: 2, RPD: 4}))
		start := time.Now()
		lane := LaneKey{Project: "k1", Model: textModel}
		// 0 s: 200, 200, 429 (RPM); 30 s: 429 (RPM); 60 s: 200 (the first
		// two left the window), 503; 61 s: 200; 62 s: 429 (RPD and RPM).
		// A bad key and an invalid body never reach the quota check.
		var want []time.Time
		send := func(at time.Duration) {
			sleepUntil(start.Add(at))
			want = append(want, time.Now())
			rawPost(t, e, genPath, "secret-1", simpleBody)
		}
		send(0)
		send(0)
		send(0)
		send(30 * time.Second)
		send(60 * time.Second)
		mustOK(t, e.SetFaults(Faults{Rate503: 1}))
		send(60 * time.Second)
		mustOK(t, e.SetFaults(Faults{}))
		send(61 * time.Second)
		send(62 * time.Second)
		if code, _ := rawPost(t, e, genPath, "unknown-secret", simpleBody); code != 400 {
			t.Fatalf("unknown key: %d", code)
		}
		if code, _ := rawPost(t, e, genPath, "secret-1", `{"contents":[]}`); code != 400 {
			t.Fatalf("empty contents: %d", code)
		}

		s := e.Stats()
		if got := s.Sent[lane]; !slices.Equal(got, want) {
			t.Errorf("Sent = %v, want %v", got, want)
		}
		// [30 s, 90 s) holds the arrivals at 30, 60, 60, 61 and 62 s.
		if got := s.MaxSentWindow[lane]; got != 5 {
			t.Errorf("MaxSentWindow = %d, want 5", got)
		}
		if got := s.MaxWindow[lane]; got != 2 {
			t.Errorf("MaxWindow (admitted) = %d, want 2", got)
		}
		if got := s.RateLimitedPerMinute[lane]; got != 3 {
			t.Errorf("RateLimitedPerMinute = %d, want 3", got)
		}
		if got := s.Requests[RequestKey{"k1", textModel, 503}]; got != 1 {
			t.Errorf("503s = %d, want 1", got)
		}
		s.Sent[lane][0] = time.Time{}
		if e.Stats().Sent[lane][0].IsZero() {
			t.Error("Stats.Sent shares its slice with the emulator")
		}
	})
}
