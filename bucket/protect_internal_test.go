package bucket

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestSharedProtectCache: on a shared ledger (SharedDay called) daily
// protection's sum, cached and kept up by take (protUsed), always equals
// the sum over the enabled lanes recomputed from scratch, through random
// acquisitions, refunds, shared counts (higher, lower, other days; by
// project and by lease), restores, keys disabled and enabled, lanes
// stopped and resumed, and day rolls. Usage's SharedUsed and Critical agree with it.
func TestSharedProtectCache(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	p := mustPool(t, Config{Classes: []ClassConfig{{Name: "text", Limits: Limits{RPM: 1 << 20, RPD: 60}}}, Keys: keysN(4), Critical: 0.5})
	c := p.Class("text")
	now := t0
	var leases []Lease
	exact := func() int {
		n := 0
		for _, l := range c.lanes {
			if len(l.keys) > 0 {
				n += c.protectedLaneUsed(l)
			}
		}
		return n
	}
	for step := range 4000 {
		if rng.IntN(200) == 0 {
			now = NextMidnight(now, Pacific).Add(time.Minute) // a new day
		}
		now = now.Add(time.Duration(rng.IntN(50)) * time.Millisecond)
		proj := fmt.Sprintf("key%d", rng.IntN(4)+1)
		day := Day(now, Pacific)
		switch op := rng.IntN(20); {
		case op < 10:
			if l, ok, _ := c.AcquireFor(now, 0, rng.IntN(5)+1); ok {
				c.Stamp(l, now)
				leases = append(leases, l)
			}
		case op < 12 && len(leases) > 0:
			i := rng.IntN(len(leases))
			c.Refund(leases[i], now)
			leases = append(leases[:i], leases[i+1:]...)
		case op < 15:
			d := day
			if rng.IntN(4) == 0 {
				d = Day(now.Add(-24*time.Hour), Pacific)
			}
			if len(leases) > 0 && rng.IntN(2) == 0 {
				c.SharedDayOf(leases[rng.IntN(len(leases))], d, rng.IntN(80), now)
			} else {
				c.SharedDay(proj, d, rng.IntN(80), now)
			}
		case op < 16:
			c.Restore(proj, day, rng.IntN(40), now)
		case op < 17:
			p.Disable(proj, "test")
		case op < 18:
			p.Enable(proj)
		case op < 19:
			c.Stop(proj, "test")
		default:
			c.Resume(proj)
		}
		u := c.Usage(now)
		crit := c.Critical(now)
		c.mu.Lock()
		want := exact()
		got := c.protectedUsedLocked()
		limit := c.dayLimit
		c.mu.Unlock()
		if got != want || u.SharedUsed != want {
			t.Fatalf("seed %d step %d: cached %d, Usage %d, recomputed %d", seed, step, got, u.SharedUsed, want)
		}
		if wantCrit := limit > 0 && float64(want) >= 0.5*float64(limit); crit != wantCrit || u.Critical != wantCrit {
			t.Fatalf("seed %d step %d: critical %v (Usage %v), want %v (%d of %d)", seed, step, crit, u.Critical, wantCrit, want, limit)
		}
	}
}

// TestSharedDayProtectThreshold: on a shared ledger, daily protection
// (Critical, Usage's SharedUsed) turns on and off at exactly the day count
// a sum over the enabled lanes from scratch gives, while each SharedDay (or
// SharedDayOf, each row runs with both) keeps the cached sum (protUsed) up
// to date itself rather than clearing it for the next read to sum every
// lane again. Four lanes of RPD 100 and
// Critical 0.9: protection at 360 of 400 units, 270 of 300 with one lane's
// key disabled. Every lane has 80 units of its own use at the start (320),
// and the class is shared (one SharedDay of 0) before the rows' calls;
// each row is a sequence of calls, each followed by the expected sum and
// Critical.
func TestSharedDayProtectThreshold(t *testing.T) {
	today := Day(t0, Pacific)
	yesterday := Day(t0.Add(-24*time.Hour), Pacific)
	tomorrow := Day(t0.Add(24*time.Hour), Pacific)
	shared := func(proj, day string, count, used int, crit bool) sharedStep {
		return sharedStep{"shared", proj, day, count, used, crit}
	}
	tests := []struct {
		name  string
		steps []sharedStep
	}{
		{"one below the threshold, then at it", []sharedStep{
			shared("key1", today, 119, 359, false),
			shared("key1", today, 120, 360, true),
		}},
		{"a count given back turns it off", []sharedStep{
			shared("key1", today, 140, 380, true),
			shared("key1", today, 119, 359, false),
		}},
		{"a count below the lane's own use counts the own use", []sharedStep{
			shared("key1", today, 200, 440, true),
			shared("key1", today, 50, 320, false),
			shared("key1", today, 0, 320, false),
			shared("key1", today, -5, 320, false),
		}},
		{"counts on several lanes add up", []sharedStep{
			shared("key1", today, 90, 330, false),
			shared("key2", today, 90, 340, false),
			shared("key3", today, 90, 350, false),
			shared("key4", today, 89, 359, false),
			shared("key4", today, 90, 360, true),
			shared("key2", today, 89, 359, false),
		}},
		{"yesterday's count is ignored", []sharedStep{
			shared("key1", today, 110, 350, false),
			shared("key1", yesterday, 400, 350, false),
			shared("key1", today, 120, 360, true),
		}},
		{"tomorrow's count replaces today's, counted tomorrow only", []sharedStep{
			shared("key1", today, 130, 370, true),
			shared("key1", tomorrow, 400, 320, false),
			shared("key1", today, 120, 360, true),
		}},
		{"a disabled lane's count is left out, and back when enabled", []sharedStep{
			shared("key1", today, 100, 340, false),
			{do: "disable", proj: "key2", wantUsed: 260}, // 270 of 300
			shared("key1", today, 109, 269, false),
			shared("key1", today, 110, 270, true),
			shared("key2", today, 300, 270, true), // key2 disabled: not counted
			{do: "enable", proj: "key2", wantUsed: 570, wantCrit: true},
			shared("key2", today, 80, 350, false),
		}},
	}
	for _, tc := range tests {
		for _, via := range []string{"SharedDay", "SharedDayOf"} {
			t.Run(via+"/"+tc.name, func(t *testing.T) {
				testSharedDayThreshold(t, via, today, tc.steps)
			})
		}
	}
}

// sharedStep is a call of TestSharedDayProtectThreshold and its expected
// result: the sum daily protection counts, and Critical.
type sharedStep struct {
	do       string // "shared" (a shared count), "disable", "enable" (proj's key)
	proj     string
	day      string
	count    int
	wantUsed int
	wantCrit bool
}

// testSharedDayThreshold runs one row of TestSharedDayProtectThreshold,
// giving the shared counts through via: SharedDay (by project) or
// SharedDayOf (by a lease of the lane).
func testSharedDayThreshold(t *testing.T, via, today string, steps []sharedStep) {
	p := mustPool(t, Config{Classes: []ClassConfig{{Name: "text", Limits: Limits{RPM: 1 << 20, RPD: 100}}}, Keys: keysN(4), Critical: 0.9})
	c := p.Class("text")
	now := t0
	leases := map[string]Lease{} // a lease of each lane, for SharedDayOf
	for len(leases) < 4 {
		l, ok, _ := c.AcquireFor(now, 0, 1)
		if !ok {
			t.Fatal("no lane ready")
		}
		leases[l.Project] = l
	}
	for i := range 4 {
		c.Restore(fmt.Sprintf("key%d", i+1), today, 80, now)
	}
	// The first shared count makes the ledger shared (the cached sum is
	// then computed once); 0 leaves key1's 80.
	c.SharedDay("key1", today, 0, now)
	if c.Critical(now) || c.Usage(now).SharedUsed != 320 {
		t.Fatal("critical, or not 320 of 400, before any shared count above the own use")
	}
	for i, s := range steps {
		now = now.Add(time.Second)
		c.Critical(now) // the sum is cached before the call
		switch {
		case s.do == "shared" && via == "SharedDayOf":
			c.SharedDayOf(leases[s.proj], s.day, s.count, now)
		case s.do == "shared":
			c.SharedDay(s.proj, s.day, s.count, now)
		case s.do == "disable":
			p.Disable(s.proj, "test")
		case s.do == "enable":
			p.Enable(s.proj)
		}
		c.mu.Lock()
		kept := c.protOK
		want := 0
		for _, l := range c.lanes {
			if len(l.keys) > 0 {
				want += c.protectedLaneUsed(l)
			}
		}
		c.mu.Unlock()
		if s.do == "shared" && !kept {
			t.Errorf("step %d (%+v): %s cleared the cached sum: the next read sums every lane again", i, s, via)
		}
		u := c.Usage(now)
		crit := c.Critical(now)
		if u.SharedUsed != s.wantUsed || want != s.wantUsed || crit != s.wantCrit || u.Critical != s.wantCrit {
			t.Fatalf("step %d (%+v): SharedUsed %d (from scratch %d), Critical %v (Usage %v); want %d, %v",
				i, s, u.SharedUsed, want, crit, u.Critical, s.wantUsed, s.wantCrit)
		}
	}
}
