package bucket_test

import (
	"fmt"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
)

// Two keys in two projects share out the image class; a third key shares the
// first key's project, and so its lane.
func Example() {
	pool, err := bucket.New(bucket.Config{
		Classes: []bucket.ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 1000, RPD: 10000}},
			{Name: "image", Limits: bucket.Limits{RPM: 20, RPD: 250}},
		},
		Keys: []bucket.Key{
			{ID: "key1", Project: "alpha"},
			{ID: "key2", Project: "beta"},
			{ID: "key3", Project: "alpha"},
		},
	})
	if err != nil {
		panic(err)
	}
	images := pool.Class("image")
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, bucket.Pacific)
	for range 4 {
		lease, ok, _ := images.Acquire(now, 0)
		if ok {
			fmt.Println(lease.KeyID, lease.Project, lease.Day)
		}
		now = now.Add(3 * time.Second)
	}
	// Output:
	// key1 alpha 2026-11-27
	// key2 beta 2026-11-27
	// key3 alpha 2026-11-27
	// key2 beta 2026-11-27
}

// When no lane can serve, Acquire says when one can: the caller sleeps until
// then instead of polling.
func ExampleClass_Acquire() {
	pool, _ := bucket.New(bucket.Config{
		Classes: []bucket.ClassConfig{{Name: "image", Limits: bucket.Limits{RPM: 2, RPD: 250}}},
		Keys:    []bucket.Key{{ID: "key1", Project: "key1"}},
	})
	images := pool.Class("image")
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, bucket.Pacific)
	for i := 0; i < 4; i++ {
		_, ok, next := images.Acquire(now, 0)
		if !ok {
			fmt.Printf("wait %v\n", next.Sub(now))
			now = next
			continue
		}
		fmt.Println("request at", now.Format("15:04:05"))
	}
	// Output:
	// request at 09:00:00
	// request at 09:00:00
	// wait 1m0s
	// request at 09:01:00
}

// A per-minute 429 cools one lane of one class; a per-day 429 exhausts the
// lane until the next Pacific midnight.
func ExampleClass_Exhaust() {
	pool, _ := bucket.New(bucket.Config{
		Classes: []bucket.ClassConfig{{Name: "image", Limits: bucket.Limits{RPM: 20, RPD: 250}}},
		Keys:    []bucket.Key{{ID: "key1", Project: "key1"}},
	})
	images := pool.Class("image")
	now := time.Date(2026, 3, 7, 18, 0, 0, 0, bucket.Pacific)
	until := images.Exhaust("key1", now)
	_, ok, next := images.Acquire(now, 0)
	fmt.Println(ok, until.Format(time.RFC3339), next.Equal(until))
	// Output:
	// false 2026-03-08T00:00:00-08:00 true
}

// Daily protection: a class is critical at 90 % of its summed daily limits.
func ExampleClass_Usage() {
	pool, _ := bucket.New(bucket.Config{
		Classes: []bucket.ClassConfig{{Name: "image", Limits: bucket.Limits{RPM: 1000, RPD: 10}}},
		Keys:    []bucket.Key{{ID: "key1", Project: "key1"}},
	})
	images := pool.Class("image")
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, bucket.Pacific)
	for range 9 {
		images.Acquire(now, 0)
	}
	u := images.Usage(now)
	fmt.Printf("%s used %d of %d, remaining %d, critical %v\n", u.Day, u.Used, u.Limit, u.Remaining, u.Critical)
	// Output:
	// 2026-11-27 used 9 of 10, remaining 1, critical true
}
