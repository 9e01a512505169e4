package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// countingLedger counts the durable writes (records) per lane: each is one
// fsync on a bbolt store.
type countingLedger struct {
	*store.Memory
	mu       sync.Mutex
	records  map[store.LaneID]int
	renewals map[store.LaneID]int
}

func (c *countingLedger) Reserve(ctx context.Context, r store.Record) (int, error) {
	c.mu.Lock()
	c.records[r.Lane]++
	if r.Units == 0 {
		c.renewals[r.Lane]++
	}
	c.mu.Unlock()
	return c.Memory.Reserve(ctx, r)
}

// TestLedgerWriteRate measures the durable writes of the quota ledger at
// full RPM: five projects at the published limits (text 1000 RPM, image 20
// RPM, default burst and chunks sized from use) kept saturated for five
// simulated minutes, calls lasting 2 s (text) and 10 s (image). It reports
// writes (fsyncs) per second per lane and checks they stay affordable: about
// one a second on a text lane, at most one per 4 requests on an image lane
// (a slow lane: its records follow its pace, bucket.RecordLife; one per
// request or 0.25 a second before).
func TestLedgerWriteRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &countingLedger{Memory: store.NewMemory(), records: map[store.LaneID]int{}, renewals: map[store.LaneID]int{}}
		var keys []bucket.Key
		for i := range 5 {
			id := fmt.Sprintf("key%d", i+1)
			keys = append(keys, bucket.Key{ID: id, Project: id})
		}
		s, err := scheduler.New(scheduler.Config{
			Classes: []scheduler.ClassConfig{
				{Name: "text", Limits: bucket.Limits{RPM: 1000, RPD: 10000}, Concurrency: 200, WindowMargin: 250 * time.Millisecond},
				{Name: "image", Limits: bucket.Limits{RPM: 20, RPD: 250}, Concurrency: 20, WindowMargin: time.Second},
			},
			Keys: keys, Store: st,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		const span = 5 * time.Minute
		for class, lat := range map[string]time.Duration{"text": 2 * time.Second, "image": 10 * time.Second} {
			n := 5 * 1000 * 6
			if class == "image" {
				n = 5 * 20 * 6
			}
			for range n {
				s.Submit(ctx, scheduler.Job{Class: class, Work: func(ctx context.Context, _ scheduler.Lease) error {
					select {
					case <-time.After(lat):
					case <-ctx.Done():
					}
					return nil
				}})
			}
		}
		time.Sleep(span)
		sum := s.Summary()
		cancel()
		<-done
		for _, cs := range sum.Classes {
			for _, ln := range cs.Lanes {
				lane := store.LaneID{Project: ln.Project, Class: cs.Name}
				st.mu.Lock()
				recs, ren := st.records[lane], st.renewals[lane]
				st.mu.Unlock()
				perSec := float64(recs) / span.Seconds()
				t.Logf("%s: %d requests, %d records (%d renewals) in %v: %.2f fsyncs/s", lane, ln.DayUsed, recs, ren, span, perSec)
				limit := 1.5 // text: about one record per second of traffic
				if cs.Name == "image" {
					limit = 20.0/60/4 + 0.05 // one per 4 requests
				}
				if perSec > limit {
					t.Errorf("%s: %.2f records a second, more than %.2f", lane, perSec, limit)
				}
			}
		}
	})
}
