package store

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStampClose: a stamp is in its grant's settlement exactly when stamp
// reported it taken, however it races with the grant's close (the
// lock-free stamping of Stamped; run it with -race), with trims and updates
// in between: a closed grant's stamps are the Covers latest of those it
// took (it keeps them all while they fit), and update reports the close.
func TestStampClose(t *testing.T) {
	const stamps = 2000 // more than 2 × Covers + 8: trims too
	for _, covers := range []int{3, 1000} {
		t.Run(fmt.Sprintf("covers=%d", covers), func(t *testing.T) {
			mid := 0 // rounds closed while the caller was stamping
			for round := range 100 {
				g := &laneGrant{covers: covers}
				g.newStamps()
				var took []int64
				var done atomic.Int64 // stamps taken
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { // the lane's one caller
					defer wg.Done()
					for ms := int64(1); ms <= stamps; ms++ {
						if !g.stamp(ms) {
							return
						}
						took = append(took, ms)
						done.Add(1)
						if ms%16 == 0 {
							runtime.Gosched() // let the close in
						}
					}
				}()
				go func() { // a re-stamp: values changed, not their number
					defer wg.Done()
					for g.update(func(st []int64) {
						for i := range st {
							st[i] += 0
						}
					}) {
						runtime.Gosched()
					}
				}()
				for done.Load() < int64(10*round) { // the close comes later each round
					runtime.Gosched()
				}
				g.close()
				wg.Wait()
				if 0 < len(took) && len(took) < stamps {
					mid++
				}
				got := slices.Clone(g.stamps)
				slices.Sort(got)
				want := took[max(0, len(took)-covers):]
				if len(got) > covers {
					got = got[len(got)-covers:]
				}
				if !slices.Equal(got, want) {
					t.Fatalf("round %d: closed with %d stamps taken: kept %v, want the latest %d of them %v", round, len(took), got, covers, want)
				}
				if g.stamp(1000) || g.update(func([]int64) { t.Error("update ran after close") }) {
					t.Fatalf("round %d: a closed grant took a stamp or an update", round)
				}
			}
			t.Logf("%d of 100 rounds closed while the caller was stamping", mid)
		})
	}
}

// TestStampedLanes: Stamped finds a lane's grant by the lane's text,
// whatever strings hold it (a copy of the text, not only the scheduler's
// strings that the index hashes), and for more lanes than the index holds
// (stampSlots/2): every lane's grant gets its own stamps, all of them.
func TestStampedLanes(t *testing.T) {
	s := &Redis{cur: make(map[LaneID]*laneStamps), stampIdx: new([stampSlots]laneStamps)}
	const n = stampSlots // twice what the index holds
	lanes := make([]LaneID, n)
	for i := range lanes {
		lanes[i] = LaneID{Project: fmt.Sprintf("p%d", i), Class: "text"}
		// Its slots' score far after every stamp here (a stamp after it
		// is late: Stamped adds a slot of its own in Redis).
		g := &laneGrant{covers: 10, score: 1 << 40}
		g.newStamps()
		s.setGrant(lanes[i], g)
	}
	at := func(ms int64) time.Time { return time.UnixMilli(1000 + ms) }
	for round := range 3 {
		for i, l := range lanes {
			if round == 1 { // another copy of the same text
				l = LaneID{Project: strings.Clone(l.Project), Class: strings.Clone(l.Class)}
			}
			s.Stamped(l, at(int64(i*10+round)))
		}
	}
	if s.stampIdxN != stampSlots/2 {
		t.Errorf("index: %d entries, want %d (half full, then no more)", s.stampIdxN, stampSlots/2)
	}
	for i, l := range lanes {
		g := s.takeGrant(l)
		want := []int64{int64(1000 + i*10), int64(1000 + i*10 + 1), int64(1000 + i*10 + 2)}
		if g == nil || !slices.Equal(g.stamps, want) {
			t.Fatalf("lane %v: grant %v, want stamps %v", l, g, want)
		}
	}
	if g := s.takeGrant(lanes[0]); g != nil {
		t.Errorf("a taken grant is still the lane's: %v", g)
	}
}

// TestStampNoRoom: a grant made without its room for stamps (newStamps)
// makes it at its first stamp rather than spinning or losing the stamp.
func TestStampNoRoom(t *testing.T) {
	g := &laneGrant{covers: 2}
	for ms := int64(1); ms <= 20; ms++ {
		if !g.stamp(ms) {
			t.Fatalf("stamp %d: refused by an open grant", ms)
		}
	}
	g.close()
	got := slices.Clone(g.stamps)
	slices.Sort(got)
	if got = got[max(0, len(got)-2):]; !slices.Equal(got, []int64{19, 20}) {
		t.Errorf("the 2 latest of 20 stamps: %v, want [19 20]", got)
	}
}
