package bench

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// slideshowd's Redis ledger (store.Redis, issue 13) measured against a real
// redis-server at REDIS_ADDR (bench/redis.sh starts one; without it these
// benchmarks skip): the round trips a scheduler sends to Redis per request
// while its lanes are saturated, the dispatch path with a Redis ledger
// against the same path without one, and the cost of one grant.

var saturation = flag.Duration("redis-saturation", 20*time.Second, "how long BenchmarkRedisRoundTrips keeps the lanes saturated (the first 2 s are not counted)")

// roundTrips is a go-redis hook that counts what the client sends: each
// command is one round trip (a script's EVALSHA, and its EVAL when Redis
// did not have the script yet, count one each), a pipeline or transaction
// one. Messages pushed to a subscription are not requests and not counted.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// projects returns n project ids p1..pn, each with one key.
func projects(n int) ([]string, []bucket.Key) {
	ps := make([]string, n)
	ks := make([]bucket.Key, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("p%d", i+1)
		ks[i] = bucket.Key{ID: fmt.Sprintf("key%d", i+1), Project: ps[i]}
	}
	return ps, ks
}

// redisLedger opens a Redis ledger over a Memory store on the flushed
// REDIS_ADDR, with a round-trip counter on its client.
func redisLedger(tb testing.TB, classes []scheduler.ClassConfig, projects []string) (*store.Redis, *roundTrips) {
	tb.Helper()
	addr := redisAddr(tb)
	flushRedis(tb, addr)
	rt := &roundTrips{}
	c := redis.NewClient(&redis.Options{Addr: addr})
	c.AddHook(rt)
	tb.Cleanup(func() { c.Close() })
	rcs := make([]store.RedisClass, len(classes))
	for i, cc := range classes {
		rcs[i] = store.RedisClass{Name: cc.Name, RPM: cc.Limits.RPM, RPD: cc.Limits.RPD, Margin: cc.WindowMargin}
	}
	st, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{
		Client: c, Cluster: "bench", Classes: rcs, Projects: projects})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st, rt
}

// runScheduler runs s until the returned stop is called.
func runScheduler(tb testing.TB, s *scheduler.Scheduler) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	}
}

// BenchmarkRedisRoundTrips: one scheduler on a Redis ledger, 5 lanes
// (projects) of a class at its published limits, far more no-op jobs
// queued than the lanes can take, paced (Burst 1: one request every
// 60/RPM s per lane, the smallest grants, so the most round trips; the
// default burst sends a minute's RPM at once in grants of up to 1 % of
// RPD, or bucket.MaxChunk's 10 on a lane with a small RPD). After 2 s of
// warm-up it counts, for -redis-saturation (20 s), the
// commands the client sends to Redis (grants, refused grants, heartbeats,
// the day counts read for daily protection) and the requests dispatched.
// Reports roundtrips/req, req/s and the share of the lanes' RPM used.
// Run it with -benchtime 1x: one iteration is the whole measurement.
func BenchmarkRedisRoundTrips(b *testing.B) {
	type class struct {
		name     string
		rpm, rpd int
	}
	for _, cc := range []class{{"text", 1000, 10000}, {"image", 20, 250}} {
		for _, impl := range []string{"memory", "redis"} {
			b.Run(fmt.Sprintf("class=%s/rpm=%d/lanes=5/impl=%s", cc.name, cc.rpm, impl), func(b *testing.B) {
				saturateLanes(b, cc.name, cc.rpm, cc.rpd, impl)
			})
		}
	}
}

// saturateLanes is one BenchmarkRedisRoundTrips case; impl=memory is the
// same scheduler on a store.Memory ledger, the baseline of req/s and %rpm.
func saturateLanes(b *testing.B, class string, rpm, rpd int, impl string) {
	const lanes = 5
	for range b.N {
		ps, keys := projects(lanes)
		classes := []scheduler.ClassConfig{{Name: class, Limits: bucket.Limits{RPM: rpm, RPD: rpd}, Concurrency: 64, Burst: 1}}
		var st store.Store = store.NewMemory()
		rt := &roundTrips{}
		if impl == "redis" {
			st, rt = redisLedger(b, classes, ps)
		}
		var sent atomic.Int64
		s, err := scheduler.New(scheduler.Config{Classes: classes, Keys: keys, Store: st})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		jobs := int(float64(lanes*rpm)*(saturation.Seconds()+2)/60*1.5) + 100
		for range jobs {
			if _, err := s.Submit(ctx, scheduler.Job{Class: class, Work: func(context.Context, scheduler.Lease) error {
				sent.Add(1)
				return nil
			}}); err != nil {
				b.Fatal(err)
			}
		}
		stop := runScheduler(b, s)
		b.ResetTimer()
		time.Sleep(2 * time.Second) // warm-up: a benchmark's wall clock, not a test's wait
		r0, s0, t0 := rt.n.Load(), sent.Load(), time.Now()
		time.Sleep(*saturation)
		r1, s1, el := rt.n.Load(), sent.Load(), time.Since(t0)
		b.StopTimer()
		cancel()
		stop()
		req := s1 - s0
		if req == 0 {
			b.Fatal("no request dispatched")
		}
		b.ReportMetric(float64(r1-r0)/float64(req), "roundtrips/req")
		b.ReportMetric(float64(req)/el.Seconds(), "req/s")
		b.ReportMetric(100*float64(req)/el.Seconds()/(float64(lanes*rpm)/60), "%rpm")
	}
}

// BenchmarkSchedulerLedger: no-op jobs through Submit -> dispatch (acquire,
// commit: the write-ahead record, which on a Redis ledger is the grant) ->
// run -> result, with 64 workers and 8 submitters as BenchmarkScheduler, on
// 100 lanes limited by their day only (RPM 2^30, RPD 10,000: a record is at
// most 1 % of RPD, 100 units, as at the published text limits), with the
// ledger in memory (impl=memory: store.Memory) or on Redis (impl=redis:
// store.Redis over store.Memory, each record a grant, one Lua script round
// trip, made by the dispatcher). Compare with go tool benchstat -col /impl.
func BenchmarkSchedulerLedger(b *testing.B) {
	const lanes, rpd = 100, 10000
	ps, keys := projects(lanes)
	classes := []scheduler.ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 1 << 30, RPD: rpd}, Concurrency: 64}}
	for _, impl := range []string{"memory", "redis"} {
		b.Run("impl="+impl, func(b *testing.B) {
			if b.N > lanes*rpd*9/10 {
				b.Fatalf("b.N %d: more than 90 %% of the lanes' day (%d): use a smaller -benchtime", b.N, lanes*rpd)
			}
			var st store.Store = store.NewMemory()
			rt := &roundTrips{}
			if impl == "redis" {
				st, rt = redisLedger(b, classes, ps)
			}
			s, err := scheduler.New(scheduler.Config{Classes: classes, Keys: keys, Store: st})
			if err != nil {
				b.Fatal(err)
			}
			stop := runScheduler(b, s)
			defer stop()
			r0 := rt.n.Load()
			b.ReportAllocs()
			b.ResetTimer()
			submitAll(b, s, b.N)
			b.StopTimer()
			if impl == "redis" {
				b.ReportMetric(float64(rt.n.Load()-r0)/float64(b.N), "roundtrips/req")
			}
		})
	}
}

// submitAll submits n no-op jobs from 8 goroutines and waits for them.
func submitAll(b *testing.B, s *scheduler.Scheduler, n int) {
	const submitters = 8
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range submitters {
		m := n / submitters
		if g == 0 {
			m += n % submitters
		}
		wg.Go(func() {
			hs := make([]*scheduler.Handle, 0, 256)
			for range m {
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
		})
	}
	wg.Wait()
}

// BenchmarkRedisGrant: one grant, store.Redis.Reserve: the grant script
// (one round trip to redis-server on loopback: epoch, lane state, window
// and day checks, the slots and units taken) and the write-ahead record in
// the process's own store (Memory here), for a record of 1 unit covering 1
// request and of 100 (1 % of the published text RPD). Compare with the old
// design's six round trips a request (BenchmarkKeySelection impl=redis).
func BenchmarkRedisGrant(b *testing.B) {
	for _, units := range []int{1, 100} {
		b.Run(fmt.Sprintf("units=%d", units), func(b *testing.B) {
			classes := []scheduler.ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 1 << 40, RPD: 1 << 40}}}
			st, rt := redisLedger(b, classes, []string{"p1"})
			lane := store.LaneID{Project: "p1", Class: "text"}
			ctx := context.Background()
			day := bucket.Day(time.Now(), bucket.Pacific)
			r0 := rt.n.Load()
			b.ReportAllocs()
			for b.Loop() {
				at := time.Now()
				if _, err := st.Reserve(ctx, store.Record{Lane: lane, Day: day, Units: units, Covers: units, At: at, Until: at.Add(bucket.ChunkLife)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rt.n.Load()-r0)/float64(b.N), "roundtrips/op")
		})
	}
}
