package bucket

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestMaxChunk(t *testing.T) {
	for _, tc := range []struct {
		l    Limits
		want int
	}{
		{Limits{RPM: 1000, RPD: 10000}, 100}, // text: 1 % of RPD, unchanged
		{Limits{RPM: 20, RPD: 250}, 10},      // image: SlowCovers, 4 % of RPD, RPM/2 (1 % is 2)
		{Limits{RPM: 60, RPD: 5000}, 50},     // 1 % of RPD is more
		{Limits{RPM: 10, RPD: 100}, 4},       // 4 % of RPD
		{Limits{RPM: 2, RPD: 25}, 1},         // RPM/2 is 1
		{Limits{RPM: 1, RPD: 250}, 2},        // RPM/2 is 0: 1 % of RPD
		{Limits{RPM: 1000, RPD: 1000}, 10},   // SlowCovers
		{Limits{RPM: 1, RPD: 1}, 1},
	} {
		if got := MaxChunk(tc.l); got != tc.want {
			t.Errorf("MaxChunk(%+v) = %d, want %d", tc.l, got, tc.want)
		}
		if got := MaxChunk(tc.l); got > max(1, tc.l.RPD/100) && (got > tc.l.RPD/25 || got > SlowCovers || got > tc.l.RPM/2) {
			t.Errorf("MaxChunk(%+v) = %d: above the stated bound", tc.l, got)
		}
	}
}

func TestRecordLife(t *testing.T) {
	for _, tc := range []struct {
		covers int
		pace   time.Duration
		want   time.Duration
	}{
		{10, 0, ChunkLife},                      // pace unknown
		{17, 60 * time.Millisecond, ChunkLife},  // text at 1000 RPM: fast
		{10, 200 * time.Millisecond, ChunkLife}, // 10 paces are ChunkLife: still fast
		{1, 3 * time.Second, ChunkLife},         // one request: nothing to wait for
		{10, 3 * time.Second, 29 * time.Second}, // image at 20 RPM: 27 s + 1.5 s + 0.5 s
		{2, 3 * time.Second, 5 * time.Second},   // 3 s + 1.5 s + 0.5 s
		{10, 10 * time.Second, MaxChunkLife},    // capped
		{3, time.Minute, MaxChunkLife},          // capped
		{2, 300 * time.Millisecond, ChunkLife},  // 0.95 s: at least ChunkLife
		{8, 210 * time.Millisecond, 2075 * time.Millisecond},
	} {
		if got := RecordLife(tc.covers, tc.pace); got != tc.want {
			t.Errorf("RecordLife(%d, %v) = %v, want %v", tc.covers, tc.pace, got, tc.want)
		}
	}
	for _, tc := range []struct {
		pace time.Duration
		want int
	}{
		{3 * time.Second, 10},
		{210 * time.Millisecond, 8},
		{10 * time.Second, 3},
		{20 * time.Second, 1},
		{time.Minute, 1},
	} {
		if got := slowWant(tc.pace); got != tc.want {
			t.Errorf("slowWant(%v) = %d, want %d", tc.pace, got, tc.want)
		}
		if life := RecordLife(slowWant(tc.pace), tc.pace); time.Duration(slowWant(tc.pace)-1)*tc.pace > life-renewLead {
			t.Errorf("pace %v: %d requests do not fit in a life of %v", tc.pace, slowWant(tc.pace), life)
		}
	}
}

// records drives one lane of limits and burst at its full rate for span:
// each Acquire at the time the previous refusal named. It returns the
// leases, in order.
func saturate(t *testing.T, l Limits, burst int, span time.Duration) ([]Lease, []time.Time) {
	t.Helper()
	c := mustPool(t, Config{Classes: []ClassConfig{{Name: "c", Limits: l, Burst: burst, WindowMargin: time.Second}}, Keys: keysN(1)}).Class("c")
	var out []Lease
	var at []time.Time
	now := t0
	for now.Before(t0.Add(span)) {
		ls, ok, next := c.Acquire(now, 0)
		if !ok {
			if next.IsZero() {
				break
			}
			now = next
			continue
		}
		c.Stamp(ls, now)
		out = append(out, ls)
		at = append(at, now)
	}
	// Every lease is acquired at least ChunkLife/4 before its record's
	// Until, and a record lives ChunkLife to MaxChunkLife.
	var until time.Time
	for i, ls := range out {
		if ls.Record {
			until = ls.Until()
			if life := until.Sub(at[i]); life < ChunkLife || life > MaxChunkLife {
				t.Fatalf("lease %d: a record living %v", i, life)
			}
			if ls.Chunk > MaxChunk(l) {
				t.Fatalf("lease %d: chunk %d above MaxChunk %d", i, ls.Chunk, MaxChunk(l))
			}
		}
		if until.Sub(at[i]) < renewLead {
			t.Fatalf("lease %d acquired %v before its record's Until", i, until.Sub(at[i]))
		}
	}
	return out, at
}

// perRecord is the leases per record after the first minute (the lane's
// pace known).
func perRecord(ls []Lease, from int) float64 {
	recs := 0
	for _, l := range ls[from:] {
		if l.Record {
			recs++
		}
	}
	return float64(len(ls)-from) / float64(max(recs, 1))
}

// TestSlowLaneRecordsCoverSeveral: a paced image lane (20 RPM, 250 RPD,
// burst 1: a request every 3 s) records once for about SlowCovers
// requests (before records followed the lane's pace: once per request, a
// record of 2 s covering 1), and the same lane at the default burst (20 at
// each minute mark) at least once per 4; a text lane at full rate keeps a
// second of traffic per record and records living ChunkLife.
func TestSlowLaneRecordsCoverSeveral(t *testing.T) {
	image := Limits{RPM: 20, RPD: 250}
	paced, _ := saturate(t, image, 1, 10*time.Minute)
	if got := perRecord(paced, 20); got < 8 {
		t.Errorf("paced image lane: %.2f requests per record, want >= 8", got)
	}
	for _, l := range paced[20:] {
		if l.Record && l.Chunk > 0 && l.Covers < 8 {
			t.Errorf("paced image lane: a record of %d new units covers %d requests, want >= 8", l.Chunk, l.Covers)
		}
	}
	t.Logf("paced image lane: %d requests, %.2f a record", len(paced), perRecord(paced, 20))
	burst, _ := saturate(t, image, 0, 10*time.Minute)
	if got := perRecord(burst, 20); got < 4 {
		t.Errorf("image lane, default burst: %.2f requests per record, want >= 4", got)
	}
	t.Logf("image lane, default burst: %d requests, %.2f a record", len(burst), perRecord(burst, 20))

	text := Limits{RPM: 1000, RPD: 10000}
	ls, at := saturate(t, text, 1, 3*time.Minute)
	secondOfTraffic := text.RPM/60 + 2
	for i, l := range ls {
		if !l.Record {
			continue
		}
		if life := l.Until().Sub(at[i]); life != ChunkLife {
			t.Fatalf("text lease %d: a record living %v, want ChunkLife", i, life)
		}
		if l.Chunk > secondOfTraffic {
			t.Fatalf("text lease %d: a chunk of %d, more than a second of traffic (%d)", i, l.Chunk, secondOfTraffic)
		}
	}
	if got := perRecord(ls, 1000); got < 15 || got > 20 {
		t.Errorf("text lane: %.2f requests per record, want about a second of traffic (16.7)", got)
	}
}

// TestSlowLaneRandomPace: at random paces, fast and slow, changing, every
// lease is covered: acquired at least ChunkLife/4 before its record's Until,
// its record's units never fewer than the requests, chunks at most MaxChunk.
func TestSlowLaneRandomPace(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 17))
	l := Limits{RPM: 20, RPD: 250}
	c := mustPool(t, Config{Classes: []ClassConfig{{Name: "c", Limits: l}}, Keys: keysN(1)}).Class("c")
	now := t0
	var until time.Time
	reserved, used := 0, 0
	gaps := []time.Duration{0, 50 * time.Millisecond, time.Second, 3 * time.Second, 7 * time.Second, 40 * time.Second}
	gap := gaps[0]
	for range 3000 {
		if rng.IntN(10) == 0 {
			gap = gaps[rng.IntN(len(gaps))]
		}
		now = now.Add(gap + time.Duration(rng.IntN(300))*time.Millisecond)
		ls, ok, _ := c.Acquire(now, 0)
		if !ok {
			continue
		}
		used++
		if ls.Record {
			until = ls.Until()
			reserved += ls.Chunk
			if ls.Chunk > MaxChunk(l) {
				t.Fatalf("chunk %d above MaxChunk", ls.Chunk)
			}
			if life := until.Sub(now); life < ChunkLife || life > MaxChunkLife {
				t.Fatalf("a record living %v", life)
			}
		}
		if until.Sub(now) < renewLead {
			t.Fatalf("a lease acquired %v before its record's Until", until.Sub(now))
		}
		if reserved < used {
			t.Fatalf("%d used, %d reserved", used, reserved)
		}
		if ls.Day != Day(now, Pacific) {
			t.Fatalf("day %s", ls.Day)
		}
		if rng.IntN(20) == 0 {
			c.Refund(ls, now)
			used--
		}
	}
}

// TestChunkWithinSharedDay: once SharedDay was called, a new chunk asks for
// no more than the cluster had left at the lane's last count (a grant
// beyond it is refused whole), at least 1.
func TestChunkWithinSharedDay(t *testing.T) {
	l := Limits{RPM: 20, RPD: 250}
	c := mustPool(t, Config{Classes: []ClassConfig{{Name: "c", Limits: l, Burst: 1}}, Keys: keysN(1)}).Class("c")
	now := t0
	for range 4 { // a request every 3 s: a slow lane, chunks of 10
		ls, ok, next := c.Acquire(now, 0)
		if !ok {
			now = next
			ls, _, _ = c.Acquire(now, 0)
		}
		now = now.Add(3 * time.Second)
		_ = ls
	}
	c.SharedDay("key1", Day(now, Pacific), 247, now)
	var chunks []int
	for len(chunks) < 3 {
		ls, ok, next := c.Acquire(now, 0)
		if !ok {
			now = next
			continue
		}
		if ls.Chunk > 0 {
			chunks = append(chunks, ls.Chunk)
			c.SharedDay("key1", ls.Day, 250, now) // the grant's count: the day is full
		}
		now = now.Add(3 * time.Second)
	}
	if chunks[0] != 3 || chunks[1] != 1 || chunks[2] != 1 {
		t.Errorf("chunks %v with the shared day at 247 then 250 of 250: want 3, then 1", chunks)
	}
}

// TestSlowLaneDemand: a paced image lane told its demand (AcquireFor: the
// jobs waiting, this one included) reserves no unit beyond it: 25 jobs,
// 25 units, where the demand unknown reserves whole chunks of 10.
func TestSlowLaneDemand(t *testing.T) {
	for _, known := range []bool{true, false} {
		c := mustPool(t, Config{Classes: []ClassConfig{{Name: "c", Limits: Limits{RPM: 20, RPD: 250}, Burst: 1}}, Keys: keysN(1)}).Class("c")
		now, reserved, covers := t0, 0, 0
		for left := 25; left > 0; {
			demand := 0
			if known {
				demand = left
			}
			l, ok, next := c.AcquireFor(now, 0, demand)
			if !ok {
				now = next
				continue
			}
			left--
			reserved += l.Chunk
			covers = max(covers, l.Covers)
			now = now.Add(3 * time.Second)
		}
		if known && reserved != 25 {
			t.Errorf("demand known: %d units reserved for 25 jobs, want 25", reserved)
		}
		if !known && reserved <= 25 {
			t.Errorf("demand unknown: %d units reserved for 25 jobs, want whole chunks (more)", reserved)
		}
		if covers < 8 {
			t.Errorf("demand known %v: records covered at most %d requests, want >= 8", known, covers)
		}
	}
}
