package scheduler_test

import (
	"context"
	"fmt"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/scheduler"
)

// Embed the scheduler with two keys (each its own project) and both model
// classes. The work receives a lease naming the key to call with; a real
// program calls Gemini there (package gemini does) and returns its error.
func Example() {
	s, err := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 1000, RPD: 10000}, Concurrency: 8},
			{Name: "image", Limits: bucket.Limits{RPM: 20, RPD: 250}, Concurrency: 4},
		},
		Keys: []bucket.Key{{ID: "key1", Project: "key1"}, {ID: "key2", Project: "key2"}},
	})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()

	for _, class := range []string{"text", "text", "image"} {
		err := s.Do(ctx, scheduler.Job{
			Class:    class,
			Priority: scheduler.PriorityHigh,
			Tokens:   1200,
			Work: func(ctx context.Context, l scheduler.Lease) error {
				fmt.Printf("%s request with %s (project %s)\n", l.Class, l.KeyID, l.Project)
				return nil
			},
		})
		if err != nil {
			fmt.Println("failed:", err)
		}
	}
	for _, c := range s.Summary().Classes {
		fmt.Printf("%s: %d keys, %d RPM, %d/%d today\n", c.Name, c.Keys, c.RPMLimit, c.DayUsed, c.DayLimit)
	}
	stop()
	<-done
	// Output:
	// text request with key1 (project key1)
	// text request with key2 (project key2)
	// image request with key1 (project key1)
	// text: 2 keys, 2000 RPM, 2/20000 today
	// image: 2 keys, 40 RPM, 1/500 today
}
