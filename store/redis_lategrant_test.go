package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// slowRecord is a Local store whose next Reserve (the record's durable
// write, made after Redis granted it) takes d on the virtual clock: a daemon
// just restarted, its bbolt writer busy resuming its jobs, wrote records 5
// to 12 s after their grants (run K2/K4 of the kdiag session).
type slowRecord struct {
	*store.Memory
	clock *vclock
	d     time.Duration
	// during, when set, runs while the write waits (after d).
	during func()
}

func (s *slowRecord) Reserve(ctx context.Context, r store.Record) (int, error) {
	if s.d > 0 {
		s.clock.add(s.d)
		s.d = 0
		if s.during != nil {
			s.during()
		}
	}
	return s.Memory.Reserve(ctx, r)
}

// TestRedisLateRecordWrite: a process's record is granted by Redis, then its
// durable write takes longer than the grant's life, and its first request
// is stamped (sent) only then. The grant counted its slot at the grant's
// expiry plus the margin, and the settlement keeps a stamp no later than
// that (the bound needs every send no later than its slot's score); a slot
// sent after it left the shared window before the request did, and another
// process was granted the whole RPM while the request was still in the
// API's minute. Before, 11 requests within 57.5 s at RPM 10 (the count
// error after a kill -9 and restart, text and image, in the binary runs).
// Now Reserve hands out a record only with a grant that its first request
// can still be sent under (granted again when the write outlived it), so
// every send is within its grant. The same for a slow lane's grant of 30 s,
// for a record served from a grant taken ahead, with TPM, and when the
// process's heartbeat settled the grant, idle, during the write (its
// stamp then had no grant at all and never reached Redis).
func TestRedisLateRecordWrite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		life  time.Duration
		delay time.Duration
		tpm   int
		ahead bool
		idle  bool
	}{
		{name: "fast", life: 2 * time.Second, delay: 5 * time.Second},
		{name: "slow", life: 30 * time.Second, delay: 31 * time.Second},
		{name: "tpm", life: 2 * time.Second, delay: 5 * time.Second, tpm: 100000},
		{name: "ahead", life: 2 * time.Second, delay: 5 * time.Second, ahead: true},
		{name: "idle", life: 2 * time.Second, delay: 8 * time.Second, idle: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newRedisEnv(t)
			cls := store.RedisClass{Name: "text", RPM: 10, RPD: 1000, TPM: tc.tpm, Margin: 250 * time.Millisecond}
			slow := &slowRecord{Memory: store.NewMemory(), clock: e.clock}
			a, err := store.OpenRedis(ctx, slow, e.options(t, "a", cls))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Close() })
			b := e.open(t, "b", cls)
			var sends []time.Time // every request sent, at its send (its stamp less the margin)
			rec := func(covers int) store.Record {
				at := e.clock.now()
				r := store.Record{Lane: lane, Day: "2026-03-01", Units: covers, Covers: covers, At: at, Until: at.Add(tc.life)}
				if tc.tpm > 0 {
					r.Tokens = int64(100 * covers)
				}
				return r
			}
			// send reserves r on s and sends its granted requests that may
			// go now, each stamped at once, as the scheduler does.
			send := func(s *store.Redis, r store.Record) int {
				t.Helper()
				_, covers, sched, err := s.ReserveUpTo(ctx, r)
				var ge *store.GrantError
				if errors.As(err, &ge) {
					return 0
				}
				if err != nil {
					t.Fatal(err)
				}
				n := covers - len(sched)
				for range n {
					now := e.clock.now()
					s.Stamped(lane, now.Add(cls.Margin))
					sends = append(sends, now)
				}
				return n
			}
			if tc.ahead {
				// A busy lane: its next grant is taken ahead, in the
				// background, as soon as a record is granted.
				for range 2 {
					if send(a, rec(1)) != 1 {
						t.Fatal("a's record before the slow write: not granted")
					}
					e.clock.add(500 * time.Millisecond)
				}
				if store.WaitRedisPrefetch(a) != 1 {
					t.Fatal("no grant taken ahead")
				}
				defer func() {
					if store.RedisPrefetchServed(a) < 1 {
						t.Error("the slow record was not served from the grant taken ahead")
					}
				}()
			}
			slow.d = tc.delay
			if tc.idle {
				slow.during = func() {
					if _, err := a.Heartbeat(ctx); err != nil {
						t.Error(err)
					}
				}
			}
			if send(a, rec(1)) != 1 {
				t.Fatal("a's record: not granted")
			}
			e.clock.add(100 * time.Millisecond)
			if err := a.Settle(ctx, store.Settlement{}); err != nil {
				t.Fatal(err)
			}
			// b asks for the whole RPM once a's grant's score has left the
			// window, a's slow record's send still in the API's minute.
			last := sends[len(sends)-1]
			e.clock.add(last.Add(time.Minute - 300*time.Millisecond).Sub(e.clock.now()))
			send(b, rec(10))
			slices.SortFunc(sends, func(x, y time.Time) int { return x.Compare(y) })
			for i, s := range sends {
				n := 0
				for _, u := range sends[i:] {
					if u.Sub(s) < time.Minute {
						n++
					}
				}
				if n > cls.RPM {
					t.Errorf("%d requests sent within 60 s from %s (RPM %d): a's record written %s after its grant of %s",
						n, s.Sub(sends[0]), cls.RPM, tc.delay, tc.life)
				}
			}
		})
	}
}
