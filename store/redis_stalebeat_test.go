package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// partition is a go-redis hook that cuts one client off from Redis: while
// on, every call fails as a read that timed out would, without reaching
// Redis; armed, the next heartbeat's script is held "in flight" instead
// (written to the socket before the partition, its reply lost): its
// arguments are kept so that the test can deliver it later, as TCP does
// once the partition heals.
type partition struct {
	mu    sync.Mutex
	on    bool
	armed bool
	held  []any
}

func (p *partition) DialHook(next redis.DialHook) redis.DialHook { return next }

// isBeat reports whether cmd runs the heartbeat's script (its first two
// keys are the processes zset and the epoch).
func isBeat(cmd redis.Cmder) bool {
	a := cmd.Args()
	if len(a) < 5 || (cmd.Name() != "evalsha" && cmd.Name() != "eval") {
		return false
	}
	k0, _ := a[3].(string)
	k1, _ := a[4].(string)
	return k0 == "test:procs" && k1 == "test:epoch"
}

func (p *partition) fail(cmd redis.Cmder) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on {
		return false
	}
	if p.armed && isBeat(cmd) {
		p.armed = false
		p.held = slices.Clone(cmd.Args())
	}
	cmd.SetErr(errInjected)
	return true
}

func (p *partition) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if p.fail(cmd) {
			return errInjected
		}
		return next(ctx, cmd)
	}
}

func (p *partition) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		failed := false
		for _, c := range cmds {
			failed = p.fail(c) || failed
		}
		if failed {
			return errInjected
		}
		return next(ctx, cmds)
	}
}

// set turns the partition on or off; armed holds the next heartbeat.
func (p *partition) set(on, armed bool) {
	p.mu.Lock()
	p.on, p.armed = on, armed
	p.mu.Unlock()
}

// deliver runs the held heartbeat's script on rc now, as Redis runs a
// command that TCP delivers late: with the script's now argument (ARGV 3)
// the clock at delivery, as Redis's TIME would be; everything else as
// written when it was sent.
func (p *partition) deliver(t *testing.T, rc *redis.Client, now time.Time) {
	t.Helper()
	p.mu.Lock()
	args := slices.Clone(p.held)
	p.held = nil
	p.mu.Unlock()
	if args == nil {
		t.Fatal("no heartbeat held in flight")
	}
	nk, ok := args[2].(int)
	if !ok {
		t.Fatalf("heartbeat numkeys %T %v", args[2], args[2])
	}
	args[3+nk+2] = now.UnixMilli()
	if err := rc.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("delivering the held heartbeat: %v", err)
	}
}

// openCut opens a ledger named process whose client goes through a
// partition hook.
func (e *redisEnv) openCut(t *testing.T, process string, cls store.RedisClass) (*store.Redis, *partition) {
	t.Helper()
	p := &partition{}
	return e.openHooked(t, process, nil, p, cls), p
}

// TestRedisStaleHeartbeat (review 8, F3): a heartbeat written to the
// socket just before a partition and delivered after it heals must not
// renew the entry of a process that is on its outage share, nor release a
// process held as it joined. a, alone at RPM 10, fills its minute from
// Redis at 12:00:00; its heartbeat of 12:00:55 is in flight when a is cut
// off (the call times out: a is down); at 12:01:05 (the grace over, its
// minute's slots left) a sends its share, 10; the partition heals at
// 12:01:06 and the old heartbeat is delivered (Redis runs it with its
// TIME then); a's next heartbeat comes at 12:01:10. d starts either
// half a second after the delivery, or at 12:01:04, held by a's overdue
// heartbeat, the delivery coming during its hold. d must be held until a
// reconciled its share: no 60 s window of a and d above RPM. Before,
// the delivered heartbeat renewed a's entry as of 12:01:06: d joining
// after it was not held, d held was released by it, and d was granted 10
// at once: 20 sends in a minute of RPM 10.
func TestRedisStaleHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		deliver bool
		joinAt  time.Duration // after 12:01:00
	}{
		{"not delivered", false, 6500 * time.Millisecond},
		{"delivered before d joins", true, 6500 * time.Millisecond},
		{"delivered while d is held", true, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := &deadEnv{redisEnv: &redisEnv{srv: redistest.Start(t, redistest.Options{}),
				clock: &vclock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}},
				cls: store.RedisClass{Name: "text", RPM: 10, RPD: 10000, Margin: 100 * time.Millisecond}}
			rc := e.client(t)
			a, p := e.openCut(t, "a", e.cls)
			if !e.take(t, a, 10, 10) {
				t.Fatal("a: no grant of its minute")
			}
			e.heartbeats(t, 50*time.Second, a) // the last at 12:00:50
			e.clock.add(5 * time.Second)       // 12:00:55
			p.set(true, true)
			if _, err := a.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("heartbeat in flight as the partition begins: %v", err)
			}
			base := time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)
			var d *store.Redis
			delivered := !tc.deliver
			joinedHeld := false
			var dGot []time.Time
			// From 12:01:00, 100 ms at a time: a beats every 5 s (failing
			// until the partition heals) and takes its share at 12:01:05;
			// the partition heals at 12:01:06; d joins, and asks for a
			// slot every 100 ms, beating every 5 s.
			for rel := time.Duration(0); rel <= 85*time.Second; rel += 100 * time.Millisecond {
				now := base.Add(rel)
				e.clock.add(now.Sub(e.clock.now()))
				if rel%(5*time.Second) == 0 {
					_, err := a.Heartbeat(ctx)
					if err != nil && rel > 6*time.Second {
						t.Fatalf("a's heartbeat at %v after the heal: %v", rel, err)
					}
				}
				if rel == 5*time.Second {
					got := 0
					for got < e.cls.RPM && e.take(t, a, 1, 1) {
						got++
					}
					if got != e.cls.RPM {
						t.Fatalf("a's share at 12:01:05: %d, want %d", got, e.cls.RPM)
					}
				}
				if rel == 6*time.Second {
					p.set(false, false)
					if tc.deliver {
						p.deliver(t, rc, now)
						delivered = true
					}
				}
				if rel == tc.joinAt {
					d = e.open(t, "d", e.cls)
					joinedHeld = d.Joining()
				}
				if d == nil {
					continue
				}
				if (rel-tc.joinAt)%(5*time.Second) == 3*time.Second {
					if _, err := d.Heartbeat(ctx); err != nil {
						t.Fatal(err)
					}
				}
				for e.take(t, d, 1, 1) {
					dGot = append(dGot, now)
				}
			}
			if !delivered {
				t.Fatal("the held heartbeat was not delivered")
			}
			if !joinedHeld {
				t.Errorf("d joining at 12:01:%04.1f: not held", tc.joinAt.Seconds())
			}
			worst := checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
			first := "never"
			if len(dGot) > 0 {
				first = dGot[0].Format("15:04:05.0")
			}
			t.Logf("d joined at 12:01:%04.1f (held %v), first granted at %s; a's share %d at 12:01:05; busiest minute %d of RPM %d",
				tc.joinAt.Seconds(), joinedHeld, first, e.cls.RPM, worst, e.cls.RPM)
		})
	}
}
