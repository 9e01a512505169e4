package scheduler

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// slowRecords is a Bolt store whose records take 400 ms to write.
type slowRecords struct{ *store.Bolt }

func (s slowRecords) Reserve(ctx context.Context, r store.Record) (int, error) {
	time.Sleep(400 * time.Millisecond)
	return s.Bolt.Reserve(ctx, r)
}

// TestCrossMidnightCharged: a request dispatched 0.5 s before Pacific
// midnight at RPD 2 (margin 250 ms) whose slot moves past midnight, by a
// record that takes 400 ms (stamped 0.1 s before midnight: the slot 0.15 s
// after it) or by a write 2 s late (reported with Lease.Wrote), is counted
// on the new day too, in the Bolt file's count of that day before the
// request leaves or as its late write is reported; with a clean restart in
// between (before midnight for the stamp, after it for the write) as
// without: of two requests submitted 1 s after midnight, one is sent that
// day, the other at the next midnight. Before, both were sent at once: 3
// on a day of RPD 2 for the API when the late one arrived after midnight.
func TestCrossMidnightCharged(t *testing.T) {
	for _, tt := range []struct {
		name    string
		late    string // "stamp" or "write"
		restart bool
	}{
		{"stamp", "stamp", false}, {"stamp restart", "stamp", true},
		{"write", "write", false}, {"write restart", "write", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir() + "/slideshowd.db"
			synctest.Test(t, func(t *testing.T) { testCrossMidnight(t, tt.late, tt.restart, path) })
		})
	}
}

func testCrossMidnight(t *testing.T, late string, restart bool, path string) {
	b, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var st store.Store = b
	if late == "stamp" {
		st = slowRecords{b}
	}
	cfg := Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 2}, WindowMargin: 250 * time.Millisecond}},
		Keys: keys(1), Store: st}
	midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
	oldDay, newDay := bucket.Day(midnight.Add(-time.Second), bucket.Pacific), bucket.Day(midnight, bucket.Pacific)
	var (
		mu   sync.Mutex
		sent []time.Time
	)
	work := func(writeAfter time.Duration) func(context.Context, Lease) error {
		return func(_ context.Context, l Lease) error {
			time.Sleep(writeAfter)
			w := time.Now()
			l.Wrote(w)
			mu.Lock()
			sent = append(sent, w)
			mu.Unlock()
			return nil
		}
	}
	run := func(s *Scheduler, n int, writeAfter time.Duration) {
		runJobs(t, s, slices.Repeat([]func(context.Context, Lease) error{work(writeAfter)}, n)...)
	}
	count := func(day string) int {
		counts, err := b.Daily(context.Background(), day)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range counts {
			n += c.Count
		}
		return n
	}

	s, stop := startStoppable(t, context.Background(), cfg)
	defer func() { stop() }()
	time.Sleep(time.Until(midnight.Add(-500 * time.Millisecond)))
	writeAfter := time.Duration(0)
	if late == "write" {
		writeAfter = 2 * time.Second
	}
	run(s, 1, writeAfter)
	if got := count(newDay); got != 1 {
		t.Fatalf("the stored count of the new day is %d once the late request is sent, want 1", got)
	}
	if restart {
		stop()
		if got := count(oldDay); got != 1 {
			t.Fatalf("the stored count of the old day is %d after a clean stop, want 1", got)
		}
		s, stop = startStoppable(t, context.Background(), cfg)
	}
	time.Sleep(time.Until(midnight.Add(time.Second)))
	mu.Lock()
	first := len(sent)
	mu.Unlock()
	run(s, 2, 0)
	mu.Lock()
	defer mu.Unlock()
	onNew := 0
	for _, at := range sent[first:] {
		if bucket.Day(at, bucket.Pacific) == newDay {
			onNew++
		}
	}
	if onNew != 1 {
		t.Fatalf("sent %v: %d of the two submitted after midnight on the new day %s (RPD 2, the late one charged there), want 1",
			sent, onNew, newDay)
	}
}

// dayCharges is a Memory store that shares its day counts (a dayCharger,
// as store.Redis is): it records each ChargeDay and counts it in the
// Memory store, and counts AddDaily calls.
type dayCharges struct {
	*store.Memory
	mu      sync.Mutex
	charges []string // day/project/class per unit charged
	adds    int
}

func (d *dayCharges) ChargeDay(ctx context.Context, day string, lane store.LaneID, n int) (int, error) {
	d.mu.Lock()
	d.charges = append(d.charges, day+"/"+lane.String())
	d.mu.Unlock()
	return d.Memory.AddDaily(ctx, day, lane, n)
}

func (d *dayCharges) AddDaily(ctx context.Context, day string, lane store.LaneID, n int) (int, error) {
	d.mu.Lock()
	d.adds++
	d.mu.Unlock()
	return d.Memory.AddDaily(ctx, day, lane, n)
}

// TestCrossMidnightSharedStore: with a store that shares its day counts
// (store.Redis), the unit of the new day a late write charges goes through
// its ChargeDay (the cluster's count and its own), once, not AddDaily.
func TestCrossMidnightSharedStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &dayCharges{Memory: store.NewMemory()}
		s, stop := startStoppable(t, context.Background(), Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 2}, WindowMargin: 250 * time.Millisecond}},
			Keys: keys(1), Store: st})
		defer stop()
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		time.Sleep(time.Until(midnight.Add(-500 * time.Millisecond)))
		h, err := s.Submit(context.Background(), Job{Class: "text", Work: func(_ context.Context, l Lease) error {
			time.Sleep(2 * time.Second)
			l.Wrote(time.Now())
			l.Wrote(time.Now().Add(time.Second)) // a second move: no second charge
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		want := bucket.Day(midnight, bucket.Pacific) + "/" + store.LaneID{Project: "key1", Class: "text"}.String()
		if len(st.charges) != 1 || st.charges[0] != want || st.adds != 0 {
			t.Fatalf("ChargeDay calls %v, AddDaily calls %d; want [%s] and 0", st.charges, st.adds, want)
		}
	})
}

// TestMidnightInFlightHeld (gap 1 of the midnight charge): a request
// dispatched 0.5 s before Pacific midnight (RPD 2, margin 250 ms) is still
// being written at midnight; two more are submitted 0.5 s after it, before
// its write is reported. The one in flight holds a provisional unit of the
// new day, so one of the two is sent then. Written late (reported 1.5 s
// after midnight, its slot past it), the unit is confirmed: the other waits
// for the next midnight, and the new day has 2 requests for the API. Written
// in time (no late report), the unit comes back when its work returns and
// the other is sent then. Before, both were sent at once, and the late write
// made 3 arrivals on the new day: a per-day 429.
func TestMidnightInFlightHeld(t *testing.T) {
	for _, late := range []bool{true, false} {
		name := "in time"
		if late {
			name = "late"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testInFlightHeld(t, late) })
		})
	}
}

func testInFlightHeld(t *testing.T, late bool) {
	st := store.NewMemory()
	s, stop := startStoppable(t, context.Background(), Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 2}, WindowMargin: 250 * time.Millisecond}},
		Keys: keys(1), Store: st})
	defer stop()
	midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
	newDay := bucket.Day(midnight, bucket.Pacific)
	var (
		mu   sync.Mutex
		sent []time.Time
	)
	time.Sleep(time.Until(midnight.Add(-500 * time.Millisecond)))
	h, err := s.Submit(context.Background(), Job{Class: "text", Work: func(_ context.Context, l Lease) error {
		time.Sleep(2 * time.Second) // its write ends 1.5 s after midnight
		if late {
			l.Wrote(time.Now())
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(midnight.Add(500 * time.Millisecond)))
	for range 2 {
		if _, err := s.Submit(context.Background(), Job{Class: "text", Work: func(context.Context, Lease) error {
			mu.Lock()
			sent = append(sent, time.Now())
			mu.Unlock()
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(midnight.Add(10 * time.Second)))
	mu.Lock()
	got := slices.Clone(sent)
	mu.Unlock()
	want := 2
	if late {
		want = 1
	}
	if len(got) != want {
		t.Fatalf("sent on the new day %s (RPD 2) by 10 s after midnight: %v; want %d (the request in flight at midnight, written late %v)",
			newDay, got, want, late)
	}
	if len(got) > 0 && got[0].After(midnight.Add(600*time.Millisecond)) {
		t.Fatalf("the first request of the new day sent at %v, want at once (0.5 s after midnight %v)", got[0], midnight)
	}
	counts, err := st.Daily(context.Background(), newDay)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range counts {
		n += c.Count
	}
	if wantN := len(got) + map[bool]int{true: 1}[late]; n < wantN {
		t.Fatalf("the store's count of the new day %d, want at least %d", n, wantN)
	}
}

// failDaily is a Bolt store whose AddDaily of day fails while fail is set
// (a disk error), and counts the calls.
type failDaily struct {
	*store.Bolt
	day  string
	fail atomic.Bool
	n    atomic.Int32
}

func (f *failDaily) AddDaily(ctx context.Context, day string, lane store.LaneID, n int) (int, error) {
	f.n.Add(1)
	if day == f.day && f.fail.Load() {
		return 0, errors.New("bbolt: input/output error (test)")
	}
	return f.Bolt.AddDaily(ctx, day, lane, n)
}

// TestCrossMidnightRecordRetried (gap 2 of the midnight charge): the late
// write's unit of the new day is not written (the data directory's write
// fails); the next record writes it again, or, with no record before it,
// the clean stop does: a restart then starts the new day with it (RPD 2: one
// of two requests sent, not both). Before, it stayed in memory only, and
// the restart sent both: 3 on the new day for the API.
func TestCrossMidnightRecordRetried(t *testing.T) {
	for _, next := range []string{"record", "stop"} {
		t.Run(next, func(t *testing.T) {
			path := t.TempDir() + "/slideshowd.db"
			synctest.Test(t, func(t *testing.T) { testRecordRetried(t, next == "record", path) })
		})
	}
}

func testRecordRetried(t *testing.T, record bool, path string) {
	b, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
	newDay := bucket.Day(midnight, bucket.Pacific)
	st := &failDaily{Bolt: b, day: newDay}
	st.fail.Store(true)
	cfg := Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 3}, WindowMargin: 250 * time.Millisecond}},
		Keys: keys(1), Store: st}
	var sent atomic.Int32
	start := func() (*Scheduler, func()) { return startStoppable(t, context.Background(), cfg) }
	submit := func(s *Scheduler, work func(context.Context, Lease) error) *Handle {
		h, err := s.Submit(context.Background(), Job{Class: "text", Work: work})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	count := func() int {
		counts, err := b.Daily(context.Background(), newDay)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range counts {
			n += c.Count
		}
		return n
	}
	s, stop := start()
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	time.Sleep(time.Until(midnight.Add(-500 * time.Millisecond)))
	h := submit(s, func(_ context.Context, l Lease) error {
		time.Sleep(2 * time.Second)
		l.Wrote(time.Now())
		return nil
	})
	if err := h.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("the new day's stored count %d with its write failing, want 0", n)
	}
	st.fail.Store(false) // the disk is back
	want := 1
	if record {
		// The next request's record writes the unit again first.
		if err := submit(s, func(context.Context, Lease) error { return nil }).Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		want = 2
		if n := count(); n < want {
			t.Fatalf("the new day's stored count %d after the next record, want at least %d (the late write's unit written again)", n, want)
		}
	}
	stop()
	stop = nil
	if n := count(); n != want {
		t.Fatalf("the new day's stored count %d after a clean stop, want %d", n, want)
	}
	s, stop = start()
	var wg sync.WaitGroup
	for range 3 {
		h := submit(s, func(context.Context, Lease) error { sent.Add(1); return nil })
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = h.Wait(ctx)
		})
	}
	wg.Wait()
	if got, wantSent := int(sent.Load()), 3-want; got != wantSent {
		t.Fatalf("after the restart the new day (RPD 3, %d stored) sent %d, want %d", want, got, wantSent)
	}
}
