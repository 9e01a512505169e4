package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// joinerLocal is a Local store whose first Daily call (OpenRedis's join,
// after its first heartbeat and before joinRecovery) runs fn, then fails
// with err when err is not nil.
type joinerLocal struct {
	store.Local
	once sync.Once
	fn   func()
	err  error
}

func (l *joinerLocal) Daily(ctx context.Context, day string) ([]store.DailyCount, error) {
	l.once.Do(l.fn)
	if l.err != nil {
		return nil, l.err
	}
	return l.Local.Daily(ctx, day)
}

// TestRedisJoinSecondJoinerHeld: a and b send on their share of an outage
// that Redis survives; Redis answers again, and j1 starts before either
// reaches it: it counts their overdue heartbeats (held), then its first
// heartbeat prunes them (expired). j2 starts right then, before j1's
// OpenRedis returns: it sees no overdue entry, so only the recovering key
// can hold it, and j1 sets it before its heartbeat. Before (the key set at
// the end of OpenRedis), j2 was granted the window a's and b's share
// holds: 20 in a minute of RPM 10.
func TestRedisJoinSecondJoinerHeld(t *testing.T) { joinRace(t, nil) }

// TestRedisJoinAfterFailedStartHeld: as TestRedisJoinSecondJoinerHeld, but
// j1's OpenRedis fails after its first heartbeat (its Local store fails),
// and j2 starts after that: the recovering key j1 set before its heartbeat
// holds j2. Before, nothing did: 20 in a minute of RPM 10.
func TestRedisJoinAfterFailedStartHeld(t *testing.T) {
	joinRace(t, errors.New("disk on fire (injected)"))
}

// joinRace runs the two tests above: j2 opens inside j1's OpenRedis, or,
// with fail, after j1's OpenRedis failed with it.
func joinRace(t *testing.T, fail error) {
	ctx := context.Background()
	e := newJoinEnv(t)
	e.sharesThenBack(t)
	var j2 *store.Redis
	openJ2 := func() { j2 = e.open(t, "j2", e.cls) }
	l := &joinerLocal{Local: store.NewMemory(), fn: openJ2, err: fail}
	if fail != nil {
		l.fn = func() {}
	}
	j1, err := store.OpenRedis(ctx, l, e.options(t, "j1", e.cls))
	if fail != nil {
		if !errors.Is(err, fail) {
			t.Fatalf("j1: %v, want %v", err, fail)
		}
		openJ2()
	} else {
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j1.Close() })
	}
	n := 0
	for n < e.cls.RPM && e.take(t, j2, 1, 1) {
		n++
	}
	if n > 0 || !j2.Joining() {
		t.Errorf("j2 granted %d (joining %v) before a and b reconciled", n, j2.Joining())
	}
	e.clock.add(time.Second)
	for _, s := range []*store.Redis{e.a, e.b} { // they reach Redis again
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ss := []*store.Redis{j2, e.a, e.b}
	if j1 != nil {
		ss = append(ss, j1)
	}
	e.saturate(t, 150*time.Second, ss...)
	worst := checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	t.Logf("%d sends, busiest minute %d of %d", len(e.sends), worst, e.cls.RPM)
}
