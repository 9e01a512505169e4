package bench

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
)

// The design slideshowd replaces kept usage in Redis and selected a key per
// request like this (oldDesign.pick): for each key in order, read its RPM
// and daily counters for the model; take the first key under both safe
// limits; then INCR both counters and EXPIRE them (60 s and 24 h, set on the
// first call: EXPIRE ... NX). Each command is atomic on its own; nothing
// makes the read, the choice and the increment one step.
//
// The same code runs on a real redis-server (respConn, the RESP protocol by
// hand: five commands do not justify a client library) and on memCounters,
// an in-process stand-in with a clock the tests control.

// counters is what the old design needs from Redis.
type counters interface {
	get(key string) (int64, error)                // GET; 0 when missing
	incr(key string) (int64, error)               // INCR
	expireNX(key string, ttl time.Duration) error // EXPIRE key seconds NX
}

type oldDesign struct {
	store    counters
	keys     []string
	model    string
	rpm, rpd int64 // safe limits
	// between runs after the reads and before the increments (tests only).
	between func()
}

func (d *oldDesign) rpmKey(k string) string { return "usage:" + k + ":" + d.model + ":rpm" }
func (d *oldDesign) dayKey(k string) string { return "usage:" + k + ":" + d.model + ":day" }

var errNoKey = errors.New("old design: every key at its safe limit")

// pick selects a key and records the request on it.
func (d *oldDesign) pick() (string, error) {
	chosen := ""
	for _, k := range d.keys {
		m, err := d.store.get(d.rpmKey(k))
		if err != nil {
			return "", err
		}
		day, err := d.store.get(d.dayKey(k))
		if err != nil {
			return "", err
		}
		if m < d.rpm && day < d.rpd {
			chosen = k
			break
		}
	}
	if chosen == "" {
		return "", errNoKey
	}
	if d.between != nil {
		d.between()
	}
	for _, c := range []struct {
		key string
		ttl time.Duration
	}{{d.rpmKey(chosen), time.Minute}, {d.dayKey(chosen), 24 * time.Hour}} {
		if _, err := d.store.incr(c.key); err != nil {
			return "", err
		}
		if err := d.store.expireNX(c.key, c.ttl); err != nil {
			return "", err
		}
	}
	return chosen, nil
}

// respConn is one connection to redis-server speaking RESP2. Not safe for
// concurrent use.
type respConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialRedis(addr string) (*respConn, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &respConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}, nil
}

func (c *respConn) Close() error { return c.c.Close() }

// do sends one command and reads its reply: an integer, a bulk string
// parsed as an integer (nil: 0), or a status.
func (c *respConn) do(args ...string) (int64, error) {
	fmt.Fprintf(c.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.w, "$%d\r\n%s\r\n", len(a), a)
	}
	if err := c.w.Flush(); err != nil {
		return 0, err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 3 {
		return 0, fmt.Errorf("redis: short reply %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '+':
		return 0, nil
	case '-':
		return 0, fmt.Errorf("redis: %s", body)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return 0, err // nil bulk: a missing key
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(c.r, buf); err != nil {
			return 0, err
		}
		return strconv.ParseInt(string(buf[:n]), 10, 64)
	}
	return 0, fmt.Errorf("redis: unexpected reply %q", line)
}

func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (c *respConn) get(key string) (int64, error)  { return c.do("GET", key) }
func (c *respConn) incr(key string) (int64, error) { return c.do("INCR", key) }
func (c *respConn) expireNX(key string, ttl time.Duration) error {
	_, err := c.do("EXPIRE", key, strconv.Itoa(int(ttl/time.Second)), "NX")
	return err
}

// memCounters is Redis's semantics for the old design's commands, in
// process, with a settable clock: each command atomic, keys expiring at
// their TTL. Safe for concurrent use.
type memCounters struct {
	mu  sync.Mutex
	now time.Time
	v   map[string]int64
	exp map[string]time.Time
}

func newMemCounters(now time.Time) *memCounters {
	return &memCounters{now: now, v: map[string]int64{}, exp: map[string]time.Time{}}
}

func (m *memCounters) setNow(t time.Time) { m.mu.Lock(); m.now = t; m.mu.Unlock() }

func (m *memCounters) expireLocked(key string) {
	if e, ok := m.exp[key]; ok && !m.now.Before(e) {
		delete(m.v, key)
		delete(m.exp, key)
	}
}

func (m *memCounters) get(key string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(key)
	return m.v[key], nil
}

func (m *memCounters) incr(key string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(key)
	m.v[key]++
	return m.v[key], nil
}

func (m *memCounters) expireNX(key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(key)
	if _, ok := m.v[key]; ok {
		if _, has := m.exp[key]; !has {
			m.exp[key] = m.now.Add(ttl)
		}
	}
	return nil
}

// flushRedis empties the test database of the server at addr.
func flushRedis(tb testing.TB, addr string) {
	tb.Helper()
	c, err := dialRedis(addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if _, err := c.do("FLUSHDB"); err != nil {
		tb.Fatal(err)
	}
}

func redisAddr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		tb.Skip("REDIS_ADDR is not set: run bench/redis.sh (make bench-redis), which starts a redis-server on loopback")
	}
	return addr
}

func benchKeys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("key%d", i+1)
	}
	return ks
}

// BenchmarkKeySelection: choosing a key and recording the request, the old
// way (impl=redis: 2 reads per key tried, then INCR and EXPIRE of both
// counters, each a round trip to redis-server on loopback) and slideshowd's
// (impl=bucket: one Acquire on a class of ready lanes, in memory; the
// durable daily count is written once per chunk of RPM/60 requests, not per
// request). The old design's first key stays under its limits, its best case.
// Compare with: go tool benchstat -col /impl.
func BenchmarkKeySelection(b *testing.B) {
	const lanes = 5
	b.Run(fmt.Sprintf("impl=bucket/lanes=%d", lanes), func(b *testing.B) {
		acquireLoop(b, readyClass(b, lanes))
	})
	b.Run(fmt.Sprintf("impl=redis/lanes=%d", lanes), func(b *testing.B) {
		addr := redisAddr(b)
		flushRedis(b, addr)
		conn, err := dialRedis(addr)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		d := &oldDesign{store: conn, keys: benchKeys(lanes), model: "gemini-3-flash-preview", rpm: 1 << 40, rpd: 1 << 40}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.pick(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkKeySelectionParallel: the same from GOMAXPROCS goroutines, each
// with its own connection for the old design.
func BenchmarkKeySelectionParallel(b *testing.B) {
	const lanes = 5
	b.Run(fmt.Sprintf("impl=bucket/lanes=%d", lanes), func(b *testing.B) {
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
	b.Run(fmt.Sprintf("impl=redis/lanes=%d", lanes), func(b *testing.B) {
		addr := redisAddr(b)
		flushRedis(b, addr)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			conn, err := dialRedis(addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			d := &oldDesign{store: conn, keys: benchKeys(lanes), model: "gemini-3-flash-preview", rpm: 1 << 40, rpd: 1 << 40}
			for pb.Next() {
				if _, err := d.pick(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// TestOldDesignOverAdmits shows what the old design gets wrong that no
// timing shows: with one request left under the limit, n callers that all
// read the counters before any of them increments (an interleaving nothing
// in the design prevents) are all admitted. The barrier forces that
// interleaving, so the outcome is certain; the commands run on the
// in-process stand-in and, with REDIS_ADDR set, on a real redis-server.
// bucket.Class.Acquire, from the same n goroutines, admits exactly one.
func TestOldDesignOverAdmits(t *testing.T) {
	const n, limit = 8, 100
	stores := map[string]func(t *testing.T) counters{
		"memory": func(*testing.T) counters { return newMemCounters(time.Now()) },
	}
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		stores["redis-server"] = func(t *testing.T) counters {
			flushRedis(t, addr)
			return &lockedConns{addr: addr, t: t}
		}
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			store := mk(t)
			d := &oldDesign{store: store, keys: []string{"key1"}, model: "gemini-3-pro-image-preview", rpm: limit, rpd: 1 << 40}
			for range limit - 1 {
				if _, err := d.pick(); err != nil {
					t.Fatal(err)
				}
			}
			var read sync.WaitGroup
			read.Add(n)
			d.between = func() { read.Done(); read.Wait() }
			var wg sync.WaitGroup
			admitted := make(chan string, n)
			for range n {
				wg.Go(func() {
					if k, err := d.pick(); err == nil {
						admitted <- k
					} else if !errors.Is(err, errNoKey) {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			close(admitted)
			got := len(admitted)
			rpm, _ := store.get(d.rpmKey("key1"))
			t.Logf("old design on %s: %d of %d callers admitted with 1 request left; the minute's counter reads %d, limit %d", name, got, n, rpm, limit)
			if got != n || rpm != limit-1+n {
				t.Errorf("admitted %d (counter %d), want all %d over the limit: the race the design allows", got, rpm, n)
			}
		})
	}
	t.Run("bucket", func(t *testing.T) {
		const rpm = 60
		p, err := bucket.New(bucket.Config{
			Classes: []bucket.ClassConfig{{Name: "image", Limits: bucket.Limits{RPM: rpm, RPD: 1 << 30}}},
			Keys:    []bucket.Key{{ID: "key1", Project: "key1"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		c := p.Class("image")
		for i := range rpm - 1 { // one a second, as pacing allows
			if _, ok, _ := c.Acquire(benchStart.Add(time.Duration(i)*time.Second), 0); !ok {
				t.Fatalf("acquisition %d refused", i)
			}
		}
		at := benchStart.Add(59500 * time.Millisecond) // one request left in the window
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := 0
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				if _, ok, _ := c.Acquire(at, 0); ok {
					mu.Lock()
					got++
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		used := c.Usage(at).Lanes[0].RPMUsed
		if got != 1 || used != rpm {
			t.Errorf("bucket admitted %d of %d with 1 request left (window holds %d, limit %d), want 1", got, n, used, rpm)
		}
	})
}

// lockedConns gives each caller its own connection to redis-server (a
// connection is not safe for concurrent use).
type lockedConns struct {
	addr  string
	t     *testing.T
	mu    sync.Mutex
	conns []*respConn
}

func (l *lockedConns) with(f func(*respConn) (int64, error)) (int64, error) {
	l.mu.Lock()
	var c *respConn
	if n := len(l.conns); n > 0 {
		c, l.conns = l.conns[n-1], l.conns[:n-1]
	}
	l.mu.Unlock()
	if c == nil {
		var err error
		if c, err = dialRedis(l.addr); err != nil {
			return 0, err
		}
		l.t.Cleanup(func() { c.Close() })
	}
	v, err := f(c)
	l.mu.Lock()
	l.conns = append(l.conns, c)
	l.mu.Unlock()
	return v, err
}

func (l *lockedConns) get(key string) (int64, error) {
	return l.with(func(c *respConn) (int64, error) { return c.get(key) })
}
func (l *lockedConns) incr(key string) (int64, error) {
	return l.with(func(c *respConn) (int64, error) { return c.incr(key) })
}
func (l *lockedConns) expireNX(key string, ttl time.Duration) error {
	_, err := l.with(func(c *respConn) (int64, error) { return 0, c.expireNX(key, ttl) })
	return err
}

// TestOldDesignDayRolls shows the old design's day: its daily counter
// expires 24 h after the first call, not at Pacific midnight. With one call
// at 23:00, the counter runs until 23:00 the next day: that day it grants
// the RPD - 1 left in the morning and, from 23:00, a fresh RPD: 2 RPD - 1
// requests on one Pacific quota day, and the per-day 429s that follow.
// bucket counts the Pacific day: RPD from midnight, no more.
func TestOldDesignDayRolls(t *testing.T) {
	const rpd = 10
	day0 := time.Date(2026, 3, 2, 23, 0, 0, 0, bucket.Pacific)
	day1 := bucket.NextMidnight(day0, bucket.Pacific)
	mem := newMemCounters(day0)
	d := &oldDesign{store: mem, keys: []string{"key1"}, model: "gemini-3-pro-image-preview", rpm: 1 << 40, rpd: rpd}
	p, err := bucket.New(bucket.Config{
		Classes: []bucket.ClassConfig{{Name: "image", Limits: bucket.Limits{RPM: 1 << 20, RPD: rpd}}},
		Keys:    []bucket.Key{{ID: "key1", Project: "key1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Class("image")
	old, lane := map[string]int{}, map[string]int{}
	try := func(at time.Time) {
		mem.setNow(at)
		day := bucket.Day(at, bucket.Pacific)
		if _, err := d.pick(); err == nil {
			old[day]++
		}
		if _, ok, _ := c.Acquire(at, 0); ok {
			lane[day]++
		}
	}
	// One call at 23:00, then one try a minute through the next Pacific day.
	try(day0)
	for at := day1; at.Before(day1.Add(24 * time.Hour)); at = at.Add(time.Minute) {
		try(at)
	}
	d1 := bucket.Day(day1, bucket.Pacific)
	t.Logf("requests granted on Pacific day %s: old design %d, bucket %d (RPD %d)", d1, old[d1], lane[d1], rpd)
	if old[d1] != 2*rpd-1 {
		t.Errorf("old design granted %d on %s, want %d: its counter from 23:00 the day before expires at 23:00", old[d1], d1, 2*rpd-1)
	}
	for day, n := range lane {
		if n > rpd {
			t.Errorf("bucket granted %d on %s, RPD %d", n, day, rpd)
		}
	}
	if lane[d1] != rpd {
		t.Errorf("bucket granted %d on %s, want the whole RPD %d", lane[d1], d1, rpd)
	}
}
