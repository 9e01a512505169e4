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
// acquisitions, refunds, shared counts (higher, lower, other days),
// restores, keys disabled and enabled, lanes stopped and resumed, and day
// rolls. Usage's SharedUsed and Critical agree with it.
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
			c.SharedDay(proj, d, rng.IntN(80), now)
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
