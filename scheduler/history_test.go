package scheduler

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// TestCrossDayKeepsToday: with the smallest History a store accepts, a
// request charged on the next Pacific day before midnight (its slot crosses
// it) does not make the store drop the day still running: today's counts
// stay readable and writable until midnight. A store accepted History 1,
// whose compaction from the next day's write deleted today (review9 R9-1);
// it is refused now.
func TestCrossDayKeepsToday(t *testing.T) {
	path := t.TempDir() + "/slideshowd.db"
	history := 1
	for {
		err := (store.Options{History: history}).Validate()
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrInvalid) || history > 10 {
			t.Fatalf("Options{History: %d}.Validate() = %v", history, err)
		}
		history++
	}
	t.Logf("smallest History accepted: %d", history)
	synctest.Test(t, func(t *testing.T) {
		b, err := store.Open(path, store.Options{NoSync: true, History: history})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		cfg := Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 5}, WindowMargin: 250 * time.Millisecond}},
			Keys: keys(1), Store: slowRecords{b}}
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		today := bucket.Day(midnight.Add(-time.Second), bucket.Pacific)
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		defer func() { cancel(); <-done }()
		run := func() {
			h, err := s.Submit(context.Background(), Job{Class: "text", Work: func(context.Context, Lease) error { return nil }})
			if err != nil {
				t.Fatal(err)
			}
			h.Wait(context.Background())
		}
		time.Sleep(time.Until(midnight.Add(-5 * time.Second)))
		run()
		before, err := b.Daily(context.Background(), today)
		if err != nil || len(before) == 0 {
			t.Fatalf("today's counts after a request: %v, %v", before, err)
		}
		time.Sleep(time.Until(midnight.Add(-500 * time.Millisecond)))
		run() // its slot crosses midnight: the next day's unit is written now
		after, err := b.Daily(context.Background(), today)
		_, addErr := b.AddDaily(context.Background(), today, store.LaneID{Project: "p1", Class: "text"}, 1)
		if err != nil || len(after) == 0 || addErr != nil {
			t.Fatalf("History %d, %v before midnight: today's counts %v (were %v, read error %v); recording today: %v",
				history, time.Until(midnight), after, before, err, addErr)
		}
	})
}
