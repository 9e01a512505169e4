package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
// against the same path without one (its time and CPU), and the cost of
// one grant. The ledger's own work per request with grants in hand (the
// grant excluded) is scheduler's BenchmarkLedgerHotPath, on the
// scheduler's own ledger type.

var saturation = flag.Duration("redis-saturation", 20*time.Second, "how long BenchmarkRedisRoundTrips keeps the lanes saturated (the first 2 s are not counted)")

// roundTrips is a go-redis hook that counts what the client sends: each
// command is one round trip (a script's EVALSHA, and its EVAL when Redis
// did not have the script yet, count one each), a pipeline or transaction
// one. Messages pushed to a subscription are not requests and not counted.
//
// It also classifies each round trip (see rtKind) by the script it runs,
// recognized by its keys (store.Redis's key layout: the scripts are not
// exported), and attributes it to the class of the lanes it touches (a
// call over lanes of several classes is split evenly between them; one
// touching no lane, such as a heartbeat, to no class: "").
type roundTrips struct {
	n  atomic.Int64
	mu sync.Mutex
	by map[rtKey]float64
}

// rtKey is a class ("" for none) and a kind of round trip.
type rtKey struct{ class, kind string }

// The kinds of round trips roundTrips tells apart.
const (
	rtGrant    = "grant"     // a grant script call, granted, carrying no heartbeat
	rtGrantHB  = "grantbeat" // a grant and the heartbeat it carries, one pipeline
	rtRefused  = "refused"   // a grant refused (window, day, cooldown...), carrying a heartbeat or not
	rtBeat     = "beat"      // the heartbeat's script alone
	rtSettle   = "settle"    // settleScript: grants over, settled apart from a grant
	rtGiveBack = "giveback"  // unused day units or grants taken ahead given back
	rtOther    = "other"     // anything else (views, limits, usage...)
)

// rtKinds is every kind, in report order.
var rtKinds = []string{rtGrant, rtGrantHB, rtRefused, rtBeat, rtSettle, rtGiveBack, rtOther}

func (r *roundTrips) add(kind string, classes []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = map[rtKey]float64{}
	}
	if len(classes) == 0 {
		r.by[rtKey{"", kind}]++
		return
	}
	for _, c := range classes {
		r.by[rtKey{c, kind}] += 1 / float64(len(classes))
	}
}

// counts returns a copy of the round trips counted so far, by class and
// kind.
func (r *roundTrips) counts() map[rtKey]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[rtKey]float64, len(r.by))
	for k, v := range r.by {
		out[k] = v
	}
	return out
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		err := next(ctx, cmd)
		kind, classes := rtKind(cmd)
		r.add(kind, classes)
		return err
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		err := next(ctx, cmds)
		kind, classes := rtOther, []string(nil)
		beat := false
		for _, c := range cmds {
			k, cs := rtKind(c)
			switch k {
			case rtBeat:
				beat = true
			case rtGrant, rtRefused:
				kind, classes = k, cs
			}
		}
		if kind == rtGrant && beat {
			kind = rtGrantHB
		} else if kind == rtOther && beat {
			kind = rtBeat
		}
		r.add(kind, classes)
		return err
	}
}

// rtKind classifies one command (its reply read for a grant: refused or
// not) and returns the classes of the lanes its keys name.
func rtKind(cmd redis.Cmder) (string, []string) {
	args := cmd.Args()
	if len(args) < 3 {
		return rtOther, nil
	}
	if name, _ := args[0].(string); name != "evalsha" && name != "eval" {
		return rtOther, nil
	}
	var n int
	switch v := args[2].(type) {
	case int:
		n = v
	case int64:
		n = int(v)
	case string:
		fmt.Sscan(v, &n)
	}
	if n <= 0 || len(args) < 3+n {
		return rtOther, nil
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint(args[3+i])
	}
	has := func(i int, part string) bool { return i < n && strings.Contains(keys[i], part) }
	var kind string
	switch {
	case strings.HasSuffix(keys[0], ":procs") && n >= 2:
		kind = rtBeat
	case !strings.HasSuffix(keys[0], ":epoch"):
		kind = rtOther
	case n == 9 && has(1, ":win:") && strings.HasSuffix(keys[5], ":procs"):
		kind = rtGrant
		if c, ok := cmd.(*redis.Cmd); ok {
			if res, err := c.Slice(); err != nil || len(res) == 0 || res[0] != "ok" {
				kind = rtRefused
			}
		}
	case has(1, ":win:") && has(2, ":wincount:") && has(3, ":day:"):
		kind = rtGiveBack // grants taken ahead given back (dropScript)
	case has(1, ":win:") && has(2, ":wincount:") && n%2 == 1:
		kind = rtSettle
	case n == 3 && has(1, ":day:") && has(2, ":use:"):
		kind = rtGiveBack // unused day units (Settle)
	default:
		kind = rtOther
	}
	if kind == rtBeat {
		return kind, nil
	}
	seen := map[string]bool{}
	var classes []string
	for _, k := range keys[1:] {
		if !strings.Contains(k, ":win:") && !strings.Contains(k, ":day:") {
			continue
		}
		i := strings.LastIndexByte(k, '/')
		if i < 0 || seen[k[i+1:]] {
			continue
		}
		seen[k[i+1:]] = true
		classes = append(classes, k[i+1:])
	}
	return kind, classes
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
// Reports roundtrips/req, req/s and the share of the lanes' RPM used, and
// the round trips by kind (see rtKind), each per request: grant-rt/req
// (granted, carrying no heartbeat), grantbeat-rt/req (granted, carrying
// the heartbeat in the same pipeline), refused-rt/req, beat-rt/req (the
// heartbeat alone), settle-rt/req (grants settled apart from a grant),
// giveback-rt/req and other-rt/req; they sum to roundtrips/req.
//
// The case class=pipeline runs what the product's pipeline runs: both
// classes (text 1000 RPM and 10,000 RPD, image 20 RPM and 250 RPD) on the
// same 5 keys in one scheduler, both saturated and paced. Besides the
// totals it reports each class's own round trips (all but the heartbeat
// alone) per request of that class (text-rt/text-req,
// text-grant-rt/text-req: its grants, granted or refused, with or
// without a heartbeat; image-rt/image-req, image-grant-rt/image-req), and
// the heartbeat alone per request of both (beat-rt/req).
// Run it with -benchtime 1x: one iteration is the whole measurement.
func BenchmarkRedisRoundTrips(b *testing.B) {
	text := satClass{"text", 1000, 10000}
	image := satClass{"image", 20, 250}
	for _, cs := range [][]satClass{{text}, {image}, {text, image}} {
		name := cs[0].name
		if len(cs) > 1 {
			name = "pipeline"
		}
		for _, impl := range []string{"memory", "redis"} {
			rpm := ""
			if len(cs) == 1 {
				rpm = fmt.Sprintf("rpm=%d/", cs[0].rpm)
			}
			b.Run(fmt.Sprintf("class=%s/%slanes=5/impl=%s", name, rpm, impl), func(b *testing.B) {
				saturateLanes(b, cs, impl)
			})
		}
	}
}

// satClass is a class BenchmarkRedisRoundTrips saturates: its name and
// per-lane limits.
type satClass struct {
	name     string
	rpm, rpd int
}

// saturateLanes is one BenchmarkRedisRoundTrips case; impl=memory is the
// same scheduler on a store.Memory ledger, the baseline of req/s and %rpm.
func saturateLanes(b *testing.B, cs []satClass, impl string) {
	const lanes = 5
	for range b.N {
		ps, keys := projects(lanes)
		var classes []scheduler.ClassConfig
		fullRPM := 0
		for _, c := range cs {
			classes = append(classes, scheduler.ClassConfig{Name: c.name, Limits: bucket.Limits{RPM: c.rpm, RPD: c.rpd}, Concurrency: 64, Burst: 1})
			fullRPM += lanes * c.rpm
		}
		var st store.Store = store.NewMemory()
		rt := &roundTrips{}
		if impl == "redis" {
			st, rt = redisLedger(b, classes, ps)
		}
		sent := make([]atomic.Int64, len(cs))
		s, err := scheduler.New(scheduler.Config{Classes: classes, Keys: keys, Store: st})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		for i, c := range cs {
			jobs := int(float64(lanes*c.rpm)*(saturation.Seconds()+2)/60*1.5) + 100
			for range jobs {
				if _, err := s.Submit(ctx, scheduler.Job{Class: c.name, Work: func(context.Context, scheduler.Lease) error {
					sent[i].Add(1)
					return nil
				}}); err != nil {
					b.Fatal(err)
				}
			}
		}
		total := func() (n int64) {
			for i := range sent {
				n += sent[i].Load()
			}
			return n
		}
		perClass := func() []int64 {
			out := make([]int64, len(sent))
			for i := range sent {
				out[i] = sent[i].Load()
			}
			return out
		}
		stop := runScheduler(b, s)
		b.ResetTimer()
		time.Sleep(2 * time.Second) // warm-up: a benchmark's wall clock, not a test's wait
		r0, s0, c0, k0, t0 := rt.n.Load(), total(), perClass(), rt.counts(), time.Now()
		time.Sleep(*saturation)
		r1, s1, c1, k1, el := rt.n.Load(), total(), perClass(), rt.counts(), time.Since(t0)
		b.StopTimer()
		cancel()
		stop()
		req := s1 - s0
		if req == 0 {
			b.Fatal("no request dispatched")
		}
		b.ReportMetric(float64(r1-r0)/float64(req), "roundtrips/req")
		b.ReportMetric(float64(req)/el.Seconds(), "req/s")
		b.ReportMetric(100*float64(req)/el.Seconds()/(float64(fullRPM)/60), "%rpm")
		if impl != "redis" {
			continue
		}
		diff := map[rtKey]float64{}
		for k, v := range k1 {
			diff[k] = v - k0[k]
		}
		for _, kind := range rtKinds {
			sum := 0.0
			for k, v := range diff {
				if k.kind == kind {
					sum += v
				}
			}
			b.ReportMetric(sum/float64(req), kind+"-rt/req")
		}
		if len(cs) == 1 {
			continue
		}
		for i, c := range cs {
			n := c1[i] - c0[i]
			if n == 0 {
				b.Fatalf("class %s: no request dispatched", c.name)
			}
			own, grants := 0.0, 0.0
			for k, v := range diff {
				if k.class != c.name {
					continue
				}
				own += v
				if k.kind == rtGrant || k.kind == rtGrantHB || k.kind == rtRefused {
					grants += v
				}
			}
			b.ReportMetric(own/float64(n), c.name+"-rt/"+c.name+"-req")
			b.ReportMetric(grants/float64(n), c.name+"-grant-rt/"+c.name+"-req")
			b.ReportMetric(100*float64(n)/el.Seconds()/(float64(lanes*c.rpm)/60), c.name+"-%rpm")
		}
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
//
// Besides ns/op and allocations it reports the CPU a job costs over the
// timed part: proc-cpu-ns/job, the whole test process's user + system
// time (getrusage RUSAGE_SELF: the scheduler, the client, the grants taken
// ahead in the background, the garbage collector); with REDIS_ADDR set,
// for both impls, redis-cpu-ns/job, redis-server's used_cpu_user +
// used_cpu_sys (INFO cpu, microseconds) over the same span (on the memory
// ledger only its idle work); and cpu-ns/job, their sum. On a machine
// whose cores the process and redis-server share, the sum is what the
// Redis ledger costs against the memory one whatever the load.
func BenchmarkSchedulerLedger(b *testing.B) {
	const lanes, rpd = 100, 10000
	ps, keys := projects(lanes)
	classes := []scheduler.ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 1 << 30, RPD: rpd}, Concurrency: 64}}
	for _, impl := range []string{"memory", "redis"} {
		b.Run("impl="+impl, func(b *testing.B) {
			// Daily protection (bucket.Config.Critical, 90 %) holds the
			// class's jobs once 90 % of the lanes' day is counted, and on
			// the Redis ledger the shared day count holds, besides the
			// jobs run, each lane's grants taken ahead and units banked:
			// a run that needs the last of those 90 % waits for the next
			// Pacific day (900,000 jobs did: the day count stopped at
			// 900,216). Each lane may hold up to three grants of 1 % of
			// RPD (the current one, one taken ahead, banked units).
			if limit := lanes*rpd*9/10 - lanes*3*(rpd/100); b.N > limit {
				b.Fatalf("b.N %d: more than %d jobs (90 %% of the lanes' day, %d, less three grants of %d units per lane held ahead) would wait for daily protection until the next Pacific day: use -benchtime %dx or less", b.N, limit, lanes*rpd, rpd/100, limit)
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
			srv0, srvOK := redisCPU(b)
			b.ReportAllocs()
			proc0 := procCPU(b)
			b.ResetTimer()
			submitAll(b, s, b.N)
			b.StopTimer()
			proc := procCPU(b) - proc0
			cpu := proc
			b.ReportMetric(float64(proc.Nanoseconds())/float64(b.N), "proc-cpu-ns/job")
			if srvOK {
				srv1, _ := redisCPU(b)
				cpu += srv1 - srv0
				b.ReportMetric(float64((srv1-srv0).Nanoseconds())/float64(b.N), "redis-cpu-ns/job")
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/job")
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
// Besides ns/op it reports a grant's CPU, as BenchmarkSchedulerLedger a
// job's: proc-cpu-ns/op (the test process, getrusage RUSAGE_SELF, over
// the whole b.Loop), redis-cpu-ns/op (redis-server, INFO cpu) and their
// sum, cpu-ns/op.
func BenchmarkRedisGrant(b *testing.B) {
	for _, units := range []int{1, 100} {
		b.Run(fmt.Sprintf("units=%d", units), func(b *testing.B) {
			classes := []scheduler.ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 1 << 40, RPD: 1 << 40}}}
			st, rt := redisLedger(b, classes, []string{"p1"})
			lane := store.LaneID{Project: "p1", Class: "text"}
			ctx := context.Background()
			day := bucket.Day(time.Now(), bucket.Pacific)
			r0 := rt.n.Load()
			srv0, _ := redisCPU(b)
			b.ReportAllocs()
			proc0 := procCPU(b)
			for b.Loop() {
				at := time.Now()
				if _, err := st.Reserve(ctx, store.Record{Lane: lane, Day: day, Units: units, Covers: units, At: at, Until: at.Add(bucket.ChunkLife)}); err != nil {
					b.Fatal(err)
				}
			}
			proc := procCPU(b) - proc0
			srv1, _ := redisCPU(b)
			b.ReportMetric(float64(rt.n.Load()-r0)/float64(b.N), "roundtrips/op")
			b.ReportMetric(float64(proc.Nanoseconds())/float64(b.N), "proc-cpu-ns/op")
			b.ReportMetric(float64((srv1-srv0).Nanoseconds())/float64(b.N), "redis-cpu-ns/op")
			b.ReportMetric(float64((proc+srv1-srv0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// procCPU returns the user + system CPU time the test process has used so
// far (getrusage RUSAGE_SELF: every thread).
func procCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU returns the user + system CPU time the redis-server at
// REDIS_ADDR has used so far (INFO cpu: used_cpu_user + used_cpu_sys, in
// seconds to the microsecond), and false when REDIS_ADDR is not set.
func redisCPU(tb testing.TB) (time.Duration, bool) {
	tb.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		return 0, false
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatalf("INFO cpu: %v", err)
	}
	var sum time.Duration
	found := 0
	for _, line := range strings.Split(info, "\n") {
		name, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "used_cpu_user" && name != "used_cpu_sys") {
			continue
		}
		sec, err := strconv.ParseFloat(val, 64)
		if err != nil {
			tb.Fatalf("INFO cpu: %s: %q: %v", name, val, err)
		}
		sum += time.Duration(sec * 1e9)
		found++
	}
	if found != 2 {
		tb.Fatalf("INFO cpu: used_cpu_user and used_cpu_sys not both found in %q", info)
	}
	return sum, true
}
