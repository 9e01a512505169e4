package emulator

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// delayOneRequest makes the next generate request wait d between its
// receive time and its parsing (as a loaded machine's CPU and the lock
// do), for the rest of the test.
func delayOneRequest(t *testing.T, d time.Duration) *atomic.Bool {
	var armed atomic.Bool
	testHookReceived = func() {
		if armed.CompareAndSwap(true, false) {
			time.Sleep(d)
		}
	}
	t.Cleanup(func() { testHookReceived = nil })
	return &armed
}

// postLate starts a request that reaches the quota check d after it was
// received (delayOneRequest's hook), and returns its status when done.
func postLate(e *Emulator, armed *atomic.Bool, body string) <-chan int {
	armed.Store(true)
	done := make(chan int, 1)
	go func() {
		code, _ := rawPostNoT(e, genPath, "secret-1", body)
		done <- code
	}()
	synctest.Wait() // the request is received and parked in the hook
	return done
}

// TestRequestCountsWhenReceived: a request counts at the time its body was
// received, not when it reaches the quota check. A request received 0.1 s
// before the first of the minute leaves the window, and checked 1 s later,
// after a request received after it was admitted, is refused (counted when
// it reached the check, it would have taken the freed slot).
func TestRequestCountsWhenReceived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{RPM: 2}))
		armed := delayOneRequest(t, time.Second)
		lane := LaneKey{Project: "k1", Model: textModel}
		start := time.Now()
		rawPost(t, e, genPath, "secret-1", simpleBody)  // 0 s
		sleepUntil(start.Add(100 * time.Millisecond))   // 0.1 s
		rawPost(t, e, genPath, "secret-1", simpleBody)  //
		sleepUntil(start.Add(59900 * time.Millisecond)) // 59.9 s: received, checked at 60.9 s
		late := postLate(e, armed, simpleBody)
		sleepUntil(start.Add(60500 * time.Millisecond)) // 60.5 s: the first left the window
		if code, body := rawPost(t, e, genPath, "secret-1", simpleBody); code != 200 {
			t.Fatalf("request at 60.5 s: %d %s", code, body)
		}
		if code := <-late; code != 429 {
			t.Fatalf("request received at 59.9 s, checked at 60.9 s: %d, want 429 (the window (-0.1 s, 59.9 s] held 2)", code)
		}
		if now := time.Since(start); now != 60900*time.Millisecond {
			t.Fatalf("the late request was checked at %v, want 60.9 s", now)
		}
		s := e.Stats()
		want := []time.Time{start, start.Add(100 * time.Millisecond), start.Add(59900 * time.Millisecond), start.Add(60500 * time.Millisecond)}
		if got := s.Sent[lane]; !slices.Equal(got, want) {
			t.Errorf("Sent = %v, want the receive times in time order %v", got, want)
		}
		if got := s.MaxSentWindow[lane]; got != 3 {
			t.Errorf("MaxSentWindow = %d, want 3 (0, 0.1 and 59.9 s)", got)
		}
		if got := s.MaxWindow[lane]; got != 2 {
			t.Errorf("MaxWindow = %d, want 2", got)
		}
		if got := s.RateLimitedPerMinute[lane]; got != 1 {
			t.Errorf("RateLimitedPerMinute = %d, want 1", got)
		}
	})
}

// TestRetryDelayOfALateRequest: the retryDelay of a request refused out of
// order counts from its receive time, to the first moment every window it
// would fall in has room.
func TestRetryDelayOfALateRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := mustNew(t, oneKey(Limits{RPM: 2}))
		armed := delayOneRequest(t, time.Second)
		start := time.Now()
		rawPost(t, e, genPath, "secret-1", simpleBody) // 0 s
		sleepUntil(start.Add(100 * time.Millisecond))
		rawPost(t, e, genPath, "secret-1", simpleBody) // 0.1 s
		sleepUntil(start.Add(59900 * time.Millisecond))
		armed.Store(true)
		var code int
		var body []byte
		done := make(chan struct{})
		go func() {
			code, body = rawPostNoT(e, genPath, "secret-1", simpleBody) // received 59.9 s
			close(done)
		}()
		synctest.Wait()
		sleepUntil(start.Add(60500 * time.Millisecond))
		rawPost(t, e, genPath, "secret-1", simpleBody) // 60.5 s, admitted
		<-done
		if code != 429 {
			t.Fatalf("late request: %d %s", code, body)
		}
		// At 60 s the request at 0 s has left: the windows from 60 s on
		// hold the ones at 0.1 and 60.5 s at most one at a time.
		if d := retryDelayOf(decodeError(t, body).Error.Details); d != "0.100s" {
			t.Errorf("retryDelay %q, want 0.100s", d)
		}
	})
}

// TestDayOfALateRequest: a request received before Pacific midnight and
// checked after it counts on the day it was received, and does not take
// the new day's quota.
func TestDayOfALateRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		loc := pacific(t)
		e := mustNew(t, oneKey(Limits{RPD: 2}))
		armed := delayOneRequest(t, time.Second)
		lane := LaneKey{Project: "k1", Model: textModel}
		now := time.Now().In(loc)
		midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, loc)
		sleepUntil(midnight.Add(-time.Minute))
		if code, _ := rawPost(t, e, genPath, "secret-1", simpleBody); code != 200 {
			t.Fatalf("23:59:00: %d", code)
		}
		sleepUntil(midnight.Add(-500 * time.Millisecond))
		late := postLate(e, armed, simpleBody) // received 23:59:59.5, checked 00:00:00.5
		sleepUntil(midnight.Add(200 * time.Millisecond))
		if code, _ := rawPost(t, e, genPath, "secret-1", simpleBody); code != 200 {
			t.Fatalf("00:00:00.2: %d", code)
		}
		if code := <-late; code != 200 {
			t.Fatalf("received 23:59:59.5, checked after midnight: %d, want 200 (the old day's second)", code)
		}
		if code, _ := rawPost(t, e, genPath, "secret-1", simpleBody); code != 200 {
			t.Fatalf("00:00:00.5: %d, want 200 (the new day's second)", code)
		}
		code, body := rawPost(t, e, genPath, "secret-1", simpleBody)
		if code != 429 || !slices.Equal(quotaIDs(decodeError(t, body).Error.Details), []string{QuotaRequestsPerDay}) {
			t.Fatalf("00:00:00.5, third of the day: %d %s, want 429 per day", code, body)
		}
		if got := e.Stats().Day[lane]; got != 2 {
			t.Errorf("Day = %d, want 2", got)
		}
	})
}

// TestLaneOutOfOrderAtTheWindowEdge: a request received just before an
// admission leaves the window, counted after a request received later took
// the freed slot, finds no room in any window it falls in.
func TestLaneOutOfOrderAtTheWindowEdge(t *testing.T) {
	loc := pacific(t)
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, loc)
	lim := Limits{RPM: 1}
	var l lane
	admit := func(at time.Time) []violation {
		vs := l.check(at, lim, 1, loc)
		if len(vs) == 0 {
			l.admit(at, 1, 1, loc)
		}
		return vs
	}
	if vs := admit(t0); len(vs) != 0 {
		t.Fatalf("first: %+v", vs)
	}
	if vs := admit(t0.Add(window)); len(vs) != 0 { // the first counts during [t0, t0+60s)
		t.Fatalf("at t0+60s: %+v", vs)
	}
	vs := admit(t0.Add(window - time.Millisecond))
	if len(vs) != 1 || vs[0].kind != perMinute {
		t.Fatalf("received at t0+59.999s, counted last: %+v, want the per-minute quota", vs)
	}
	// (t0-1ms, t0+59.999s] holds t0; every window from t0+60s on holds
	// t0+60s until t0+120s.
	if want := window + time.Millisecond; vs[0].delay != want {
		t.Errorf("delay %v, want %v", vs[0].delay, want)
	}
	if l.maxWin != 1 {
		t.Errorf("maxWin %d, want 1", l.maxWin)
	}
}

// TestMaxWindowOutOfOrder: the most-in-any-window statistics count every
// 60 s interval, also when the requests that fill one come out of order
// (after a later one has pushed the earlier ones out of the newest
// window).
func TestMaxWindowOutOfOrder(t *testing.T) {
	loc := pacific(t)
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, loc)
	order := []time.Duration{0, 100 * time.Millisecond, 60500 * time.Millisecond, 59900 * time.Millisecond}
	t.Run("unlimited", func(t *testing.T) {
		var l lane
		for _, d := range order {
			l.arrive(t0.Add(d))
			if vs := l.check(t0.Add(d), Limits{}, 1, loc); len(vs) != 0 {
				t.Fatalf("%v: %+v", d, vs)
			}
			l.admit(t0.Add(d), 1, 1, loc)
		}
		// [0, 60 s) holds 0, 0.1 and 59.9 s.
		if l.maxWin != 3 || l.maxSent != 3 {
			t.Errorf("maxWin %d maxSent %d, want 3 3", l.maxWin, l.maxSent)
		}
	})
	t.Run("RPM 2", func(t *testing.T) {
		var l lane
		lim := Limits{RPM: 2}
		var refused []time.Duration
		for _, d := range order {
			l.arrive(t0.Add(d))
			if vs := l.check(t0.Add(d), lim, 1, loc); len(vs) != 0 {
				refused = append(refused, d)
				continue
			}
			l.admit(t0.Add(d), 1, 1, loc)
		}
		// The arrivals of [0, 60 s) were RPM+1: the last one is refused,
		// and the arrival statistic shows the 3.
		if !slices.Equal(refused, order[3:]) {
			t.Errorf("refused %v, want %v", refused, order[3:])
		}
		if l.maxWin != 2 || l.maxSent != 3 {
			t.Errorf("maxWin %d maxSent %d, want 2 3", l.maxWin, l.maxSent)
		}
	})
}

// TestLaneAgainstModelOutOfOrder drives a lane with random traffic whose
// receive times come up to 1.5 s out of order, and checks every decision,
// retry delay and statistic against a brute-force model that keeps the
// whole history: a request at t is admitted when every window (s-60s, s],
// s in [t, t+60s), has room for it, and its day is t's Pacific day.
func TestLaneAgainstModelOutOfOrder(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 2))
	loc := pacific(t)
	for round := range 25 {
		lim := Limits{RPM: r.IntN(8), TPM: r.IntN(3) * (50 + r.IntN(200)), RPD: r.IntN(3) * (5 + r.IntN(40))}
		var l lane
		var hist []admission // every admission, one request each
		var arrivals []time.Time
		// windowSum is the model's most of size in a window t falls in.
		windowSum := func(t time.Time, m measure) int {
			best := 0
			ends := []time.Time{t}
			for _, a := range hist {
				if a.t.After(t) && a.t.Before(t.Add(window)) {
					ends = append(ends, a.t)
				}
			}
			for _, s := range ends {
				sum := 0
				for _, a := range hist {
					if a.t.After(s.Add(-window)) && !a.t.After(s) {
						sum += a.size(m)
					}
				}
				best = max(best, sum)
			}
			return best
		}
		// wait is the model's time from t until the windows hold at most
		// room: the first admission's exit at which they do, or the last
		// exit.
		wait := func(t time.Time, m measure, room int) time.Duration {
			var exits []time.Time
			for _, a := range hist {
				if a.t.After(t.Add(-window)) {
					exits = append(exits, a.t.Add(window))
				}
			}
			slices.SortFunc(exits, func(a, b time.Time) int { return a.Compare(b) })
			for _, u := range exits {
				if room >= 0 && windowSum(u, m) <= room {
					return u.Sub(t)
				}
			}
			if len(exits) == 0 {
				return 0
			}
			return exits[len(exits)-1].Sub(t)
		}
		clock := time.Date(2026, 3, 7, 23, 30, 0, 0, loc).Add(time.Duration(r.IntN(1800)) * time.Second)
		for step := range 300 {
			clock = clock.Add(time.Duration(r.ExpFloat64() * float64(3*time.Second)))
			at := clock
			if r.IntN(3) == 0 {
				at = clock.Add(-time.Duration(r.Int64N(int64(1500 * time.Millisecond))))
			}
			tokens := r.IntN(60)
			today := 0
			for _, a := range hist {
				if dateOf(a.t, loc) == dateOf(at, loc) {
					today++
				}
			}
			want := map[quotaKind]time.Duration{}
			if lim.RPD > 0 && today >= lim.RPD {
				want[perDay] = 0
			}
			if lim.RPM > 0 && windowSum(at, byRequests) >= lim.RPM {
				want[perMinute] = wait(at, byRequests, lim.RPM-1)
			}
			if lim.TPM > 0 && windowSum(at, byTokens)+tokens > lim.TPM {
				want[tokensPerMinute] = wait(at, byTokens, lim.TPM-tokens)
			}
			l.arrive(at)
			arrivals = append(arrivals, at)
			got := l.check(at, lim, tokens, loc)
			if len(got) != len(want) {
				t.Fatalf("round %d step %d (%v, %+v): violations %+v, want %v", round, step, at, lim, got, want)
			}
			for _, v := range got {
				if d, ok := want[v.kind]; !ok || d != v.delay {
					t.Fatalf("round %d step %d: violation %+v, want %v", round, step, v, want)
				}
			}
			if len(got) == 0 {
				l.admit(at, 1, tokens, loc)
				hist = append(hist, admission{t: at, n: 1, tokens: tokens})
			}
			// The statistics: the most in any 60 s interval, by brute force.
			most := func(ts []time.Time) int {
				ts = slices.SortedFunc(slices.Values(ts), func(a, b time.Time) int { return a.Compare(b) })
				best, lo := 0, 0
				for i, s := range ts {
					for !ts[lo].After(s.Add(-window)) {
						lo++
					}
					best = max(best, i-lo+1)
				}
				return best
			}
			var admitted []time.Time
			for _, a := range hist {
				admitted = append(admitted, a.t)
			}
			if w := most(admitted); l.maxWin != w {
				t.Fatalf("round %d step %d: maxWin %d, want %d", round, step, l.maxWin, w)
			}
			if w := most(arrivals); l.maxSent != w {
				t.Fatalf("round %d step %d: maxSent %d, want %d", round, step, l.maxSent, w)
			}
			if lim.RPM > 0 && l.maxWin > lim.RPM {
				t.Fatalf("round %d: %d requests in a window, limit %d", round, l.maxWin, lim.RPM)
			}
			sorted := slices.SortedFunc(slices.Values(arrivals), func(a, b time.Time) int { return a.Compare(b) })
			if !slices.Equal(l.sent, sorted) {
				t.Fatalf("round %d step %d: sent not the arrivals in time order", round, step)
			}
			if got, want := l.today(clock, loc), countDay(hist, clock, loc); got != want {
				t.Fatalf("round %d step %d: today %d, want %d", round, step, got, want)
			}
		}
	}
}

func countDay(hist []admission, now time.Time, loc *time.Location) int {
	n := 0
	for _, a := range hist {
		if dateOf(a.t, loc) == dateOf(now, loc) {
			n++
		}
	}
	return n
}

// rawPostNoT is rawPost for a goroutine other than the test's.
func rawPostNoT(e *Emulator, path, secret, body string) (int, []byte) {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("x-goog-api-key", secret)
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

// TestLaneVeryLateRequest: a request received more than maxLate before the
// latest time its lane counted counts maxLate before it (the bound that
// keeps the window log short).
func TestLaneVeryLateRequest(t *testing.T) {
	loc := pacific(t)
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, loc)
	var l lane
	l.arrive(t0)
	l.check(t0, Limits{}, 1, loc)
	l.admit(t0, 1, 1, loc)
	old := t0.Add(-maxLate - 15*time.Second)
	l.arrive(old)
	l.check(old, Limits{}, 1, loc)
	l.admit(old, 1, 1, loc)
	want := []time.Time{t0.Add(-maxLate), t0}
	if !slices.Equal(l.sent, want) {
		t.Errorf("sent %v, want %v", l.sent, want)
	}
	if w := l.live(); len(w) != 2 || !w[0].t.Equal(t0.Add(-maxLate)) {
		t.Errorf("window log %+v, want the late request at t0-maxLate", w)
	}
	if l.maxWin != 2 {
		t.Errorf("maxWin %d, want 2", l.maxWin)
	}
}
