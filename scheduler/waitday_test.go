package scheduler

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// TestProtectedWaitWithDaySpentSaysDay: with a shared store, a class whose
// every lane's cluster day count is at RPD waits "day" (every lane out for
// the Pacific day), not "protected", even though it is also critical and
// its lanes were never refused (no hold: only a high-priority job would
// ask Redis). newcomer10 N10-4: a process whose image lanes were "day used
// up" said "daily protection: ... only high priority starts", and no job
// could start. The wait's until is UTC, as every other wait's (it was
// written with the Pacific offset).
func TestProtectedWaitWithDaySpentSaysDay(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	synctest.Test(t, func(t *testing.T) {
		const rpd = 6
		lane := store.LaneID{Project: "key1", Class: "image"}
		classes := []store.RedisClass{{Name: "image", RPM: 60, RPD: rpd}}
		open := func(name string) (*store.Redis, *redis.Client) {
			c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			st, err := store.OpenRedis(t.Context(), store.NewMemory(), store.RedisOptions{Client: c, Cluster: "waitday",
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
		// Another process took the lane's whole day.
		if n, err := a.Reserve(t.Context(), store.Record{Lane: lane, Day: day, Units: rpd, Covers: rpd, At: now, Until: now.Add(2 * time.Second)}); err != nil || n != rpd {
			t.Fatalf("a's grant of the whole day: count %d, %v", n, err)
		}
		st, cb := open("b")
		defer cb.Close()
		defer st.Close()
		s, err := New(Config{Keys: keys(1), Store: quietShared{st},
			Classes: []ClassConfig{{Name: "image", Limits: bucket.Limits{RPM: 60, RPD: rpd}, Concurrency: 4}}})
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
		defer func() { cancel(); runs.Wait() }()
		h, err := s.Submit(ctx, Job{Class: "image", Priority: PriorityNormal, Work: func(context.Context, Lease) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		cs := s.Summary().Classes[0]
		if l := cs.Lanes[0]; l.ClusterDayUsed != rpd || l.Held != "" {
			t.Fatalf("lane %+v: want the cluster's day at %d, not held", l, rpd)
		}
		jw, ok := h.Waiting()
		for name, w := range map[string]*Wait{"the class": cs.Wait, "the job": &jw} {
			if w == nil || (name == "the job" && !ok) {
				t.Fatalf("%s: no wait", name)
			}
			if w.Kind != WaitDay || !w.Until.Equal(midnight) || !strings.HasPrefix(w.Reason, "image quota of all projects used for today") {
				t.Errorf("%s's wait %+v, want day until %v", name, *w, midnight)
			}
			data, err := json.Marshal(w)
			if err != nil {
				t.Fatal(err)
			}
			if want := `"until":"` + midnight.UTC().Format(time.RFC3339) + `"`; !strings.Contains(string(data), want) {
				t.Errorf("%s's wait in JSON: %s, want %s (UTC)", name, data, want)
			}
		}
		dw, ok := s.DayWait("image", PriorityNormal)
		if data, _ := json.Marshal(dw); !ok || !strings.Contains(string(data), `Z"`) || strings.Contains(string(data), "-08:00") || strings.Contains(string(data), "-07:00") {
			t.Errorf("DayWait = %s, %v; want its times in UTC", data, ok)
		}
	})
}

// TestDayResetsAtIsUTC: a class's day_resets_at is UTC in JSON, as its
// waits' until and the lanes' held_until (it was the next Pacific midnight
// with its offset, -08:00; newcomer11's re-check of N10-4).
func TestDayResetsAtIsUTC(t *testing.T) {
	s, err := New(Config{Keys: keys(1), Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 100}}}})
	if err != nil {
		t.Fatal(err)
	}
	cs := s.Summary().Classes[0]
	data, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
	if want := `"day_resets_at":"` + midnight.UTC().Format(time.RFC3339) + `"`; !strings.Contains(string(data), want) {
		t.Errorf("class summary %s, want %s", data, want)
	}
}
