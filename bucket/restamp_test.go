package bucket

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestRestampLateWrite: a request written a second after its stamp, with a
// margin of 250 ms, reaches the API up to 1.125 s after the stamp (the
// margin's second half, WriteMargin, covers the network); Restamp moves its
// slot there, so the window refuses the request that would make
// RPM + 1 in the minute ending at its arrival. Without Restamp the slot left
// at stamp + margin + 60 s and the lane took a full minute's burst again.
func TestRestampLateWrite(t *testing.T) {
	const margin = 250 * time.Millisecond
	c := mustPool(t, Config{Classes: []ClassConfig{{Name: "c", Limits: Limits{RPM: 3, RPD: 1000}, WindowMargin: margin}},
		Keys: keysN(1)}).Class("c")
	var ls []Lease
	for range 3 {
		l, ok, _ := c.Acquire(t0, 0)
		if !ok {
			t.Fatal("burst of 3 refused")
		}
		if got := c.Stamp(l, t0); !got.Equal(t0.Add(margin)) {
			t.Fatalf("Stamp %v, want %v", got, t0.Add(margin))
		}
		ls = append(ls, l)
	}
	// Written within the margin: nothing moves.
	if got, moved := c.Restamp(ls[0], t0.Add(100*time.Millisecond)); moved || !got.Equal(t0.Add(margin)) {
		t.Fatalf("Restamp within the margin: %v moved=%v, want %v unmoved", got, moved, t0.Add(margin))
	}
	wrote := t0.Add(time.Second)
	if got, moved := c.Restamp(ls[1], wrote); !moved || !got.Equal(wrote.Add(margin/2)) {
		t.Fatalf("Restamp of a late write: %v moved=%v, want %v moved", got, moved, wrote.Add(margin/2))
	}
	// An earlier report after it keeps the latest.
	if got, moved := c.Restamp(ls[1], t0.Add(500*time.Millisecond)); moved || !got.Equal(wrote.Add(margin/2)) {
		t.Fatalf("earlier Restamp after a later one: %v moved=%v", got, moved)
	}
	// Just after the on-time slots leave, the late one still counts: the
	// minute ending at its arrival (up to wrote + margin/2) has room for
	// RPM - 1 = 2 more at most.
	now := t0.Add(time.Minute + margin + time.Millisecond)
	got := 0
	for {
		l, ok, next := c.Acquire(now, 0)
		if !ok {
			if next.After(wrote.Add(margin/2 + time.Minute)) {
				t.Fatalf("next slot at %v, after the late slot leaves (%v)", next, wrote.Add(margin/2+time.Minute))
			}
			break
		}
		c.Stamp(l, now)
		got++
	}
	if got > 2 || got == 0 {
		t.Fatalf("%d acquired when the on-time slots left, want 1 or 2 (RPM 3, one slot written late)", got)
	}
	if used := c.Usage(now).Lanes[0].RPMUsed; used < got+1 || used > 3 {
		t.Fatalf("RPMUsed %d, want %d to 3 (an on-time slot behind the moved one may stay counted)", used, got+1)
	}
	// Once the late slot has left too, the lane has room again.
	if _, ok, _ := c.Acquire(wrote.Add(margin/2+time.Minute+time.Millisecond), 0); !ok {
		t.Fatal("no room once every slot of the first burst left")
	}
}

// TestRestampAfterWindow: a write more than 60 s after its stamp (its slot
// already left the window) is counted again from the write plus
// WriteMargin, or the lane's last entry's time when later (the log stays in
// time order).
func TestRestampAfterWindow(t *testing.T) {
	const margin = 250 * time.Millisecond
	c := mustPool(t, Config{Classes: []ClassConfig{{Name: "c", Limits: Limits{RPM: 2, RPD: 1000}, WindowMargin: margin}},
		Keys: keysN(1)}).Class("c")
	l, _, _ := c.Acquire(t0, 0)
	c.Stamp(l, t0)
	later := t0.Add(61 * time.Second)
	l2, ok, _ := c.Acquire(later, 0)
	if !ok {
		t.Fatal("no room a minute later")
	}
	c.Stamp(l2, later.Add(time.Second)) // stamped at 62 s: after the late write below
	wrote := t0.Add(61500 * time.Millisecond)
	got, moved := c.Restamp(l, wrote)
	if !moved || got.Before(wrote.Add(margin/2)) {
		t.Fatalf("Restamp after the window: %v moved=%v, want at least %v", got, moved, wrote.Add(margin/2))
	}
	if !got.Equal(later.Add(time.Second + margin)) {
		t.Fatalf("Restamp after the window: %v, want the last entry's time %v (order kept)", got, later.Add(time.Second+margin))
	}
	if _, ok, _ := c.Acquire(later.Add(2*time.Second), 0); ok {
		t.Fatal("RPM 2 with two slots in the window: a third acquired")
	}
}

// TestWindowBoundLateWrites acquires at random rates; a quarter of the
// requests are written up to 3 s after their stamp, the others within half
// the margin (WriteMargin), all told with Restamp in time order; each
// reaches the API within WriteMargin after its write. No 60 s window of
// arrivals holds more than RPM or TPM. Without Restamp (the slot stays at
// the stamp plus the margin) it fails within a few runs.
func TestWindowBoundLateWrites(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 13))
	for run := range 8 {
		rpm := []int{1, 3, 20, 60, 100, 1000}[r.IntN(6)]
		tpm := 0
		if r.IntN(2) == 0 {
			tpm = 1000 * (1 + r.IntN(20))
		}
		margin := time.Duration(r.IntN(int(time.Second)))
		cfg := Config{Classes: []ClassConfig{{Name: "c", Limits: Limits{RPM: rpm, RPD: 1 << 30, TPM: tpm}, Burst: 1 + r.IntN(rpm), WindowMargin: margin}},
			Keys: keysN(1 + r.IntN(3))}
		c := mustPool(t, cfg).Class("c")
		mean := time.Duration(float64(time.Minute) / float64(rpm) * (0.1 + 2*r.Float64()))
		now := t0.Add(time.Duration(r.IntN(86400)) * time.Second)
		end := now.Add(time.Hour)
		type write struct {
			at     time.Time
			l      Lease
			tokens int
		}
		var pending []write
		got := map[string][]acq{}
		deliver := func(until time.Time) {
			slices.SortStableFunc(pending, func(a, b write) int { return a.at.Compare(b.at) })
			i := 0
			for ; i < len(pending) && !pending[i].at.After(until); i++ {
				w := pending[i]
				c.Restamp(w.l, w.at)
				arrive := w.at.Add(time.Duration(r.Int64N(int64(margin/2) + 1)))
				got[w.l.Project] = append(got[w.l.Project], acq{at: arrive, tokens: w.tokens})
			}
			pending = slices.Delete(pending, 0, i)
		}
		for now.Before(end) {
			deliver(now)
			tok := r.IntN(500)
			if tpm > 0 {
				tok = r.IntN(tpm/5 + 1)
			}
			l, ok, next := c.Acquire(now, tok)
			if !ok {
				if next.IsZero() {
					t.Fatalf("run %d: nothing can serve", run)
				}
				if len(pending) > 0 && pending[0].at.Before(next) {
					next = pending[0].at
				}
				now = next
				continue
			}
			c.Stamp(l, now)
			w := now.Add(time.Duration(r.Int64N(int64(margin/2) + 1)))
			if r.IntN(4) == 0 {
				w = now.Add(time.Duration(r.Int64N(int64(3 * time.Second))))
			}
			pending = append(pending, write{at: w, l: l, tokens: tok})
			deliver(now)
			now = now.Add(time.Duration(r.ExpFloat64() * float64(mean)))
		}
		deliver(end.Add(time.Hour))
		for proj, as := range got {
			slices.SortFunc(as, func(a, b acq) int { return a.at.Compare(b.at) })
			checkWindows(t, fmt.Sprintf("run %d (rpm %d tpm %d margin %v) %s", run, rpm, tpm, margin, proj), as, rpm, tpm)
		}
	}
}
