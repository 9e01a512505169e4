package scheduler

import (
	"context"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// BenchmarkLedgerHotPath: the quota ledger's work per request, with grants
// in hand, in memory (impl=memory: store.Memory) and on Redis (impl=redis:
// store.Redis over store.Memory), always both in the same run. Redis is the
// server at REDIS_ADDR (bench/redis.sh, make bench-redis, sets it) or, when
// it is not set, one started for the benchmark by internal/redistest; both
// impls skip when neither is available. One class, 100 lanes limited by
// their day only (RPM 2^30, RPD 10,000: a record is at most 1 % of RPD,
// 100 units), on one goroutine (the class's dispatcher), on the real clock.
//
// What runs is the scheduler's own: a Scheduler built by New on that store
// (not run), its ledger (ledger.go) and its class's bucket.Class. An
// iteration is one request, the calls the dispatcher and a worker make for
// a job that succeeds: the class's Critical (daily protection: with a
// shared store, the shared day counts), ledger.acquire (the lease),
// ledger.commit (when the lease asks for a record, the record's Reserve,
// then Scheduled and SharedDay; Stamp and, on Redis, Stamped, the stamp
// kept for the grant's give-back), then ledger.sent (Release, the TPM
// overrun check) and the class's Settled, as outcome calls them.
//
// Timed: all of it except the record's Reserve call inside commit (on
// Redis, ReserveUpTo: the grant, one script round trip, or a record served
// from the grant taken ahead, which starts the next grant ahead in the
// background; in memory, the write-ahead record). The benchmark replaces
// the ledger's durable store and its up-to store (its fields durable and
// upTo) with wrappers that stop the timer around the real call (offThread):
// no code of the ledger is changed or copied. The wrapper runs the call on
// a goroutine of its own while the benchmark's, locked to its thread,
// spins, and waits, timer stopped, until the goroutines the call started
// (the next grant taken ahead, a settlement) have returned, so that no
// grant overlaps the timed part and the grant's code never runs on the
// benchmark's thread, which never blocks, as the scheduler's dispatcher
// served from grants taken ahead (sleeping once a record on the
// benchmark's thread was measured to add about 17 ns a request to the
// memory case). The wrappers pass the call's arguments and results through
// fields: they allocate nothing in the timed part. They write the
// arguments and read the results with the timer stopped: in the dispatcher
// they go in registers, while here the other goroutine's core wrote the
// results, and reading them in the timed part counted a cache line's
// transfer a record (up to 5 ns a request on Redis in a profile) as the
// ledger's. Garbage the excluded part
// allocates may still be collected during the timed part. Allocations are
// counted in the timed part only.
//
// Reports, besides ns/op and allocations: thread-cpu-ns/op (on Linux: the
// timed part's CPU time on the benchmark's thread, clock_gettime
// CLOCK_THREAD_CPUTIME_ID read at each end of each timed span, less the
// cost of a read measured before (threadCPUCost); unlike ns/op it leaves
// out the time the thread waited for a core, and the GC's and other
// goroutines' work on other threads), records/req (leases that asked for a
// record, each a Reserve: on Redis a grant, at once or taken ahead) and, on
// Redis, roundtrips/req (what the client sent, grants taken ahead
// included). Use -benchtime Nx with N at most 870,000 (daily protection,
// below), e.g. 300000x; compare with go tool benchstat -col /impl:
//
//	REDIS_ADDR=127.0.0.1:P go test ./scheduler/ -run '^$' -bench LedgerHotPath -benchmem -benchtime 300000x -count 8
//
// make test does not run it (no -bench).
func BenchmarkLedgerHotPath(b *testing.B) {
	const lanes, rpd = 100, 10000
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = redistest.Start(b, redistest.Options{}).Addr() // skips without redis-server
	}
	classes := []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 1 << 30, RPD: rpd}}}
	ks := keys(lanes)
	projects := make([]string, lanes)
	for i, k := range ks {
		projects[i] = k.Project
	}
	for _, impl := range []string{"memory", "redis"} {
		b.Run("impl="+impl, func(b *testing.B) {
			if limit := lanes*rpd*9/10 - lanes*3*(rpd/100); b.N > limit {
				b.Fatalf("b.N %d: more than %d requests (90 %% of the lanes' day, %d, less three grants of %d units per lane held ahead) would meet daily protection: use -benchtime %dx or less", b.N, limit, lanes*rpd, rpd/100, limit)
			}
			var st store.Store = store.NewMemory()
			rt := &countHook{}
			if impl == "redis" {
				st = benchRedisLedger(b, addr, rt, classes, projects)
			}
			s, err := New(Config{Classes: classes, Keys: ks, Store: st, Logger: zerolog.Nop()})
			if err != nil {
				b.Fatal(err)
			}
			c := s.classes["text"].class
			l := s.ledger
			ctx := context.Background()

			off := &offThread{b: b, calls: make(chan func())}
			defer close(off.calls)
			go func() {
				for f := range off.calls {
					f()
					off.done.Store(true)
				}
			}()
			if l.durable == nil {
				b.Fatalf("impl=%s: the store is not a store.Ledger", impl)
			}
			l.durable = newOffLedger(l.durable, off)
			if l.upTo != nil {
				l.upTo = newOffUpTo(l.upTo, off)
			}

			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			off.base = runtime.NumGoroutine()
			r0 := rt.n.Load()
			var cpuOK bool
			off.cpu0, cpuOK = threadCPU()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				now := time.Now()
				_ = c.Critical(now)
				lease, ok, _ := l.acquire(c, now, 0, b.N-i)
				if !ok {
					b.Fatalf("request %d: no lane ready", i)
				}
				if _, err := l.commit(ctx, c, lease, now); err != nil {
					b.Fatalf("request %d: %v", i, err)
				}
				done := time.Now()
				l.sent(c, lease, done, -1)
				c.Settled(lease, true, done)
			}
			t, _ := threadCPU()
			b.StopTimer()
			if cpuOK {
				// Each timed span counts about one read of the clock
				// (the end of the read that opens it, the start of the
				// one that closes it): not the path's work.
				cpu := off.cpu + t - off.cpu0 - time.Duration(off.records+1)*threadCPUCost()
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "thread-cpu-ns/op")
			}
			b.ReportMetric(float64(off.records)/float64(b.N), "records/req")
			if impl == "redis" {
				b.ReportMetric(float64(rt.n.Load()-r0)/float64(b.N), "roundtrips/req")
			}
		})
	}
}

// benchRedisLedger opens a Redis ledger over a Memory store on the
// flushed Redis at addr, its client counting round trips in rt.
func benchRedisLedger(b *testing.B, addr string, rt *countHook, classes []ClassConfig, projects []string) *store.Redis {
	b.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	b.Cleanup(func() { c.Close() })
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		b.Fatalf("FLUSHDB on %s: %v", addr, err)
	}
	c.AddHook(rt)
	rcs := make([]store.RedisClass, len(classes))
	for i, cc := range classes {
		rcs[i] = store.RedisClass{Name: cc.Name, RPM: cc.Limits.RPM, RPD: cc.Limits.RPD, Margin: cc.WindowMargin}
	}
	st, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{
		Client: c, Cluster: "bench", Classes: rcs, Projects: projects})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// countHook is a go-redis hook that counts what the client sends: each
// command one round trip, a pipeline or transaction one.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// offThread runs a ledger's store calls outside BenchmarkLedgerHotPath's
// timed part, on a goroutine of its own, and keeps the timed part's thread
// CPU time.
type offThread struct {
	b       *testing.B
	calls   chan func()
	done    atomic.Bool   // the call sent on calls returned
	base    int           // goroutines while none of the store's background work runs
	records int           // calls run
	cpu     time.Duration // thread CPU time of the timed spans ended so far
	cpu0    time.Duration // thread CPU time at the start of the current span
}

// stop ends a timed span: it keeps the span's thread CPU time and stops
// the timer. The wrappers stop before they pass the call's arguments and
// start after they took its results: in the dispatcher these go in
// registers to and from the store's own code, left out of the timed part;
// through fields written on one core and read on the other they cost a
// cache line's transfer each way, which is the benchmark's, not the
// ledger's.
func (o *offThread) stop() {
	t, _ := threadCPU()
	o.b.StopTimer()
	o.cpu += t - o.cpu0
}

// start starts the timer and a timed span.
func (o *offThread) start() {
	o.b.StartTimer()
	o.cpu0, _ = threadCPU()
}

// call runs f on the other goroutine, the timer stopped (between stop and
// start), spinning until f returned and no more than base goroutines run
// (what f started in the background has returned too), failing after 10 s.
func (o *offThread) call(f func()) {
	o.records++
	o.done.Store(false)
	o.calls <- f
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; !o.done.Load() || runtime.NumGoroutine() > o.base; i++ {
		if i%(1<<16) == 0 && time.Now().After(deadline) {
			o.b.Fatalf("after 10 s: Reserve returned: %v; %d goroutines, %d before the timed loop: a grant's background work did not end", o.done.Load(), runtime.NumGoroutine(), o.base)
		}
	}
}

// offLedger is a store.Ledger whose Reserve runs through offThread. The
// call's arguments and results go through fields, and the function run is
// made once: the timed part allocates nothing for the call (a closure a
// call, and the variables it wrote, were allocated in the timed part
// before, and the refill of the allocator's cache they often needed after
// the grant's garbage was counted as the ledger's work).
type offLedger struct {
	store.Ledger
	off *offThread
	ctx context.Context
	r   store.Record
	n   int
	err error
	fn  func()
}

func newOffLedger(st store.Ledger, off *offThread) *offLedger {
	l := &offLedger{Ledger: st, off: off}
	l.fn = func() { l.n, l.err = l.Ledger.Reserve(l.ctx, l.r) }
	return l
}

func (l *offLedger) Reserve(ctx context.Context, r store.Record) (int, error) {
	l.off.stop()
	l.ctx, l.r = ctx, r
	l.off.call(l.fn)
	n, err := l.n, l.err
	l.off.start()
	return n, err
}

// offUpTo is an upToLedger whose ReserveUpTo runs through offThread, as
// offLedger's Reserve.
type offUpTo struct {
	up        upToLedger
	off       *offThread
	ctx       context.Context
	r         store.Record
	n, covers int
	sched     []time.Time
	err       error
	fn        func()
}

func newOffUpTo(up upToLedger, off *offThread) *offUpTo {
	l := &offUpTo{up: up, off: off}
	l.fn = func() { l.n, l.covers, l.sched, l.err = l.up.ReserveUpTo(l.ctx, l.r) }
	return l
}

func (l *offUpTo) ReserveUpTo(ctx context.Context, r store.Record) (int, int, []time.Time, error) {
	l.off.stop()
	l.ctx, l.r = ctx, r
	l.off.call(l.fn)
	n, covers, sched, err := l.n, l.covers, l.sched, l.err
	l.off.start()
	return n, covers, sched, err
}

// threadCPUCost is the thread CPU time one threadCPU call counts: the
// median of 1,001 differences of consecutive reads.
func threadCPUCost() time.Duration {
	d := make([]time.Duration, 1001)
	for i := range d {
		a, _ := threadCPU()
		b, _ := threadCPU()
		d[i] = b - a
	}
	slices.Sort(d)
	return d[len(d)/2]
}
