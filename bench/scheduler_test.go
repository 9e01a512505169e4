package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/scheduler"
)

func benchScheduler(b *testing.B, workers int) (*scheduler.Scheduler, func()) {
	b.Helper()
	keys := make([]bucket.Key, 5)
	for i := range keys {
		id := fmt.Sprintf("key%d", i+1)
		keys[i] = bucket.Key{ID: id, Project: id}
	}
	s, err := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 1 << 30, RPD: 1 << 40}, Concurrency: workers}},
		Keys:    keys,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	return s, func() { cancel(); <-done }
}

func noop(context.Context, scheduler.Lease) error { return nil }

// BenchmarkScheduler: no-op jobs through Submit -> dispatch -> run -> result
// with 64 workers, submitted from 8 goroutines; reports jobs/s.
func BenchmarkScheduler(b *testing.B) {
	s, stop := benchScheduler(b, 64)
	defer stop()
	ctx := context.Background()
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	const submitters = 8
	var wg sync.WaitGroup
	per := b.N / submitters
	for g := range submitters {
		n := per
		if g == 0 {
			n += b.N % submitters
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs := make([]*scheduler.Handle, 0, 256)
			for i := 0; i < n; i++ {
				h, err := s.Submit(ctx, scheduler.Job{Class: "text", Work: noop})
				if err != nil {
					b.Error(err)
					return
				}
				hs = append(hs, h)
				if len(hs) == cap(hs) {
					for _, h := range hs {
						<-h.Done()
					}
					hs = hs[:0]
				}
			}
			for _, h := range hs {
				<-h.Done()
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}

// BenchmarkSchedulerQueued: 100,000 jobs queued at once (no lane can serve
// yet); reports the heap bytes each queued job costs beyond its work closure.
func BenchmarkSchedulerQueued(b *testing.B) {
	const jobs = 100_000
	for b.Loop() {
		keys := []bucket.Key{{ID: "key1", Project: "key1"}}
		s, err := scheduler.New(scheduler.Config{
			Classes: []scheduler.ClassConfig{{Name: "image", Limits: bucket.Limits{RPM: 20, RPD: 250}, Concurrency: 4}},
			Keys:    keys,
		})
		if err != nil {
			b.Fatal(err)
		}
		s.Pool().Class("image").Exhaust("key1", time.Now()) // nothing dispatches
		ctx := context.Background()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		hs := make([]*scheduler.Handle, jobs) // the caller's own slice, measured apart below
		runtime.GC()
		runtime.ReadMemStats(&after)
		sliceBytes := after.HeapAlloc - before.HeapAlloc
		runtime.ReadMemStats(&before)
		for i := range hs {
			hs[i], err = s.Submit(ctx, scheduler.Job{Class: "image", Work: noop})
			if err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/jobs, "bytes/queued-job")
		_ = sliceBytes
		if got := s.Summary().Classes[0].QueuedNormal; got != jobs {
			b.Fatalf("queued %d", got)
		}
		runtime.KeepAlive(hs)
	}
}
