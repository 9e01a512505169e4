package scheduler

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// TestSlowLaneKilled: a paced image lane (20 RPM, 250 RPD, burst 1: a
// request every 3 s) records once for about 10 requests, its records
// living up to bucket.MaxChunkLife. A process killed with such a record in
// hand, then a new one on the same store (at once, or 40 s later): the
// stored day count is at least what was sent and at most one chunk
// (bucket.MaxChunk, 10) more; no 60 s window of both holds more than RPM;
// and the new process is back at full rate at most 60 s plus the margin
// after the earlier of the last record's Until and the restart (the bound
// the README states: a longer life keeps the lane's covered slots counted
// longer, never more than bucket.MaxChunkLife more).
func TestSlowLaneKilled(t *testing.T) {
	for _, later := range []time.Duration{0, 40 * time.Second} {
		t.Run(fmt.Sprint("restart after ", later), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { slowLaneKilled(t, later) })
		})
	}
}

func slowLaneKilled(t *testing.T, later time.Duration) {
	const rpm, rpd, margin = 20, 250, time.Second
	classes := []ClassConfig{{Name: "image", Limits: bucket.Limits{RPM: rpm, RPD: rpd}, Burst: 1, Concurrency: 4, WindowMargin: margin}}
	ks := []bucket.Key{{ID: "k1", Project: "p1"}}
	lane := store.LaneID{Project: "p1", Class: "image"}
	mem := store.NewMemory()
	var mu sync.Mutex
	var sends []time.Time
	run := func(st store.Store, dead *atomic.Bool, n int) (stop func()) {
		s, err := New(Config{Classes: classes, Keys: ks, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for range n {
			if _, err := s.Submit(ctx, Job{Class: "image", Work: func(ctx context.Context, _ Lease) error {
				if dead.Load() {
					return NotSent(errKilled)
				}
				mu.Lock()
				sends = append(sends, time.Now())
				mu.Unlock()
				return nil
			}}); err != nil {
				t.Fatal(err)
			}
		}
		return func() {
			cancel()
			<-done
		}
	}
	st1 := &crashable{Memory: mem}
	var dead1 atomic.Bool
	stop1 := run(st1, &dead1, 200)
	time.Sleep(95*time.Second + 500*time.Millisecond) // the virtual clock: the scenario
	st1.dead.Store(true)
	dead1.Store(true)
	killed := time.Now()
	stop1()
	mu.Lock()
	sent1 := len(sends)
	mu.Unlock()

	recs, err := mem.LedgerRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var last store.Record
	units := 0
	for _, r := range recs.Records {
		if r.Lane != lane {
			continue
		}
		if life := r.Until.Sub(r.At); life < bucket.ChunkLife || life > bucket.MaxChunkLife {
			t.Errorf("a record living %v", life)
		}
		if r.At.Sub(recs.Records[0].At) > time.Minute && r.Units > 0 && r.Covers < 8 {
			t.Errorf("a record of %d new units covering %d requests after the first minute, want >= 8", r.Units, r.Covers)
		}
		units += r.Units
		last = r
	}
	t.Logf("killed after %d sends, %d records; the last one %v..%v covering %d", sent1, len(recs.Records), last.At.Sub(killed), last.Until.Sub(killed), last.Covers)
	if units < sent1 || units > sent1+bucket.MaxChunk(classes[0].Limits) {
		t.Errorf("%d units recorded for %d sent: want at least those sent and at most one chunk (%d) more", units, sent1, bucket.MaxChunk(classes[0].Limits))
	}

	time.Sleep(later)
	restart := time.Now()
	var dead2 atomic.Bool
	stop2 := run(mem, &dead2, 200)
	time.Sleep(3 * time.Minute)
	stop2()

	mu.Lock()
	defer mu.Unlock()
	for i, s := range sends {
		n := 0
		for _, u := range sends[i:] {
			if u.Sub(s) < time.Minute {
				n++
			}
		}
		if n > rpm {
			t.Fatalf("%d sends in the 60 s from %v after the kill: RPM %d", n, s.Sub(killed), rpm)
		}
	}
	// Full rate again (a send every 3 s: 20 in a minute, less one for
	// where the pacing falls) from 60 s plus the margin after the earlier
	// of the last record's Until and the restart.
	back := restart
	if last.Until.Before(back) {
		back = last.Until
	}
	back = back.Add(time.Minute + margin)
	n := 0
	for _, s := range sends[sent1:] {
		if !s.Before(back) && s.Before(back.Add(time.Minute)) {
			n++
		}
	}
	t.Logf("the new process's first send %v after its start; %d in the minute from %v after it", sends[sent1].Sub(restart), n, back.Sub(restart))
	if n < rpm-1 {
		t.Errorf("%d sends in the minute from %v after the restart, want full rate (>= %d)", n, back.Sub(restart), rpm-1)
	}
	if back.Sub(last.At) > time.Minute+margin+bucket.MaxChunkLife {
		t.Errorf("back at full rate %v after the last record: more than 60 s + margin + MaxChunkLife", back.Sub(last.At))
	}
}
