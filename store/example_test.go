package store_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// Open a Bolt file, record two chunks of daily units before using them, and
// read the day back after a restart.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "slideshowd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "slideshowd.db")
	ctx := context.Background()
	lane := store.LaneID{Project: "key-1", Class: "image"}

	s, err := store.Open(path, store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		// Write-ahead: the chunk is durable before any of its 10 units is used.
		if _, err := s.AddDaily(ctx, "2026-03-08", lane, 10); err != nil {
			log.Fatal(err)
		}
	}
	s.Close()

	s, err = store.Open(path, store.Options{}) // after a restart
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	counts, err := s.Daily(ctx, "2026-03-08")
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range counts {
		fmt.Printf("%s %s: %d\n", c.Day, c.Lane, c.Count)
	}
	// Output:
	// 2026-03-08 key-1/image: 20
}

// A second Open of a held file gives up after Options.Timeout instead of
// hanging.
func ExampleOpen_locked() {
	dir, err := os.MkdirTemp("", "slideshowd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "slideshowd.db")

	s, err := store.Open(path, store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	_, err = store.Open(path, store.Options{Timeout: 100 * time.Millisecond})
	fmt.Println(errors.Is(err, store.ErrLocked))
	// Output:
	// true
}

// History keeps the newest Options.History days; older days are deleted and
// can no longer be counted.
func ExampleMemory_history() {
	ctx := context.Background()
	s := store.NewMemory(store.Options{History: 2})
	lane := store.LaneID{Project: "key-1", Class: "text"}
	for _, day := range []string{"2026-03-06", "2026-03-07", "2026-03-08"} {
		if _, err := s.AddDaily(ctx, day, lane, 1); err != nil {
			log.Fatal(err)
		}
	}
	hist, _ := s.History(ctx)
	for _, c := range hist {
		fmt.Println(c.Day, c.Count)
	}
	_, err := s.AddDaily(ctx, "2026-03-06", lane, 1)
	fmt.Println(err)
	// Output:
	// 2026-03-07 1
	// 2026-03-08 1
	// store: day is older than the history kept: day: 2026-03-06: the oldest day kept is 2026-03-07 (2 days)
}
