package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
)

// TestKeptRuns: a settlement's kept scores (latest first) make runs of the
// scores less than the span before the run's latest, counted at that
// latest: a slot is never counted earlier than its score, nor span or more
// after it.
func TestKeptRuns(t *testing.T) {
	for _, tt := range []struct {
		name   string
		scores []int64
		want   []keptRun
	}{
		{"none", nil, nil},
		{"one", []int64{5000}, []keptRun{{5000, 1}}},
		{"equal", []int64{5000, 5000, 5000}, []keptRun{{5000, 3}}},
		{"span minus 1 ms: one run", []int64{5099, 5000}, []keptRun{{5099, 2}}},
		{"span apart: two runs", []int64{5100, 5000}, []keptRun{{5100, 1}, {5000, 1}}},
		{"a run is measured from its latest, not chained", []int64{5180, 5120, 5060, 5000},
			[]keptRun{{5180, 2}, {5060, 2}}},
		{"dense then sparse", []int64{9000, 8999, 8950, 8901, 8900, 7000, 6950},
			[]keptRun{{9000, 4}, {8900, 1}, {7000, 2}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := keptRuns(tt.scores, 100)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("keptRuns(%v) = %v, want %v", tt.scores, got, tt.want)
			}
			// Every score is in one run, counted no earlier than it
			// and less than the span after it.
			i := 0
			for _, r := range got {
				for range r.n {
					if s := tt.scores[i]; r.score < s || r.score-s >= 100 {
						t.Errorf("score %d counted at %d", s, r.score)
					}
					i++
				}
			}
			if i != len(tt.scores) {
				t.Errorf("runs hold %d slots, want %d", i, len(tt.scores))
			}
		})
	}
}

// TestSettlementRuns: a grant keeps its Covers latest stamps (a lease
// stamped and then refunded makes stamps exceed sends), on Redis's clock
// (the offset added), never later than the grant's score (stamps past it
// are counted at it), grouped into runs.
func TestSettlementRuns(t *testing.T) {
	for _, tt := range []struct {
		name      string
		g         laneGrant
		want      []keptRun
		wantSlots int // keptSlots
	}{
		{"no stamps: nothing kept", laneGrant{covers: 4, score: 3000, offset: 1}, nil, 0},
		{"Covers caps the stamps kept, the latest win",
			laneGrant{covers: 3, score: 3000, offset: 1, stamps: []int64{100, 900, 500, 700, 300}},
			[]keptRun{{901, 1}, {701, 1}, {501, 1}}, 3},
		{"the grant's score caps a stamp: late stamps make one run at it",
			laneGrant{covers: 5, score: 3000, offset: 10, stamps: []int64{2950, 3100, 4000, 2000}},
			[]keptRun{{3000, 3}, {2010, 1}}, 4},
		{"a burst is one run",
			laneGrant{covers: 100, score: 3000, offset: 0, stamps: rep100(1000)},
			[]keptRun{{1099, 100}}, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.g.settlement()
			if !slices.Equal(got, tt.want) || keptSlots(got) != tt.wantSlots {
				t.Fatalf("settlement %v (%d slots), want %v (%d)", got, keptSlots(got), tt.want, tt.wantSlots)
			}
		})
	}
}

// rep100 is 100 stamps a millisecond apart from t.
func rep100(t int64) []int64 {
	out := make([]int64, 100)
	for i := range out {
		out[i] = t + int64(i)
	}
	return out
}

// TestFormatText: a conflict's message shows the window format only when
// the other process's differs (an older slideshowd registers none).
func TestFormatText(t *testing.T) {
	const mine = "rpm 6, rpd 8, window margin 0s"
	theirs, m := formatText("rpm 5, rpd 8, window margin 0s"+windowFormat, mine)
	if theirs != "rpm 5, rpd 8, window margin 0s" || m != mine {
		t.Errorf("same format: %q, %q", theirs, m)
	}
	theirs, m = formatText("rpm 6, rpd 8, window margin 0s", mine)
	if !strings.HasSuffix(theirs, ", window format 1 (an older slideshowd: all processes of a cluster must run the same version)") || m != mine+", window format 2" {
		t.Errorf("older format: %q, %q", theirs, m)
	}
	theirs, m = formatText("rpm 6, rpd 8, window margin 0s, window format 3", mine)
	if theirs != "rpm 6, rpd 8, window margin 0s, window format 3" || m != mine+", window format 2" {
		t.Errorf("newer format: %q, %q", theirs, m)
	}
}

// TestOlderProcessRefused: an older slideshowd's start next to a live
// process of this format is refused by its own limits check (limitsScript,
// the same in both versions): its registration lacks the window format.
func TestOlderProcessRefused(t *testing.T) {
	s, _, now := internalRedis(t)
	ctx := context.Background()
	old := []any{"old", now.UnixMilli(), s.key("limits") + ":", 30000, "p1/text", limitsValue(s.classes["text"])}
	res, err := limitsScript.Run(ctx, s.rdb, []string{s.procsKey()}, old...).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0] != "p1/text" || res[1] != limitsValue(s.classes["text"])+windowFormat || res[2] != s.id {
		t.Errorf("an older process's registration: %q, want refused naming p1/text, this one's limits and new", res)
	}
}

// internalRedis opens a ledger named "new" on a fresh redis-server (lane
// p1/text at RPM 10, RPD 100) on a fixed virtual clock.
func internalRedis(t *testing.T) (*Redis, *redis.Client, time.Time) {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := OpenRedis(context.Background(), NewMemory(), RedisOptions{Client: c, Cluster: "test", Process: "new",
		Classes: []RedisClass{{Name: "text", RPM: 10, RPD: 100}}, Projects: []string{"p1"}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, c, now
}

// TestMemberSlots: a window member holds the slots its name ends with
// ("*n"), an older slideshowd's member one; slotProcess finds the process
// of every form of member.
func TestMemberSlots(t *testing.T) {
	for _, tt := range []struct {
		member, process string
		slots           int
	}{
		{grantMember("web-1-aa:1z:", 100), "web-1-aa", 100},
		{"web-1-aa:1z:k2*7", "web-1-aa", 7},
		{grantMember("web-1-aa:1z:s:", 3), "web-1-aa", 3},
		{"web-1-aa:1z:r:4*2", "web-1-aa", 2},
		{"web-1-aa:1z:3", "web-1-aa", 1},   // older: one slot per member
		{"web-1-aa:1z:s:3", "web-1-aa", 1}, // older, on the share
		{"a:b:1z:g*5", "a:b", 5},           // a process name with ':'
		{"odd*x", "odd*x", 1},
	} {
		if got := memberSlots(tt.member); got != tt.slots {
			t.Errorf("memberSlots(%q) = %d, want %d", tt.member, got, tt.slots)
		}
		if got := slotProcess(tt.member); got != tt.process {
			t.Errorf("slotProcess(%q) = %q, want %q", tt.member, got, tt.process)
		}
	}
}
