package store_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/slideshowd/slideshowd/store"
)

// benchStores opens each implementation for a benchmark.
var benchStores = []struct {
	name string
	open func(b *testing.B) store.Store
}{
	{"bolt-sync", func(b *testing.B) store.Store { return openBench(b, store.Options{}) }},
	{"bolt-nosync", func(b *testing.B) store.Store { return openBench(b, store.Options{NoSync: true}) }},
	{"memory", func(b *testing.B) store.Store { return store.NewMemory() }},
}

func openBench(b *testing.B, opts store.Options) store.Store {
	s, err := store.Open(filepath.Join(b.TempDir(), "bench.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAddDaily measures one write-ahead chunk record. bolt-sync is what
// the daemon pays per chunk (an fsync); the others show the overhead around it.
func BenchmarkAddDaily(b *testing.B) {
	for _, bs := range benchStores {
		b.Run("type:"+bs.name, func(b *testing.B) {
			s := bs.open(b)
			defer s.Close()
			lanes := []store.LaneID{textA, imageA, textB}
			ctx := b.Context()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := s.AddDaily(ctx, "2026-03-08", lanes[i%len(lanes)], 10); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkAddDailyParallel measures contended AddDaily calls.
func BenchmarkAddDailyParallel(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(fmt.Sprintf("type:%s;goroutines:%d", bs.name, 4), func(b *testing.B) {
			s := bs.open(b)
			defer s.Close()
			ctx := b.Context()
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.AddDaily(ctx, "2026-03-08", textA, 1); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
