package bucket

import (
	"math/rand/v2"
	"testing"
	"time"
)

// When Acquire says "not before next", Acquire at next succeeds (one lane,
// nothing else changes): a caller that sleeps until next never wakes for
// nothing, so at saturation there is one wake-up per request.
func TestAcquireSucceedsAtNext(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for run := 0; run < 50; run++ {
		rpm := 1 + rng.IntN(3000)
		p, err := New(Config{
			Classes: []ClassConfig{{Name: "c", Limits: Limits{RPM: rpm, RPD: 1 << 30}}},
			Keys:    []Key{{ID: "k", Project: "k"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		c := p.Class("c")
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(rng.Int64N(int64(time.Hour))))
		for i := 0; i < 2*rpm+10; i++ {
			_, ok, next := c.Acquire(now, 0)
			if ok {
				continue
			}
			if !next.After(now) {
				t.Fatalf("rpm %d: next %v not after now %v", rpm, next, now)
			}
			now = next
			if _, ok, next2 := c.Acquire(now, 0); !ok {
				t.Fatalf("rpm %d, acquisition %d: Acquire at the returned next %v failed again, next %v (+%v)", rpm, i, now, next2, next2.Sub(now))
			}
		}
	}
}
