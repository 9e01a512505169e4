package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
)

// readyClass returns a class of n lanes (one key each) whose limits never
// stop an acquisition, so the benchmarks measure selection alone.
func readyClass(b *testing.B, lanes int) *bucket.Class {
	b.Helper()
	keys := make([]bucket.Key, lanes)
	for i := range keys {
		id := fmt.Sprintf("key%d", i+1)
		keys[i] = bucket.Key{ID: id, Project: id}
	}
	p, err := bucket.New(bucket.Config{
		Classes: []bucket.ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 1 << 30, RPD: 1 << 40}}},
		Keys:    keys,
	})
	if err != nil {
		b.Fatal(err)
	}
	return p.Class("text")
}

var benchStart = time.Date(2026, 11, 27, 9, 0, 0, 0, bucket.Pacific)

// BenchmarkAcquire: one acquisition on a class whose lanes are all ready.
// Virtual time advances 1 ms per acquisition so the windows stay bounded.
func BenchmarkAcquire(b *testing.B) {
	for _, lanes := range []int{5, 50, 500} {
		b.Run(fmt.Sprintf("lanes=%d", lanes), func(b *testing.B) {
			acquireLoop(b, readyClass(b, lanes))
		})
	}
}

// acquireLoop acquires on c once per iteration, virtual time advancing 1 ms
// per acquisition so the windows stay bounded.
func acquireLoop(b *testing.B, c *bucket.Class) {
	now := benchStart
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		if _, ok, _ := c.Acquire(now, 100); !ok {
			b.Fatal("not ready")
		}
	}
}

// BenchmarkAcquireParallel: acquisitions from GOMAXPROCS goroutines on one
// class, on the real clock.
func BenchmarkAcquireParallel(b *testing.B) {
	for _, lanes := range []int{5, 500} {
		b.Run(fmt.Sprintf("lanes=%d", lanes), func(b *testing.B) {
			c := readyClass(b, lanes)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, ok, _ := c.Acquire(time.Now(), 100); !ok {
						b.Error("not ready")
						return
					}
				}
			})
		})
	}
}

// BenchmarkAcquireScarce: 500 lanes of which 499 are cooling down or
// exhausted; the one ready lane serves every acquisition. The blocks last
// far longer than any run's virtual time (1 ms per iteration).
func BenchmarkAcquireScarce(b *testing.B) {
	c := readyClass(b, 500)
	far := benchStart.AddDate(100, 0, 0)
	for i := 2; i <= 500; i++ {
		project := fmt.Sprintf("key%d", i)
		if i%2 == 0 {
			c.CoolDown(project, far)
		} else {
			c.ExhaustUntil(project, far)
		}
	}
	now := benchStart
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		l, ok, _ := c.Acquire(now, 100)
		if !ok || l.KeyID != "key1" {
			b.Fatalf("got %q ok=%v, want key1", l.KeyID, ok)
		}
	}
}

// BenchmarkAcquireTPM: one acquisition on 5 ready lanes of a class with TPM
// (never reached), its budget per record local (shared=false) or shared
// with other processes (shared=true, bucket.ClassConfig.SharedTPM: each
// lease is taken from its record's token budget).
func BenchmarkAcquireTPM(b *testing.B) {
	for _, shared := range []bool{false, true} {
		b.Run(fmt.Sprintf("shared=%v", shared), func(b *testing.B) {
			keys := make([]bucket.Key, 5)
			for i := range keys {
				id := fmt.Sprintf("key%d", i+1)
				keys[i] = bucket.Key{ID: id, Project: id}
			}
			p, err := bucket.New(bucket.Config{
				Classes: []bucket.ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 1 << 30, RPD: 1 << 40, TPM: 1 << 40}, SharedTPM: shared}},
				Keys:    keys,
			})
			if err != nil {
				b.Fatal(err)
			}
			acquireLoop(b, p.Class("text"))
		})
	}
}
