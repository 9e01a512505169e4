package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// opener opens a fresh, empty store with opts and closes it at the end of the test.
type opener func(t *testing.T, opts store.Options) store.Store

func openMemory(t *testing.T, opts store.Options) store.Store {
	t.Helper()
	m := store.NewMemory(opts)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func openBolt(t *testing.T, opts store.Options) store.Store {
	t.Helper()
	b, err := store.Open(filepath.Join(t.TempDir(), "slideshowd.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestMemory(t *testing.T) { runStoreSuite(t, openMemory) }
func TestBolt(t *testing.T)   { runStoreSuite(t, openBolt) }

// TestMemoryZeroValue runs the suite on a zero Memory where the defaults apply.
func TestMemoryZeroValue(t *testing.T) {
	runStoreSuite(t, func(t *testing.T, opts store.Options) store.Store {
		if opts != (store.Options{}) {
			return openMemory(t, opts)
		}
		return new(store.Memory)
	})
}

// runStoreSuite is the conformance suite every Store implementation passes.
func runStoreSuite(t *testing.T, open opener) {
	t.Run("AddDailySums", func(t *testing.T) { testAddDailySums(t, open) })
	t.Run("AddDailyInvalid", func(t *testing.T) { testAddDailyInvalid(t, open) })
	t.Run("AddDailyOverflow", func(t *testing.T) { testAddDailyOverflow(t, open) })
	t.Run("AddDailyConcurrent", func(t *testing.T) { testAddDailyConcurrent(t, open) })
	t.Run("History", func(t *testing.T) { testHistory(t, open) })
	t.Run("LaneStates", func(t *testing.T) { testLaneStates(t, open) })
	t.Run("DisabledKeys", func(t *testing.T) { testDisabledKeys(t, open) })
	t.Run("Jobs", func(t *testing.T) { testJobs(t, open) })
	t.Run("JobsIteration", func(t *testing.T) { testJobsIteration(t, open) })
	t.Run("InvalidIDs", func(t *testing.T) { testInvalidIDs(t, open) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, open) })
	t.Run("ContextDone", func(t *testing.T) { testContextDone(t, open) })
}

var (
	textA  = store.LaneID{Project: "proj-a", Class: "text"}
	imageA = store.LaneID{Project: "proj-a", Class: "image"}
	textB  = store.LaneID{Project: "proj-b", Class: "text"}
)

func mustAdd(t *testing.T, s store.Store, day string, lane store.LaneID, n int) int {
	t.Helper()
	got, err := s.AddDaily(t.Context(), day, lane, n)
	if err != nil {
		t.Fatalf("AddDaily(%s, %v, %d): %v", day, lane, n, err)
	}
	return got
}

func mustDaily(t *testing.T, s store.Store, day string) []store.DailyCount {
	t.Helper()
	got, err := s.Daily(t.Context(), day)
	if err != nil {
		t.Fatalf("Daily(%s): %v", day, err)
	}
	return got
}

func mustHistory(t *testing.T, s store.Store) []store.DailyCount {
	t.Helper()
	got, err := s.History(t.Context())
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	return got
}

// day returns the date n days after 2026-03-01 in DayFormat.
func day(n int) string {
	return time.Date(2026, 3, 1+n, 0, 0, 0, 0, time.UTC).Format(store.DayFormat)
}

// days returns the distinct days of counts, in order.
func days(counts []store.DailyCount) []string {
	var out []string
	for _, c := range counts {
		if len(out) == 0 || out[len(out)-1] != c.Day {
			out = append(out, c.Day)
		}
	}
	return out
}

func dayRange(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, day(i))
	}
	return out
}

func testAddDailySums(t *testing.T, open opener) {
	s := open(t, store.Options{})
	steps := []struct {
		day  string
		lane store.LaneID
		n    int
		want int
	}{
		{day(0), textB, 5, 5},
		{day(0), textA, 1, 1},
		{day(0), textA, 10, 11},
		{day(0), imageA, 3, 3}, // same project, other class: its own lane
		{day(1), textA, 2, 2},  // other day: its own counter
		{day(0), textA, 1, 12},
	}
	for _, st := range steps {
		if got := mustAdd(t, s, st.day, st.lane, st.n); got != st.want {
			t.Fatalf("AddDaily(%s, %v, %d) = %d, want %d", st.day, st.lane, st.n, got, st.want)
		}
	}
	want := []store.DailyCount{
		{Day: day(0), Lane: imageA, Count: 3},
		{Day: day(0), Lane: textA, Count: 12},
		{Day: day(0), Lane: textB, Count: 5},
	}
	if got := mustDaily(t, s, day(0)); !slices.Equal(got, want) {
		t.Errorf("Daily(%s) = %v, want %v", day(0), got, want)
	}
	if got := mustDaily(t, s, day(5)); len(got) != 0 {
		t.Errorf("Daily of a day never counted = %v, want none", got)
	}
	wantHist := append(slices.Clone(want), store.DailyCount{Day: day(1), Lane: textA, Count: 2})
	if got := mustHistory(t, s); !slices.Equal(got, wantHist) {
		t.Errorf("History = %v, want %v", got, wantHist)
	}
}

func testAddDailyInvalid(t *testing.T, open opener) {
	s := open(t, store.Options{})
	long := strings.Repeat("p", store.MaxIDLen+1)
	tests := []struct {
		name      string
		day       string
		lane      store.LaneID
		n         int
		wantField string
		wantValue string
	}{
		{"empty day", "", textA, 1, "day", `""`},
		{"short month", "2026-3-01", textA, 1, "day", `"2026-3-01"`},
		{"no dashes", "20260301", textA, 1, "day", `"20260301"`},
		{"February 30", "2026-02-30", textA, 1, "day", `"2026-02-30"`},
		{"month 13", "2026-13-01", textA, 1, "day", `"2026-13-01"`},
		{"year zero", "0000-01-01", textA, 1, "day", `"0000-01-01"`},
		{"trailing text", "2026-03-01x", textA, 1, "day", `"2026-03-01x"`},
		{"leading space", " 2026-03-01", textA, 1, "day", `" 2026-03-01"`},
		{"timestamp", "2026-03-01T00:00:00Z", textA, 1, "day", `"2026-03-01T00:00:00Z"`},
		{"empty project", day(0), store.LaneID{Class: "text"}, 1, "lane.Project", `""`},
		{"empty class", day(0), store.LaneID{Project: "p"}, 1, "lane.Class", `""`},
		{"long project", day(0), store.LaneID{Project: long, Class: "text"}, 1, "lane.Project", `"ppp`},
		{"zero n", day(0), textA, 0, "n", "0"},
		{"negative n", day(0), textA, -3, "n", "-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.AddDaily(t.Context(), tt.day, tt.lane, tt.n)
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("AddDaily(%q, %v, %d) = %v, want ErrInvalid", tt.day, tt.lane, tt.n, err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.wantField+": "+tt.wantValue) {
				t.Errorf("error %q does not name field %s and value %s", msg, tt.wantField, tt.wantValue)
			}
			if tt.day != day(0) {
				if _, err := s.Daily(t.Context(), tt.day); !errors.Is(err, store.ErrInvalid) {
					t.Errorf("Daily(%q) = %v, want ErrInvalid", tt.day, err)
				}
			}
		})
	}
	if got := mustHistory(t, s); len(got) != 0 {
		t.Errorf("invalid calls left counts: %v", got)
	}
}

func testAddDailyOverflow(t *testing.T, open opener) {
	s := open(t, store.Options{})
	mustAdd(t, s, day(0), textA, math.MaxInt-1)
	if _, err := s.AddDaily(t.Context(), day(0), textA, 2); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("AddDaily past MaxInt = %v, want ErrInvalid", err)
	}
	if got := mustAdd(t, s, day(0), textA, 1); got != math.MaxInt {
		t.Fatalf("AddDaily to MaxInt = %d, want %d", got, math.MaxInt)
	}
}

// testAddDailyConcurrent adds 1 from many goroutines: every total must be
// returned exactly once per lane and the final counts must be exact.
func testAddDailyConcurrent(t *testing.T, open opener) {
	s := open(t, store.Options{})
	const goroutines, perGoroutine = 12, 25
	lanes := []store.LaneID{textA, imageA, textB}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		returned = make(map[store.LaneID][]int)
		errs     = make(chan error, goroutines)
	)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				lane := lanes[(g+i)%len(lanes)]
				total, err := s.AddDaily(t.Context(), day(0), lane, 1)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				returned[lane] = append(returned[lane], total)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sum := 0
	for _, c := range mustDaily(t, s, day(0)) {
		got := slices.Sorted(slices.Values(returned[c.Lane]))
		if len(got) != c.Count {
			t.Errorf("lane %v: count %d, but %d adds", c.Lane, c.Count, len(got))
		}
		for i, v := range got {
			if v != i+1 {
				t.Errorf("lane %v: totals returned %v, want 1..%d each once", c.Lane, got, c.Count)
				break
			}
		}
		sum += c.Count
	}
	if sum != goroutines*perGoroutine {
		t.Errorf("sum of counts = %d, want %d", sum, goroutines*perGoroutine)
	}
}

func testHistory(t *testing.T, open opener) {
	type add struct {
		day     int
		wantErr error
	}
	tests := []struct {
		name     string
		history  int
		adds     []add
		wantDays []string
	}{
		{
			name: "default keeps 7 days",
			adds: []add{{0, nil}, {1, nil}, {2, nil}, {3, nil}, {4, nil}, {5, nil}, {6, nil}, {7, nil}, {8, nil}, {9, nil}},
			// newest is day 9: days 3..9 are kept.
			wantDays: dayRange(3, 9),
		},
		{
			name:     "exactly 7 days: nothing deleted",
			adds:     []add{{0, nil}, {6, nil}},
			wantDays: []string{day(0), day(6)},
		},
		{
			name:     "a gap deletes every day out of the window",
			adds:     []add{{0, nil}, {1, nil}, {30, nil}},
			wantDays: []string{day(30)},
		},
		{
			name:     "window is calendar days, not days with counts",
			adds:     []add{{0, nil}, {5, nil}, {7, nil}},
			wantDays: []string{day(5), day(7)},
		},
		{
			name:     "older day inside the window is accepted, outside is ErrTooOld",
			adds:     []add{{10, nil}, {4, nil}, {3, store.ErrTooOld}, {-20, store.ErrTooOld}, {9, nil}},
			wantDays: []string{day(4), day(9), day(10)},
		},
		{
			name:     "configured 3 days",
			history:  3,
			adds:     []add{{0, nil}, {1, nil}, {2, nil}, {3, nil}, {0, store.ErrTooOld}, {1, nil}},
			wantDays: dayRange(1, 3),
		},
		{
			name:     "two days, the fewest",
			history:  2,
			adds:     []add{{0, nil}, {1, nil}, {2, nil}, {0, store.ErrTooOld}, {1, nil}},
			wantDays: []string{day(1), day(2)},
		},
		{
			name: "across a year boundary",
			// day(-59) is 2026-01-01; day(-52), 2026-01-08, keeps 01-02..01-08.
			adds:     []add{{-65, nil}, {-62, nil}, {-59, nil}, {-53, nil}, {-52, nil}, {-59, store.ErrTooOld}},
			wantDays: []string{"2026-01-07", "2026-01-08"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, store.Options{History: tt.history})
			counts := make(map[string]int)
			for _, a := range tt.adds {
				_, err := s.AddDaily(t.Context(), day(a.day), textA, 1)
				if !errors.Is(err, a.wantErr) || (err != nil) != (a.wantErr != nil) {
					t.Fatalf("AddDaily(%s) = %v, want %v", day(a.day), err, a.wantErr)
				}
				if err == nil {
					counts[day(a.day)]++
				}
			}
			hist := mustHistory(t, s)
			if got := days(hist); !slices.Equal(got, tt.wantDays) {
				t.Fatalf("History days = %v, want %v", got, tt.wantDays)
			}
			for _, c := range hist {
				if c.Count != counts[c.Day] {
					t.Errorf("History %s count %d, want %d", c.Day, c.Count, counts[c.Day])
				}
			}
			for d := range counts {
				if got := mustDaily(t, s, d); len(got) > 0 != slices.Contains(tt.wantDays, d) {
					t.Errorf("Daily(%s) = %v, kept days %v", d, got, tt.wantDays)
				}
			}
		})
	}
}

func equalTime(a, b time.Time) bool { return a.Equal(b) }

func equalLaneStates(a, b []store.LaneState) bool {
	return slices.EqualFunc(a, b, func(x, y store.LaneState) bool {
		return x.Lane == y.Lane && equalTime(x.CoolUntil, y.CoolUntil) && equalTime(x.ExhaustedUntil, y.ExhaustedUntil) &&
			x.Stopped == y.Stopped && x.Config == y.Config
	})
}

func equalDisabled(a, b []store.DisabledKey) bool {
	return slices.EqualFunc(a, b, func(x, y store.DisabledKey) bool {
		return x.KeyID == y.KeyID && x.Reason == y.Reason && equalTime(x.At, y.At) && x.Fingerprint == y.Fingerprint
	})
}

func equalJobs(a, b []store.JobRecord) bool {
	return slices.EqualFunc(a, b, func(x, y store.JobRecord) bool {
		return x.ID == y.ID && string(x.Data) == string(y.Data)
	})
}

func mustLaneStates(t *testing.T, s store.Store) []store.LaneState {
	t.Helper()
	got, err := s.LaneStates(t.Context())
	if err != nil {
		t.Fatalf("LaneStates: %v", err)
	}
	return got
}

func testLaneStates(t *testing.T, open opener) {
	s := open(t, store.Options{})
	la := mustLocation(t, "America/Los_Angeles")
	now := time.Now() // carries a monotonic reading, which is not stored
	midnight := time.Date(2026, 3, 9, 0, 0, 0, 0, la)
	steps := []struct {
		name string
		set  store.LaneState
		want []store.LaneState
	}{
		{
			name: "cooling",
			set:  store.LaneState{Lane: textA, CoolUntil: now.Add(7967587226 * time.Nanosecond)},
			want: []store.LaneState{{Lane: textA, CoolUntil: now.Add(7967587226 * time.Nanosecond)}},
		},
		{
			name: "exhausted, other lane",
			set:  store.LaneState{Lane: imageA, ExhaustedUntil: midnight},
			want: []store.LaneState{
				{Lane: imageA, ExhaustedUntil: midnight},
				{Lane: textA, CoolUntil: now.Add(7967587226 * time.Nanosecond)},
			},
		},
		{
			name: "replace with both set",
			set:  store.LaneState{Lane: textA, CoolUntil: now, ExhaustedUntil: midnight},
			want: []store.LaneState{
				{Lane: imageA, ExhaustedUntil: midnight},
				{Lane: textA, CoolUntil: now, ExhaustedUntil: midnight},
			},
		},
		{
			name: "zero state removes",
			set:  store.LaneState{Lane: imageA},
			want: []store.LaneState{{Lane: textA, CoolUntil: now, ExhaustedUntil: midnight}},
		},
		{
			name: "removing a missing lane is fine",
			set:  store.LaneState{Lane: textB},
			want: []store.LaneState{{Lane: textA, CoolUntil: now, ExhaustedUntil: midnight}},
		},
		{
			name: "stopped, no times",
			set:  store.LaneState{Lane: imageA, Stopped: "no quota on this model", Config: "rpm=20 rpd=250"},
			want: []store.LaneState{
				{Lane: imageA, Stopped: "no quota on this model", Config: "rpm=20 rpd=250"},
				{Lane: textA, CoolUntil: now, ExhaustedUntil: midnight},
			},
		},
		{
			name: "stopped and cooling, empty config",
			set:  store.LaneState{Lane: imageA, CoolUntil: now, Stopped: "stopped"},
			want: []store.LaneState{
				{Lane: imageA, CoolUntil: now, Stopped: "stopped"},
				{Lane: textA, CoolUntil: now, ExhaustedUntil: midnight},
			},
		},
		{
			name: "resumed removes",
			set:  store.LaneState{Lane: imageA, Config: "x"},
			want: []store.LaneState{{Lane: textA, CoolUntil: now, ExhaustedUntil: midnight}},
		},
	}
	for _, st := range steps {
		if err := s.SetLaneState(t.Context(), st.set); err != nil {
			t.Fatalf("%s: SetLaneState: %v", st.name, err)
		}
		got := mustLaneStates(t, s)
		if !equalLaneStates(got, st.want) {
			t.Fatalf("%s: LaneStates = %v, want %v", st.name, got, st.want)
		}
		for _, g := range got {
			for _, tm := range []time.Time{g.CoolUntil, g.ExhaustedUntil} {
				if tm.Location() != time.UTC {
					t.Errorf("%s: time %v not in UTC", st.name, tm)
				}
			}
		}
	}
}

func mustLocation(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		// No tz database on this machine: a fixed zone is as good here.
		return time.FixedZone(name, -8*3600)
	}
	return loc
}

func mustDisabled(t *testing.T, s store.Store) []store.DisabledKey {
	t.Helper()
	got, err := s.DisabledKeys(t.Context())
	if err != nil {
		t.Fatalf("DisabledKeys: %v", err)
	}
	return got
}

func testDisabledKeys(t *testing.T, open opener) {
	s := open(t, store.Options{})
	at := time.Date(2026, 3, 8, 10, 30, 0, 123456789, time.FixedZone("X", 5*3600+1800))
	ctx := t.Context()
	if got := mustDisabled(t, s); len(got) != 0 {
		t.Fatalf("DisabledKeys of an empty store = %v", got)
	}
	if err := s.DisableKey(ctx, store.DisabledKey{KeyID: "key-2", Reason: "API key expired", At: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableKey(ctx, store.DisabledKey{KeyID: "key-1", Reason: "leaked", At: at.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableKey(ctx, store.DisabledKey{KeyID: "key-3"}); err != nil { // no reason, no time
		t.Fatal(err)
	}
	want := []store.DisabledKey{
		{KeyID: "key-1", Reason: "leaked", At: at.Add(time.Hour)},
		{KeyID: "key-2", Reason: "API key expired", At: at},
		{KeyID: "key-3"},
	}
	if got := mustDisabled(t, s); !equalDisabled(got, want) {
		t.Fatalf("DisabledKeys = %v, want %v", got, want)
	}
	// Disabling again replaces the mark; a fingerprint of the secret is kept
	// (a reason of any bytes after it).
	if err := s.DisableKey(ctx, store.DisabledKey{KeyID: "key-2", Reason: "invalid\x00\x02", At: at.Add(2 * time.Hour), Fingerprint: "hmac-sha256:0123abcd"}); err != nil {
		t.Fatal(err)
	}
	want[1] = store.DisabledKey{KeyID: "key-2", Reason: "invalid\x00\x02", At: at.Add(2 * time.Hour), Fingerprint: "hmac-sha256:0123abcd"}
	if got := mustDisabled(t, s); !equalDisabled(got, want) {
		t.Fatalf("after replace: DisabledKeys = %v, want %v", got, want)
	}
	for _, id := range []string{"key-1", "key-1", "never-disabled"} {
		if err := s.EnableKey(ctx, id); err != nil {
			t.Fatalf("EnableKey(%s): %v", id, err)
		}
	}
	if got := mustDisabled(t, s); !equalDisabled(got, want[1:]) {
		t.Fatalf("after enable: DisabledKeys = %v, want %v", got, want[1:])
	}
}

func allJobs(t *testing.T, s store.Store) []store.JobRecord {
	t.Helper()
	var out []store.JobRecord
	if err := s.Jobs(t.Context(), func(j store.JobRecord) bool {
		out = append(out, j)
		return true
	}); err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	return out
}

func testJobs(t *testing.T, open opener) {
	s := open(t, store.Options{})
	ctx := t.Context()
	if _, err := s.Job(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Job(missing) = %v, want ErrNotFound", err)
	}
	data := []byte(`{"state":"queued"}`)
	for _, j := range []store.JobRecord{{ID: "b", Data: data}, {ID: "a", Data: []byte("1")}, {ID: "c"}, {ID: "d", Data: []byte{}}} {
		if err := s.PutJob(ctx, j); err != nil {
			t.Fatalf("PutJob(%s): %v", j.ID, err)
		}
	}
	data[2] = 'X' // the store keeps its own copy
	got, err := s.Job(ctx, "b")
	if err != nil || string(got.Data) != `{"state":"queued"}` || got.ID != "b" {
		t.Fatalf("Job(b) = %v %q, %v", got.ID, got.Data, err)
	}
	got.Data[2] = 'Y' // and returns a fresh one
	if again, _ := s.Job(ctx, "b"); string(again.Data) != `{"state":"queued"}` {
		t.Fatalf("changing a returned record changed the store: %q", again.Data)
	}
	for _, id := range []string{"c", "d"} {
		if j, err := s.Job(ctx, id); err != nil || j.Data != nil {
			t.Fatalf("Job(%s) with empty data = %#v, %v; want nil data", id, j, err)
		}
	}
	if err := s.PutJob(ctx, store.JobRecord{ID: "a", Data: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	want := []store.JobRecord{{ID: "a", Data: []byte("2")}, {ID: "b", Data: []byte(`{"state":"queued"}`)}, {ID: "c"}, {ID: "d"}}
	if all := allJobs(t, s); !equalJobs(all, want) {
		t.Fatalf("Jobs = %v, want %v", all, want)
	}
	for _, id := range []string{"b", "b", "zzz"} {
		if err := s.DeleteJob(ctx, id); err != nil {
			t.Fatalf("DeleteJob(%s): %v", id, err)
		}
	}
	if _, err := s.Job(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Job(deleted) = %v, want ErrNotFound", err)
	}
	want = slices.Delete(want, 1, 2)
	if all := allJobs(t, s); !equalJobs(all, want) {
		t.Fatalf("after delete: Jobs = %v, want %v", all, want)
	}
}

// testJobsIteration checks order, early stop and calls into the store from fn
// over more records than one batch.
func testJobsIteration(t *testing.T, open opener) {
	s := open(t, store.Options{})
	ctx := t.Context()
	const n = 150
	var ids []string
	for i := range n {
		id := fmt.Sprintf("job-%04d", (i*37)%n) // stored out of order
		ids = append(ids, id)
		if err := s.PutJob(ctx, store.JobRecord{ID: id, Data: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(ids)

	var seen []string
	if err := s.Jobs(ctx, func(j store.JobRecord) bool {
		seen = append(seen, j.ID)
		return len(seen) < 70
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, ids[:70]) {
		t.Fatalf("Jobs stopped after %d records %v, want the first 70 in order", len(seen), seen)
	}

	// fn deletes the record after the next one, rewrites the current one and
	// deletes the current one every third time: no deadlock, deleted records
	// not yet reached are skipped.
	seen = seen[:0]
	deleted := make(map[string]bool)
	if err := s.Jobs(ctx, func(j store.JobRecord) bool {
		if deleted[j.ID] {
			t.Errorf("Jobs visited %s after it was deleted", j.ID)
		}
		if string(j.Data) != j.ID {
			t.Errorf("Jobs: record %s has data %q", j.ID, j.Data)
		}
		seen = append(seen, j.ID)
		i, _ := slices.BinarySearch(ids, j.ID)
		if i+2 < len(ids) {
			deleted[ids[i+2]] = true
			if err := s.DeleteJob(ctx, ids[i+2]); err != nil {
				t.Errorf("DeleteJob in fn: %v", err)
			}
		}
		if err := s.PutJob(ctx, store.JobRecord{ID: j.ID, Data: []byte(j.ID)}); err != nil {
			t.Errorf("PutJob in fn: %v", err)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	var want []string
	alive := make(map[string]bool)
	for _, id := range ids {
		alive[id] = true
	}
	for i, id := range ids {
		if alive[id] {
			want = append(want, id)
			if i+2 < n {
				delete(alive, ids[i+2])
			}
		}
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("Jobs with deletes visited %d: %v\nwant %d: %v", len(seen), seen, len(want), want)
	}
	if all := allJobs(t, s); len(all) != len(want) {
		t.Fatalf("after iteration %d jobs left, want %d", len(all), len(want))
	}
}

func testInvalidIDs(t *testing.T, open opener) {
	s := open(t, store.Options{})
	ctx := t.Context()
	long := strings.Repeat("k", store.MaxIDLen+1)
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"SetLaneState empty project", func() error { return s.SetLaneState(ctx, store.LaneState{Lane: store.LaneID{Class: "text"}}) }, "lane.Project"},
		{"SetLaneState long class", func() error {
			return s.SetLaneState(ctx, store.LaneState{Lane: store.LaneID{Project: "p", Class: long}, CoolUntil: time.Now()})
		}, "lane.Class"},
		{"DisableKey empty", func() error { return s.DisableKey(ctx, store.DisabledKey{Reason: "x"}) }, "KeyID"},
		{"DisableKey long", func() error { return s.DisableKey(ctx, store.DisabledKey{KeyID: long}) }, "KeyID"},
		{"EnableKey empty", func() error { return s.EnableKey(ctx, "") }, "keyID"},
		{"PutJob empty", func() error { return s.PutJob(ctx, store.JobRecord{Data: []byte("x")}) }, "ID"},
		{"PutJob long", func() error { return s.PutJob(ctx, store.JobRecord{ID: long}) }, "ID"},
		{"Job empty", func() error { _, err := s.Job(ctx, ""); return err }, "id"},
		{"DeleteJob empty", func() error { return s.DeleteJob(ctx, "") }, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.field+": ") {
				t.Errorf("error %q does not name field %s", err, tt.field)
			}
		})
	}
	if got := mustLaneStates(t, s); len(got) != 0 {
		t.Errorf("invalid calls stored lane states %v", got)
	}
	if got := allJobs(t, s); len(got) != 0 {
		t.Errorf("invalid calls stored jobs %v", got)
	}
}

// calls returns one call of every method of s except Close, with valid arguments.
func calls(s store.Store) map[string]func(ctx context.Context) error {
	return map[string]func(ctx context.Context) error{
		"AddDaily": func(ctx context.Context) error { _, err := s.AddDaily(ctx, day(0), textA, 1); return err },
		"Daily":    func(ctx context.Context) error { _, err := s.Daily(ctx, day(0)); return err },
		"History":  func(ctx context.Context) error { _, err := s.History(ctx); return err },
		"SetLaneState": func(ctx context.Context) error {
			return s.SetLaneState(ctx, store.LaneState{Lane: textA, CoolUntil: time.Unix(1, 0)})
		},
		"LaneStates":   func(ctx context.Context) error { _, err := s.LaneStates(ctx); return err },
		"DisableKey":   func(ctx context.Context) error { return s.DisableKey(ctx, store.DisabledKey{KeyID: "k"}) },
		"EnableKey":    func(ctx context.Context) error { return s.EnableKey(ctx, "k") },
		"DisabledKeys": func(ctx context.Context) error { _, err := s.DisabledKeys(ctx); return err },
		"PutJob":       func(ctx context.Context) error { return s.PutJob(ctx, store.JobRecord{ID: "j"}) },
		"Job": func(ctx context.Context) error {
			_, err := s.Job(ctx, "j")
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		},
		"Jobs": func(ctx context.Context) error {
			return s.Jobs(ctx, func(store.JobRecord) bool { return true })
		},
		"DeleteJob": func(ctx context.Context) error { return s.DeleteJob(ctx, "j") },
	}
}

func testClosed(t *testing.T, open opener) {
	s := open(t, store.Options{})
	for name, call := range calls(s) {
		if err := call(t.Context()); err != nil {
			t.Fatalf("%s on an open store: %v", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, call := range calls(s) {
		if err := call(t.Context()); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func testContextDone(t *testing.T, open opener) {
	s := open(t, store.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, call := range calls(s) {
		if err := call(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", name, err)
		}
	}
	if got := mustHistory(t, s); len(got) != 0 {
		t.Errorf("cancelled AddDaily counted: %v", got)
	}
	if got := allJobs(t, s); len(got) != 0 {
		t.Errorf("cancelled PutJob stored: %v", got)
	}
}

// bg is the context of the random operations, which are built without a *testing.T.
var bg = context.Background()

func isTooOld(err error) bool { return errors.Is(err, store.ErrTooOld) }
