package store_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// deadEnv is three processes a, b, c live for a heartbeat TTL, then an
// outage of Redis (it keeps its state) long enough for the share to be RPM
// / 3, during which each takes its whole share of the window (3 slots, as
// many day units: a record's units are at most its Covers, as package
// bucket's are) once.
type deadEnv struct {
	*redisEnv
	cls     store.RedisClass
	a, b, c *store.Redis
	sends   []time.Time // every slot granted, as sent when granted
	units   int         // every day unit granted
	share   []int       // the day units a, b and c took on their share
	lastHB  time.Time   // the last heartbeat of the three before the outage
	cs      []store.DeadCharge
	csAt    time.Time // when saturate found the survivors' first charge
}

// deadOpts shapes a deadEnv's outage: rounds of takes of the window's
// share, 63 s apart (once the own slots left the window), c in the first
// cRounds only (0: c sends nothing), and before run when the three
// processes have been live for a TTL, before the outage.
type deadOpts struct {
	rpd             int
	rounds, cRounds int
	before          func(*deadEnv)
}

func newDeadEnv(t *testing.T, rpd int) *deadEnv {
	return newDeadEnvOpts(t, deadOpts{rpd: rpd, rounds: 1, cRounds: 1})
}

func newDeadEnvOpts(t *testing.T, o deadOpts) *deadEnv {
	t.Helper()
	rpd := o.rpd
	e := &deadEnv{redisEnv: newPersistentRedisEnv(t),
		cls: store.RedisClass{Name: "text", RPM: 9, RPD: rpd, Margin: 100 * time.Millisecond}}
	e.a, e.b, e.c = e.open(t, "a", e.cls), e.open(t, "b", e.cls), e.open(t, "c", e.cls)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
	if o.before != nil {
		o.before(e)
	}
	e.lastHB = e.clock.now()
	e.stopRedis(t, e.a, e.b, e.c)
	// Every slot granted before the outage may have left the window 60 s,
	// the grant life (30 s), the margin and a second after it began: the
	// share is then RPM / 3 = 3, and of the day (RPD - the view's count -
	// 9 the others may have taken after the view) / 3 (27 at RPD 90 with
	// nothing before): each takes the window's, 3 slots and 3 units, each
	// round while its day share lasts.
	e.clock.add(92 * time.Second)
	e.share = make([]int, 3)
	for r := range o.rounds {
		if r > 0 {
			e.clock.add(63 * time.Second)
		}
		for i, s := range []*store.Redis{e.a, e.b, e.c} {
			if s == e.c && r >= o.cRounds {
				continue
			}
			u := 3
			for u > 0 && !e.take(t, s, u, u) {
				u--
			}
			if u == 0 && r == 0 {
				t.Fatalf("%s: no share", s.Process())
			}
			e.share[i] += u
			grantErr(t, reserveErr(s, e.record(1, 1)), "share")
		}
	}
	return e
}

// chargeBound is the most c may be charged of the day when the survivors
// charged it at e.csAt: ceil(RPM / 3) = 3 units per 60 s span from its
// last reach of Redis (at the earliest the survivors' view, at its last
// heartbeat, minus the TTL) to the charge, a second of slack included.
func (e *deadEnv) chargeBound() int {
	span := e.csAt.Sub(e.lastHB.Add(-15*time.Second)) + time.Second
	return 3 * (int(span/time.Minute) + 1)
}

// take asks s for a grant of covers slots and units day units; it records
// them as sent now and reports whether it was granted.
func (e *deadEnv) take(t *testing.T, s *store.Redis, covers, units int) bool {
	t.Helper()
	if _, err := s.Reserve(context.Background(), e.record(covers, units)); err != nil {
		if !errors.Is(err, store.ErrNoGrant) {
			t.Fatalf("%s: %v", s.Process(), err)
		}
		return false
	}
	for range covers { // sent at once: stamped (no slot given back)
		e.sends = append(e.sends, e.clock.now())
		s.Stamped(lane, e.clock.now().Add(e.cls.Margin))
	}
	e.units += units
	return true
}

// saturate runs the survivors for d of the virtual clock, heartbeats every
// 5 s, each taking every grant of one slot and one unit Redis gives.
func (e *deadEnv) saturate(t *testing.T, d time.Duration, ss ...*store.Redis) {
	t.Helper()
	for el := time.Duration(0); el < d; el += time.Second {
		e.clock.add(time.Second)
		for _, s := range ss {
			if el%(5*time.Second) == 0 {
				if _, err := s.Heartbeat(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 20 && e.take(t, s, 1, 1); i++ {
			}
			if cs := s.DeadCharges(); len(cs) > 0 {
				if len(e.cs) == 0 {
					e.csAt = e.clock.now()
				}
				e.cs = append(e.cs, cs...)
			}
		}
	}
}

// charges returns the charges saturate found and those ss made since, and
// forgets them.
func (e *deadEnv) charges(ss ...*store.Redis) []store.DeadCharge {
	out := e.cs
	e.cs = nil
	for _, s := range ss {
		out = append(out, s.DeadCharges()...)
	}
	return out
}

// TestRedisDeadInOutage: of three processes that sent on their share of
// an outage that Redis survives with its state, one is killed before Redis
// answers again and never comes back. Once the survivors' recovery is
// over, the first to end it charges the dead one its share (RPM / 3 of the
// window as sent then; of the day, 3 units per minute since it last
// reached Redis, 9 here, at most (RPD - the day count at the outage) / 3),
// once: so no 60 s window of all the sends, the dead one's included, holds
// more than RPM, and the day no more than RPD (at RPD 90 the survivors use
// the day up to it in the 600 s after). Before the charge, the
// survivors were granted the dead one's room again: 12 in a minute of RPM
// 9; 12 in a minute with RPD 900.
func TestRedisDeadInOutage(t *testing.T) {
	for _, rpd := range []int{90, 900} { // the day binds, or only the window
		t.Run(strconv.Itoa(rpd), func(t *testing.T) { deadInOutage(t, rpd) })
	}
}

func deadInOutage(t *testing.T, rpd int) {
	e := newDeadEnv(t, rpd)
	e.clock.add(time.Second)
	e.srv.Restart()
	for _, s := range []*store.Redis{e.a, e.b} { // c was killed
		if _, err := s.Heartbeat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e.saturate(t, 600*time.Second, e.a, e.b)
	worst := checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	if e.units > e.cls.RPD {
		t.Errorf("%d day units granted, c's share included; RPD %d", e.units, e.cls.RPD)
	}
	cs := e.charges(e.a, e.b)
	if len(cs) != 1 || cs[0].Process != "c" || len(cs[0].Lanes) != 1 {
		t.Fatalf("charges %+v, want c once", cs)
	}
	want := min(rpd/3, e.chargeBound())
	if l := cs[0].Lanes[0]; l.Lane != lane || l.Slots != 3 || l.Units != want || want != 9 || l.Units < e.share[2] || l.Day != "2026-03-01" {
		t.Errorf("c charged %+v at %v, want 3 slots and 3 x 3 = 9 units of 2026-03-01 (at least its share %d)", l, e.csAt, e.share[2])
	}
	u, err := e.a.Usage(context.Background(), "2026-03-01")
	if err != nil || u.Lanes[0].Count != 6+want+(e.units-9) || u.Lanes[0].ByProcess["c"] != want || e.share[2] != 3 ||
		(rpd == 90 && u.Lanes[0].Count != rpd) {
		t.Errorf("usage %+v, %v; want a's and b's 6 and their grants since, and c's %d", u, err, want)
	}
	t.Logf("%d sends, busiest minute %d of %d, %d units of %d, c charged %d", len(e.sends), worst, e.cls.RPM, e.units, e.cls.RPD, want)
}

// TestRedisDeadLate: a process charged as dead that reaches Redis after
// all (later than a heartbeat TTL after the first) adds its own share
// grants too (counted twice: on the safe side) and is not charged again;
// it charges nobody itself (the others reconciled after the outage began).
func TestRedisDeadLate(t *testing.T) {
	e := newDeadEnv(t, 90)
	e.clock.add(time.Second)
	e.srv.Restart()
	for _, s := range []*store.Redis{e.a, e.b} {
		if _, err := s.Heartbeat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e.saturate(t, 20*time.Second, e.a, e.b)
	if cs := e.charges(e.a, e.b); len(cs) != 1 || cs[0].Process != "c" {
		t.Fatalf("charges %+v, want c once", cs)
	}
	if _, err := e.c.Heartbeat(context.Background()); err != nil { // c reconciles late
		t.Fatal(err)
	}
	e.saturate(t, 150*time.Second, e.a, e.b, e.c)
	checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	if cs := e.charges(e.a, e.b, e.c); len(cs) != 0 {
		t.Errorf("charges after c came back %+v, want none", cs)
	}
	u, err := e.a.Usage(context.Background(), "2026-03-01")
	if err != nil || u.Lanes[0].ByProcess["c"] != 9+3 {
		t.Errorf("usage %+v, %v; want c's part 9 charged + 3 its own", u, err)
	}
}

// TestRedisNoDeadAfterOutage: when every process reaches Redis again in
// time, nobody is charged, and the survivors' grants from Redis after the
// recovery are Redis's alone (the window's RPM in a minute once the
// outage's sends left it).
func TestRedisNoDeadAfterOutage(t *testing.T) {
	e := newDeadEnv(t, 45)
	e.clock.add(time.Second)
	e.srv.Restart()
	e.saturate(t, 400*time.Second, e.a, e.b, e.c)
	checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	if cs := e.charges(e.a, e.b, e.c); len(cs) != 0 {
		t.Errorf("charges %+v, want none", cs)
	}
	if e.units != e.cls.RPD {
		t.Errorf("%d units granted, want the whole day %d", e.units, e.cls.RPD)
	}
}

// TestRedisDeadGivenBack: the dead process's view was read after day units
// were given back (a grant settled) and the survivors' views before: their
// views' count is above the dead one's, which took a larger day share than
// (RPD - their count) / 3 in an outage of 8 minutes (3 units a minute: 21).
// The count the first survivor to reconnect recorded before it added
// anything (the count when the outage began) is the one charged from, at
// most 3 units a minute since the dead one last reached Redis (27): the
// day stays within RPD. (From the survivors' views alone: 20 charged, 91
// units of RPD 90.)
func TestRedisDeadGivenBack(t *testing.T) {
	ctx := context.Background()
	e := newDeadEnvOpts(t, deadOpts{rpd: 90, rounds: 7, cRounds: 7, before: func(e *deadEnv) {
		if !e.take(t, e.a, 1, 30) {
			t.Fatal("a: no grant")
		}
		for _, s := range []*store.Redis{e.a, e.b} { // their views: 30
			if _, err := s.Heartbeat(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.a.Settle(ctx, store.Settlement{GiveBack: []store.DailyCount{{Day: "2026-03-01", Lane: lane, Count: 25}}}); err != nil {
			t.Fatal(err)
		}
		e.units -= 25
		if _, err := e.c.Heartbeat(ctx); err != nil { // c's: 5
			t.Fatal(err)
		}
	}})
	if e.share[2] <= (90-30)/3 {
		t.Fatalf("c's day share %d, want above (90 - 30) / 3", e.share[2])
	}
	e.clock.add(time.Second)
	e.srv.Restart()
	for _, s := range []*store.Redis{e.a, e.b} {
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.saturate(t, 400*time.Second, e.a, e.b) // the day runs out
	checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	if e.units > e.cls.RPD {
		t.Errorf("%d day units granted, c's share included; RPD %d", e.units, e.cls.RPD)
	}
	cs := e.charges(e.a, e.b)
	if want := min((90-5)/3, e.chargeBound()); len(cs) != 1 || cs[0].Process != "c" || cs[0].Lanes[0].Units != want || want <= (90-30)/3 {
		t.Errorf("charges %+v, want c charged min((90 - 5) / 3, %d) = %d units, above (90 - 30) / 3", cs, e.chargeBound(), want)
	}
	t.Logf("shares %v, %d units of %d", e.share, e.units, e.cls.RPD)
}

// TestRedisDeadEarlyInLongOutage: in an outage of 6 minutes, c takes its
// share of the window (3 slots and units) every minute of the first two
// it may, then dies; a and b go on. c is charged 3 units a minute since
// it last reached Redis (21 of the day, 7 spans of 60 s), not its day
// share (RPD - 0) / 3 = 30: the day stays within RPD, the window within
// RPM, and the survivors take the rest of the day up to RPD.
func TestRedisDeadEarlyInLongOutage(t *testing.T) {
	e := newDeadEnvOpts(t, deadOpts{rpd: 90, rounds: 5, cRounds: 2})
	e.clock.add(time.Second)
	e.srv.Restart()
	for _, s := range []*store.Redis{e.a, e.b} {
		if _, err := s.Heartbeat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e.saturate(t, 400*time.Second, e.a, e.b)
	worst := checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	if e.units > e.cls.RPD {
		t.Errorf("%d day units granted; RPD %d", e.units, e.cls.RPD)
	}
	cs := e.charges(e.a, e.b)
	if len(cs) != 1 || cs[0].Process != "c" || len(cs[0].Lanes) != 1 {
		t.Fatalf("charges %+v, want c once", cs)
	}
	l, bound := cs[0].Lanes[0], e.chargeBound()
	if l.Units > bound || l.Units < e.share[2] || l.Units != 21 || e.share[2] != 6 || l.Slots != 3 {
		t.Errorf("c charged %+v at %v, want 3 slots and at most 3 a minute since it last reached Redis (%d; 21), at least its share %d",
			l, e.csAt, bound, e.share[2])
	}
	u, err := e.a.Usage(context.Background(), "2026-03-01")
	if err != nil || u.Lanes[0].Count != e.cls.RPD || u.Lanes[0].ByProcess["c"] != l.Units {
		t.Errorf("usage %+v, %v; want the day used up to RPD %d, c's part %d", u, err, e.cls.RPD, l.Units)
	}
	t.Logf("%d sends, busiest minute %d of %d, %d units granted of %d, c took %d and was charged %d", len(e.sends), worst,
		e.cls.RPM, e.units, e.cls.RPD, e.share[2], l.Units)
}

// TestRedisDeadSentNothing: c dies when the outage begins and sends
// nothing; it is charged 3 units a minute since it last reached Redis (9
// of the day), not its day share (RPD - 0) / 3 = 300, and the window's
// share (3 slots), and the bounds hold.
func TestRedisDeadSentNothing(t *testing.T) {
	e := newDeadEnvOpts(t, deadOpts{rpd: 900, rounds: 1, cRounds: 0})
	e.clock.add(time.Second)
	e.srv.Restart()
	for _, s := range []*store.Redis{e.a, e.b} {
		if _, err := s.Heartbeat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e.saturate(t, 150*time.Second, e.a, e.b)
	checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	cs := e.charges(e.a, e.b)
	if len(cs) != 1 || cs[0].Process != "c" || len(cs[0].Lanes) != 1 {
		t.Fatalf("charges %+v, want c once", cs)
	}
	if l, bound := cs[0].Lanes[0], e.chargeBound(); l.Units > bound || l.Units != 9 || l.Slots != 3 || e.share[2] != 0 {
		t.Errorf("c charged %+v at %v, want 3 slots and at most 3 a minute since it last reached Redis (%d; 9)", l, e.csAt, bound)
	}
}
