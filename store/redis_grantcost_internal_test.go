package store

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
)

// TestGrantWrites: what a grant writes in Redis, which the grant script's
// cheaper form (one MGET, the day count written with SET ... EX from the
// count it read, members named from ARGV's text) must leave as INCRBY and
// EXPIRE did: the day count is the count found plus the units, with the
// day key's time to live renewed at every grant; the process's use of the
// day grows by the units, with the same time to live; the window holds
// the grant as one member "<prefix>g*<covers>", the previous grant of the
// lane settled (removed, no stamps); the Reserve's count is Redis's.
func TestGrantWrites(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := OpenRedis(context.Background(), NewMemory(), RedisOptions{Client: c, Cluster: "test", Process: "p",
		Classes: []RedisClass{{Name: "text", RPM: 1000, RPD: 10000}}, Projects: []string{"p1"},
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.pf.off = true
	lane := LaneID{Project: "p1", Class: "text"}
	const day = "2026-03-01"
	ctx := context.Background()
	dk, uk, wk := s.dayKey(day, lane), s.useKey(day, lane), s.winKey(lane)
	// Another process's 37 units, its key with a short time to live that
	// the grant renews.
	if err := c.Set(ctx, dk, 37, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	want := 37
	for i, units := range []int{5, 100, 1} {
		covers := units
		n, err := s.Reserve(ctx, Record{Lane: lane, Day: day, Units: units, Covers: covers, At: now, Until: now.Add(time.Second)})
		if err != nil {
			t.Fatalf("grant %d: %v", i, err)
		}
		want += units
		if n != want {
			t.Errorf("grant %d: Reserve's count %d, want %d", i, n, want)
		}
		if got := c.Get(ctx, dk).Val(); got != strconv.Itoa(want) {
			t.Errorf("grant %d: day count %q, want %d", i, got, want)
		}
		for _, k := range []string{dk, uk} {
			if ttl := c.TTL(ctx, k).Val(); ttl <= dayKeyTTL*time.Second-10*time.Second || ttl > dayKeyTTL*time.Second {
				t.Errorf("grant %d: %s time to live %v, want %v", i, k, ttl, dayKeyTTL*time.Second)
			}
		}
		if got := c.HGet(ctx, uk, "p").Val(); got != strconv.Itoa(want-37) {
			t.Errorf("grant %d: the process's use %q, want %d", i, got, want-37)
		}
		ms := c.ZRange(ctx, wk, 0, -1).Val()
		if len(ms) != 1 || !strings.HasSuffix(ms[0], "g*"+strconv.Itoa(covers)) {
			t.Errorf("grant %d: window %q, want the one grant of %d slots", i, ms, covers)
		}
		now = now.Add(3 * time.Second)
	}
}

// TestReplyInt: the grant's reply numbers are read as integers or as their
// decimal text (the form of the rare replies); anything else is not a
// number.
func TestReplyInt(t *testing.T) {
	for _, c := range []struct {
		v    any
		n    int64
		isOK bool
	}{
		{int64(1796139946389), 1796139946389, true},
		{"1796139946389", 1796139946389, true},
		{int64(-3), -3, true},
		{"", 0, false},
		{"1.5", 0, false},
		{nil, 0, false},
		{[]any{}, 0, false},
	} {
		n, ok := replyInt(c.v)
		if n != c.n || ok != c.isOK {
			t.Errorf("replyInt(%#v) = %d, %v, want %d, %v", c.v, n, ok, c.n, c.isOK)
		}
	}
}
