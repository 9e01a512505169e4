package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisStampAfterScore: a record is handed out with a grant its first
// request can still be sent under (handOut: here its durable write took
// all but 0.55 s of a 2 s grant, or 0.8 s of a 30 s one), then the
// dispatcher stalls 1.2 s (1.5 s) before it stamps: the request goes out after the
// grant's expiry. The grant counted its slot at its expiry plus the
// margin, and the settlement keeps a stamp no later than that, so the slot
// left the shared window before the request left the API's minute: another
// process was granted the whole RPM with it still there (11 requests
// within 60 s at RPM 10: review10 R10-4). Now a stamp past its grant's
// score adds a slot of its own at the stamp (one round trip), and on a
// lane with TPM the grant's token budget at the stamp too. The same when
// the stall outlasted the grant by more than a third of the heartbeat TTL
// and the heartbeat settled the grant, idle, before the stamp: the stamp
// found no grant and was dropped (its slot was in no count at all); now it
// adds its slot (and the budget of the lane's last grant) at the stamp.
// Each case fails on the code before.
func TestRedisStampAfterScore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		life  time.Duration // the record's
		delay time.Duration // its durable write's
		stall time.Duration // from Reserve's return to the stamp
		beat  bool          // a heartbeat during the stall
		tpm   int
	}{
		{name: "fast", life: 2 * time.Second, delay: 1450 * time.Millisecond, stall: 1200 * time.Millisecond},
		{name: "slow", life: 30 * time.Second, delay: 29200 * time.Millisecond, stall: 1500 * time.Millisecond},
		{name: "tpm", life: 2 * time.Second, delay: 1450 * time.Millisecond, stall: 1200 * time.Millisecond, tpm: 1000},
		{name: "settled idle", life: 2 * time.Second, stall: 8 * time.Second, beat: true},
		{name: "settled idle, tpm", life: 2 * time.Second, stall: 8 * time.Second, beat: true, tpm: 1000},
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
			type sent struct {
				at     time.Time // the send: its stamp less the margin
				tokens int64
			}
			var sends []sent
			const tok = 600 // a request's tokens on a lane with TPM: two do not fit TPM 1000
			rec := func(covers int) store.Record {
				at := e.clock.now()
				r := store.Record{Lane: lane, Day: "2026-03-01", Units: covers, Covers: covers, At: at, Until: at.Add(tc.life)}
				if tc.tpm > 0 {
					r.Tokens = int64(tok * covers)
				}
				return r
			}
			stall := time.Duration(0)
			// send reserves r on s and sends its granted requests that may
			// go now, each stamped at once (after the stall, when set), as
			// the scheduler does.
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
				if stall > 0 {
					// The dispatcher descheduled between Reserve and
					// the stamp.
					e.clock.add(stall)
					stall = 0
					if tc.beat {
						if _, err := a.Heartbeat(ctx); err != nil {
							t.Fatal(err)
						}
					}
				}
				n := covers - len(sched)
				for range n {
					now := e.clock.now()
					s.Stamped(lane, now.Add(cls.Margin))
					sends = append(sends, sent{now, r.Tokens / int64(r.Covers)})
				}
				return n
			}
			slow.d = tc.delay
			stall = tc.stall
			if send(a, rec(1)) != 1 {
				t.Fatal("a's record: not granted")
			}
			e.clock.add(100 * time.Millisecond)
			if err := a.Settle(ctx, store.Settlement{}); err != nil {
				t.Fatal(err)
			}
			// b asks for the whole RPM (with TPM: for one request, whose
			// tokens fit only once a's have left) once a's grant's score
			// has left the window, a's send still in the API's minute.
			last := sends[len(sends)-1].at
			e.clock.add(last.Add(time.Minute - 300*time.Millisecond).Sub(e.clock.now()))
			if tc.tpm > 0 {
				send(b, rec(1))
			} else {
				send(b, rec(10))
			}
			slices.SortFunc(sends, func(x, y sent) int { return x.at.Compare(y.at) })
			for i, s := range sends {
				n, tokens := 0, int64(0)
				for _, u := range sends[i:] {
					if u.at.Sub(s.at) < time.Minute {
						n++
						tokens += u.tokens
					}
				}
				if n > cls.RPM {
					t.Errorf("%d requests sent within 60 s from %s (RPM %d): a's first request sent %s after its grant of %s",
						n, s.at.Sub(sends[0].at), cls.RPM, tc.delay+tc.stall, tc.life)
				}
				if tc.tpm > 0 && tokens > int64(tc.tpm) {
					t.Errorf("%d tokens sent within 60 s from %s (TPM %d): a's first request sent %s after its grant of %s",
						tokens, s.at.Sub(sends[0].at), tc.tpm, tc.delay+tc.stall, tc.life)
				}
			}
		})
	}
}

// TestRedisStampShareNoSlot: a stamp with no grant of a record granted on
// the outage share adds no slot (its record's slots are added when the
// process reconciles, at the latest moment they could be sent), during the
// outage or after the reconcile, up to the record's end plus the margin;
// one past it (a stall) adds its slot at the stamp.
func TestRedisStampShareNoSlot(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100, Margin: 100 * time.Millisecond}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	e.heartbeats(t, 20*time.Second, a, b)
	outageAfterOneSend(t, e, a, b, cls) // a's share is RPM / 2
	r := e.record(3, 3)
	if _, err := a.Reserve(ctx, r); err != nil {
		t.Fatalf("a's share: %v", err)
	}
	a.Stamped(lane, e.clock.now().Add(cls.Margin)) // Redis down
	e.srv.Restart()
	e.clock.add(500 * time.Millisecond)
	if _, err := a.Heartbeat(ctx); err != nil || a.Unreachable() {
		t.Fatalf("reconcile: %v, unreachable %v", err, a.Unreachable())
	}
	rc := e.client(t)
	reconciled := e.windowScores(t, rc)
	if n := len(reconciled); n != 4 {
		t.Fatalf("window after the reconcile %v: want the slot before the outage (left, not pruned yet) and the share record's 3", reconciled)
	}
	// Its two other leases, sent before its end (Until): no slot more.
	a.Stamped(lane, e.clock.now().Add(cls.Margin))
	a.Stamped(lane, r.Until.Add(cls.Margin))
	if got := e.windowScores(t, rc); !slices.Equal(got, reconciled) {
		t.Errorf("window after the share record's stamps %v, want %v (as reconciled)", got, reconciled)
	}
	// A stamp past its end plus the margin is a late one: its own slot.
	late := r.Until.Add(cls.Margin + time.Millisecond)
	a.Stamped(lane, late)
	if got := e.windowScores(t, rc); len(got) != 5 || !slices.Contains(got, late.UnixMilli()+1) {
		t.Errorf("window after a stamp past the share record's end %v, want %v and %d", got, reconciled, late.UnixMilli()+1)
	}
}

// TestRedisStampNoGrantAfterShare (review11 R11-2): a slow lane's record r
// (30 s) is granted on the outage share and its request sent; Redis comes
// back (the reconcile adds r's slot at r's end plus the margin). The lane
// then records again on Redis (grant G, 2 s), and the dispatcher stalls 8 s
// before the stamp: the heartbeat settles G idle (no stamp: its slot
// leaves), and the stamp finds no grant. It is before r's end: Stamped took
// it for one of r's leases (the lane's share end was never cleared) and
// added nothing, so G's request was in no count and b was then granted the
// RPM less r's slot while r's, G's and b's requests were all in the API's
// minute (11 within 60 s at RPM 10). Now a grant clears the share end: the
// stamp adds its own slot.
func TestRedisStampNoGrantAfterShare(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100, Margin: 100 * time.Millisecond}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	store.SetRedisPrefetch(a, false)
	store.SetRedisPrefetch(b, false)
	e.heartbeats(t, 20*time.Second, a, b)
	outageAfterOneSend(t, e, a, b, cls) // a's share is RPM / 2
	var sends []time.Time
	at := e.clock.now()
	r := store.Record{Lane: lane, Day: "2026-03-01", Units: 1, Covers: 1, At: at, Until: at.Add(30 * time.Second)}
	if _, err := a.Reserve(ctx, r); err != nil {
		t.Fatalf("a's share: %v", err)
	}
	a.Stamped(lane, e.clock.now().Add(cls.Margin))
	sends = append(sends, e.clock.now())
	e.srv.Restart()
	e.clock.add(500 * time.Millisecond)
	for _, s := range []*store.Redis{a, b} {
		if _, err := s.Heartbeat(ctx); err != nil || s.Unreachable() {
			t.Fatalf("%s back: %v", s.Process(), err)
		}
	}
	// The lane records again on Redis: G, 2 s.
	if _, err := a.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatalf("a's grant G: %v", err)
	}
	e.clock.add(8 * time.Second) // the dispatcher stalls
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	rc := e.client(t)
	before := e.windowScores(t, rc)
	a.Stamped(lane, e.clock.now().Add(cls.Margin))
	sends = append(sends, e.clock.now())
	after := e.windowScores(t, rc)
	t.Logf("window before G's late stamp %v, after %v (r's end %v)", before, after, r.Until.UnixMilli())
	// b asks for the whole RPM 59.9 s after r's send, past the recovery.
	target := sends[0].Add(59900 * time.Millisecond)
	e.heartbeats(t, target.Sub(e.clock.now())-5*time.Second, a, b)
	e.clock.add(target.Sub(e.clock.now()))
	for _, s := range []*store.Redis{a, b} {
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	at = e.clock.now()
	_, covers, sched, err := b.ReserveUpTo(ctx, store.Record{Lane: lane, Day: "2026-03-01", Units: 10, Covers: 10, At: at, Until: at.Add(2 * time.Second)})
	if err != nil {
		t.Fatalf("b: %v", err)
	}
	for range covers - len(sched) {
		b.Stamped(lane, e.clock.now().Add(cls.Margin))
		sends = append(sends, e.clock.now())
	}
	slices.SortFunc(sends, func(x, y time.Time) int { return x.Compare(y) })
	n := 0
	for _, s := range sends {
		if s.Sub(sends[0]) < time.Minute {
			n++
		}
	}
	t.Logf("b granted %d now; sends within 60 s of r's: %d (RPM %d)", covers-len(sched), n, cls.RPM)
	if n > cls.RPM {
		t.Errorf("%d requests sent within 60 s (RPM %d): G's late stamp with no grant was taken for the share record's", n, cls.RPM)
	}
}

// outageAfterOneSend: a sends one request granted from Redis (the lane's
// day count in its view), b and a beat, Redis stops, a finds it unreachable
// (its grants are confirming), and the clock moves 110 s: past the grace,
// and the pre-outage slots gone, so a's share of the lane is RPM / 2.
func outageAfterOneSend(t *testing.T, e *redisEnv, a, b *store.Redis, cls store.RedisClass) {
	t.Helper()
	ctx := context.Background()
	if _, err := a.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatal(err)
	}
	a.Stamped(lane, e.clock.now().Add(cls.Margin))
	for _, s := range []*store.Redis{b, a} {
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.Stop()
	if _, err := a.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("heartbeat with Redis stopped: %v", err)
	}
	grantErr(t, reserveErr(a, e.record(1, 1)), "confirming")
	e.clock.add(110 * time.Second)
}
