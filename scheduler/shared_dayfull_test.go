package scheduler

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// TestSharedDayFullReleased: a lane held "cluster day full" asks Redis
// again once other processes give day units back. Process a (a store alone)
// takes the whole day of RPD 6 in one grant; scheduler b, with 3 jobs, is
// refused for the day and held. Then a gives 4 units back, by a settlement
// or by its clean stop: b sends its 3 jobs within a heartbeat (its next
// heartbeat reads the lane's count, 2, below RPD), and the day never holds
// more than RPD: a's 2 and b's 3. Before, b's lane stayed held until Pacific
// midnight (8 h away on the bubble's clock) while its usage said 4 left.
func TestSharedDayFullReleased(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	for _, how := range []string{"settlement", "stop"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { sharedDayFull(t, srv, how) })
		})
	}
}

func sharedDayFull(t *testing.T, srv *redistest.Server, how string) {
	const rpd = 6
	cluster := "dayfull-" + how
	lane := store.LaneID{Project: "key1", Class: "text"}
	classes := []store.RedisClass{{Name: "text", RPM: 60, RPD: rpd}}
	open := func(name string) (*store.Redis, *redis.Client) {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		st, err := store.OpenRedis(t.Context(), store.NewMemory(), store.RedisOptions{Client: c, Cluster: cluster,
			Process: name, Projects: []string{"key1"}, Now: time.Now, Classes: classes})
		if err != nil {
			t.Fatal(err)
		}
		return st, c
	}
	// The lane's day count in Redis, read through b's store.
	var st *store.Redis
	count := func(day string) int {
		t.Helper()
		counts, err := st.SharedDaily(t.Context(), day)
		if err != nil || len(counts) != 1 {
			t.Fatalf("reading the day count: %v %v", counts, err)
		}
		return counts[0].Count
	}

	a, ca := open("a")
	defer ca.Close()
	day := bucket.Day(time.Now(), bucket.Pacific)
	now := time.Now()
	if n, err := a.Reserve(t.Context(), store.Record{Lane: lane, Day: day, Units: rpd, Covers: rpd, At: now, Until: now.Add(2 * time.Second)}); err != nil || n != rpd {
		t.Fatalf("a's grant of the whole day: count %d, %v", n, err)
	}

	var cb *redis.Client
	st, cb = open("b")
	defer cb.Close()
	defer st.Close()
	s, err := New(Config{Keys: keys(1), Store: quietShared{st},
		Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: rpd}, Concurrency: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runs sync.WaitGroup
	runs.Go(func() {
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var mu sync.Mutex
	var sends []time.Time
	var jobs sync.WaitGroup
	defer func() { cancel(); runs.Wait(); jobs.Wait() }()
	for range 3 {
		jobs.Go(func() {
			if err := s.Do(ctx, Job{Class: "text", Priority: PriorityHigh, Work: func(context.Context, Lease) error {
				mu.Lock()
				sends = append(sends, time.Now())
				mu.Unlock()
				return nil
			}}); err != nil && ctx.Err() == nil {
				t.Errorf("b's job: %v", err)
			}
		})
	}

	// The virtual clock: the scenario's time, not a wait for an event.
	time.Sleep(8 * time.Second)
	l := s.Summary().Classes[0].Lanes[0]
	mu.Lock()
	sent := len(sends)
	mu.Unlock()
	if sent != 0 || l.Held != HoldDay || !l.HeldUntil.Equal(bucket.NextMidnight(time.Now(), bucket.Pacific)) {
		t.Fatalf("before a gives back: b sent %d, lane held %q until %v; want 0 sent, held %q until midnight", sent, l.Held, l.HeldUntil, HoldDay)
	}

	// a used 2 of its 6 units and gives the 4 others back.
	if _, err := a.Heartbeat(t.Context()); err != nil {
		t.Fatal(err)
	}
	gave := time.Now()
	switch how {
	case "settlement":
		if err := a.Settle(t.Context(), store.Settlement{GiveBack: []store.DailyCount{{Day: day, Lane: lane, Count: 4}}}); err != nil {
			t.Fatal(err)
		}
	case "stop":
		if err := a.Settle(t.Context(), store.Settlement{GiveBack: []store.DailyCount{{Day: day, Lane: lane, Count: 4}}}); err != nil {
			t.Fatal(err)
		}
		if err := a.Leave(t.Context()); err != nil {
			t.Fatal(err)
		}
		a.Close()
	}
	if n := count(day); n != 2 {
		t.Fatalf("after a's give-back the day count is %d, want 2", n)
	}

	done := make(chan struct{})
	go func() { jobs.Wait(); close(done) }()
	tm := time.NewTimer(time.Minute)
	select {
	case <-done:
	case <-tm.C:
	}
	tm.Stop()
	mu.Lock()
	got := append([]time.Time(nil), sends...)
	mu.Unlock()
	if len(got) != 3 {
		l := s.Summary().Classes[0].Lanes[0]
		t.Errorf("b sent %d of its 3 jobs in the minute after a gave 4 units back (lane held %q until %v)", len(got), l.Held, l.HeldUntil)
	}
	for _, at := range got {
		if d := at.Sub(gave); d > HeartbeatEvery+time.Second {
			t.Errorf("b sent %v after a gave units back: more than a heartbeat (%v)", d, HeartbeatEvery)
		}
	}
	if n := count(day); n > rpd || n < 2+len(got) {
		t.Errorf("the day count is %d: want a's 2 plus b's %d sent, at most RPD %d", n, len(got), rpd)
	}
	// Usage says what the lane state says: what the day has left, as of
	// b's heartbeat (its lane, idle, gives back what it did not send).
	time.Sleep(6 * HeartbeatEvery)
	l = s.Summary().Classes[0].Lanes[0]
	if u := s.Summary().Classes[0]; u.DayRemaining != rpd-count(day) || (u.DayRemaining > 0 && l.Held != "") {
		t.Errorf("b's usage: %d left, lane held %q; the shared day count says %d left (lane %+v)", u.DayRemaining, l.Held, rpd-count(day), l)
	}
}

// TestSharedDayRefusedWords: a grant refused for the day with units still
// left (it asked for more than the day had) holds the lane one heartbeat
// interval, as a cluster hold ("cluster day full (5s)", wait kind cluster,
// not day); at RPD it holds until Pacific midnight (wait kind day) and a
// day count below RPD read by a heartbeat (applySharedDays) releases it,
// a count at RPD or of another day does not.
func TestSharedDayRefusedWords(t *testing.T) {
	s, err := New(Config{Keys: keys(1), Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 6}}}})
	if err != nil {
		t.Fatal(err)
	}
	r := s.classes["text"]
	now := time.Now()
	day := bucket.Day(now, s.cfg.Location)
	lease := bucket.Lease{Class: "text", Project: "key1", Day: day}
	lane := store.LaneID{Project: "key1", Class: "text"}

	if !r.refused(&store.GrantError{Lane: lane, Reason: "day", Day: 4}, lease, now) {
		t.Fatal("a day refusal not applied")
	}
	l := s.Summary().Classes[0].Lanes[0]
	if l.Held != HoldDay || !l.HeldUntil.Equal(now.Add(HeartbeatEvery)) {
		t.Errorf("refused with 2 units left: held %q until %v, want %q until %v", l.Held, l.HeldUntil, HoldDay, now.Add(HeartbeatEvery))
	}
	if kind, held := r.waitKind(now, 0); kind != WaitCluster || held != HoldDay {
		t.Errorf("wait kind %q (%q), want %q (%q)", kind, held, WaitCluster, HoldDay)
	}
	if got, want := HoldWords(l.Held, l.HeldUntil, now), "cluster day full (5s)"; got != want {
		t.Errorf("HoldWords %q, want %q", got, want)
	}

	later := now.Add(HeartbeatEvery + time.Second)
	midnight := bucket.NextMidnight(later, s.cfg.Location)
	if midnight.Sub(later) < time.Minute {
		t.Skip("within a minute of Pacific midnight")
	}
	r.refused(&store.GrantError{Lane: lane, Reason: "day", Day: 6}, lease, later)
	if l := s.Summary().Classes[0].Lanes[0]; l.Held != HoldDay || !l.HeldUntil.Equal(midnight) {
		t.Errorf("refused at RPD: held %q until %v, want %q until %v", l.Held, l.HeldUntil, HoldDay, midnight)
	}
	if kind, _ := r.waitKind(later, 0); kind != WaitDay {
		t.Errorf("wait kind %q at RPD, want %q", kind, WaitDay)
	}
	for _, dc := range []store.DailyCount{{Day: day, Lane: lane, Count: 6}, {Day: "2000-01-01", Lane: lane, Count: 0}} {
		s.applySharedDays([]store.DailyCount{dc}, later)
		if l := s.Summary().Classes[0].Lanes[0]; l.Held != HoldDay {
			t.Errorf("count %d of %s released the lane held for the day", dc.Count, dc.Day)
		}
	}
	s.applySharedDays([]store.DailyCount{{Day: day, Lane: lane, Count: 3}}, later)
	if l := s.Summary().Classes[0].Lanes[0]; l.Held != "" {
		t.Errorf("count 3 of RPD 6: lane still held %q until %v", l.Held, l.HeldUntil)
	}
}

// TestSharedTokensHeldReleased: a lane held for the cluster's token window
// asks Redis again within a heartbeat interval, not only when the budgets
// that refused it leave the window (up to a minute later): another
// process may give its unused budget back before then (at its lane's next
// grant, or its clean stop). Process a (a store alone) takes a budget of
// the whole TPM of 4,000; scheduler b, with 3 jobs of 500 estimated
// tokens, is refused and held; a gives back 3,000 of its budget unused by
// its clean stop's settlement. b sends its 3 jobs within a heartbeat
// interval of that, and the token window never holds more than TPM. Before,
// b waited for a's whole budget to leave, 62 s after it was granted.
func TestSharedTokensHeldReleased(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	synctest.Test(t, func(t *testing.T) { sharedTokensHeld(t, srv) })
}

func sharedTokensHeld(t *testing.T, srv *redistest.Server) {
	const tpm = 4000
	limits := bucket.Limits{RPM: 60, RPD: 1000, TPM: tpm}
	lane := store.LaneID{Project: "key1", Class: "text"}
	classes := []store.RedisClass{{Name: "text", RPM: limits.RPM, RPD: limits.RPD, TPM: tpm}}
	open := func(name string) (*store.Redis, *redis.Client) {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		st, err := store.OpenRedis(t.Context(), store.NewMemory(), store.RedisOptions{Client: c, Cluster: "tokheld",
			Process: name, Projects: []string{"key1"}, Now: time.Now, Classes: classes})
		if err != nil {
			t.Fatal(err)
		}
		return st, c
	}
	a, ca := open("a")
	defer ca.Close()
	day := bucket.Day(time.Now(), bucket.Pacific)
	now := time.Now()
	if _, err := a.Reserve(t.Context(), store.Record{Lane: lane, Day: day, Units: 1, Covers: 1, At: now, Until: now.Add(2 * time.Second), Tokens: tpm}); err != nil {
		t.Fatalf("a's grant of the whole TPM: %v", err)
	}

	st, cb := open("b")
	defer cb.Close()
	defer st.Close()
	s, err := New(Config{Keys: keys(1), Store: quietShared{st},
		Classes: []ClassConfig{{Name: "text", Limits: limits, Concurrency: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runs sync.WaitGroup
	runs.Go(func() {
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var mu sync.Mutex
	var sends []time.Time
	var jobs sync.WaitGroup
	defer func() { cancel(); runs.Wait(); jobs.Wait() }()
	for range 3 {
		jobs.Go(func() {
			if err := s.Do(ctx, Job{Class: "text", Tokens: 500, Work: func(context.Context, Lease) error {
				mu.Lock()
				sends = append(sends, time.Now())
				mu.Unlock()
				return nil
			}}); err != nil && ctx.Err() == nil {
				t.Errorf("b's job: %v", err)
			}
		})
	}

	// The virtual clock: the scenario's time, not a wait for an event.
	time.Sleep(8 * time.Second)
	mu.Lock()
	sent := len(sends)
	mu.Unlock()
	if l := s.Summary().Classes[0].Lanes[0]; sent != 0 || l.Held != HoldTokens {
		t.Fatalf("before a gives back: b sent %d, lane held %q until %v; want 0 sent, held %q", sent, l.Held, l.HeldUntil, HoldTokens)
	}

	// a sent one request of 1,000 tokens and stops cleanly: 3,000 unused.
	if _, err := a.Heartbeat(t.Context()); err != nil {
		t.Fatal(err)
	}
	gave := time.Now()
	if err := a.Settle(t.Context(), store.Settlement{Unused: []store.UnusedTokens{{Lane: lane, Tokens: 3000}}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.Close()

	done := make(chan struct{})
	go func() { jobs.Wait(); close(done) }()
	tm := time.NewTimer(30 * time.Second)
	select {
	case <-done:
	case <-tm.C:
	}
	tm.Stop()
	mu.Lock()
	got := append([]time.Time(nil), sends...)
	mu.Unlock()
	if len(got) != 3 {
		l := s.Summary().Classes[0].Lanes[0]
		t.Fatalf("b sent %d of its 3 jobs in the 30 s after a gave 3,000 tokens back (lane held %q until %v)", len(got), l.Held, l.HeldUntil)
	}
	for _, at := range got {
		if d := at.Sub(gave); d > HeartbeatEvery+time.Second {
			t.Errorf("b sent %v after a gave tokens back: more than a heartbeat interval (%v)", d, HeartbeatEvery)
		}
	}
	// The shared token window: a's 1,000 used and b's budgets, within TPM.
	cu, err := st.Usage(t.Context(), day)
	if err != nil || len(cu.Lanes) != 1 {
		t.Fatalf("cluster usage %+v, %v", cu, err)
	}
	if l := cu.Lanes[0]; l.Tokens > tpm || l.Tokens < 1000+3*500 {
		t.Errorf("the shared token window holds %d: want a's 1,000 and b's 1,500 at least, at most TPM %d", l.Tokens, tpm)
	}
}
