package store_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// tpmSend is one request a tpmShareRun process sent: its dispatch time
// and its input tokens.
type tpmSend struct {
	at  time.Time
	tok int
}

// tpmProc is one process of tpmShareRun: its lanes (bucket) and its Redis
// ledger (nil: a process alone, without Redis).
type tpmProc struct {
	c     *bucket.Class
	st    *store.Redis
	next  time.Time
	tok   int // the head request's estimate (0: not drawn yet)
	sends []tpmSend
}

// tpmShareRun drives procs processes (0: one process without Redis) on
// one text lane of RPM 60 and TPM 4000, each with far more work than TPM
// allows, requests of 900 estimated input tokens (or tokens() each, when
// not nil; the answers count exactly the estimates), on a
// virtual clock for d, as the scheduler's dispatcher drives a lane: acquire,
// grant the lease's record (a refusal held until its time), stamp, tell
// the ledger; every process heartbeats every 5 s. It returns every send.
func tpmShareRun(t *testing.T, procs int, d time.Duration, tokens func() int) []tpmSend {
	t.Helper()
	e := newRedisEnv(t)
	var all []tpmSend
	// In a bubble: time.Now stands still while the processes wait for
	// Redis, so a refusal's Until (local time.Now at the call plus the
	// wait on Redis's clock) is held for exactly that wait, whatever the
	// machine's load; outside, the hold came short by the call's real
	// time and the processes' order, and so their use of TPM, depended on
	// the scheduling of the test.
	synctest.Test(t, func(t *testing.T) {
		all = tpmShareBubble(t, e, procs, d, tokens)
	})
	return all
}

// tpmShareBubble is tpmShareRun's processes on e, run in a synctest bubble.
func tpmShareBubble(t *testing.T, e *redisEnv, procs int, d time.Duration, tokens func() int) []tpmSend {
	ctx := context.Background()
	const margin = 250 * time.Millisecond
	limits := bucket.Limits{RPM: 60, RPD: 100_000, TPM: 4000}
	var ps []*tpmProc
	for i := range max(procs, 1) {
		pool, err := bucket.New(bucket.Config{
			Classes: []bucket.ClassConfig{{Name: "text", Limits: limits, WindowMargin: margin, SharedTPM: procs > 0}},
			Keys:    []bucket.Key{{ID: "k1", Project: "p1"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		p := &tpmProc{c: pool.Class("text"), next: e.clock.now()}
		if procs > 0 {
			p.st = e.open(t, string(rune('a'+i)), store.RedisClass{Name: "text", RPM: limits.RPM, RPD: limits.RPD, TPM: limits.TPM, Margin: margin})
		}
		ps = append(ps, p)
	}
	if tokens == nil {
		tokens = func() int { return 900 }
	}
	start := e.clock.now()
	end := start.Add(d)
	beat := start.Add(5 * time.Second)
	for {
		at := beat
		for _, p := range ps {
			if p.next.Before(at) {
				at = p.next
			}
		}
		if !at.Before(end) {
			break
		}
		if now := e.clock.now(); at.After(now) {
			e.clock.add(at.Sub(now))
		}
		now := e.clock.now()
		if !beat.After(now) {
			for _, p := range ps {
				if p.st != nil {
					if _, err := p.st.Heartbeat(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			beat = beat.Add(5 * time.Second)
		}
		for _, p := range ps {
			if p.next.After(now) {
				continue
			}
			for {
				if p.tok == 0 {
					p.tok = tokens()
				}
				tok := p.tok
				l, ok, next := p.c.AcquireFor(now, tok, 1000)
				if !ok {
					if next.IsZero() || !next.After(now) {
						t.Fatalf("at %v: no lease and next %v", now, next)
					}
					p.next = next
					break
				}
				if l.Record && p.st != nil {
					lane := store.LaneID{Project: "p1", Class: "text"}
					r := store.Record{Lane: lane, Day: l.Day, Units: l.Chunk, Covers: l.Covers, At: now, Until: l.Until(),
						PrevTokens: l.PrevTokens, Tokens: l.Budget, PrevUnused: l.PrevUnused}
					n, covers, sched, err := p.st.ReserveUpTo(ctx, r)
					var ge *store.GrantError
					if errors.As(err, &ge) {
						p.c.ChunkFailed(l)
						p.c.Refund(l, now)
						// GrantError.Until is on the wall clock: hold for as long.
						p.c.Hold("p1", now.Add(time.Until(ge.Until)+time.Millisecond), "cluster")
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					if covers < l.Covers || len(sched) > 0 {
						p.c.Scheduled(l, covers, sched)
					}
					p.c.SharedDay("p1", l.Day, n, now)
				}
				slot := p.c.Stamp(l, now)
				if p.st != nil {
					p.st.Stamped(store.LaneID{Project: "p1", Class: "text"}, slot)
				}
				p.c.Release(l, now, tok)
				p.sends = append(p.sends, tpmSend{at: now, tok: tok})
				p.tok = 0
			}
		}
	}
	var all []tpmSend
	for _, p := range ps {
		all = append(all, p.sends...)
	}
	slices.SortFunc(all, func(a, b tpmSend) int { return a.at.Compare(b.at) })
	return all
}

// tokensInWindow returns the most tokens of sends (sorted by time) in any
// span (sends less than span apart).
func tokensInWindow(sends []tpmSend, span time.Duration) int {
	worst := 0
	for i := range sends {
		sum := 0
		for j := i; j < len(sends) && sends[j].at.Sub(sends[i].at) < span; j++ {
			sum += sends[j].tok
		}
		worst = max(worst, sum)
	}
	return worst
}

// tpmUsed is the share of TPM the sends used from from on, over minutes.
func tpmUsed(sends []tpmSend, from time.Time, minutes int, tpm int) float64 {
	sum := 0
	for _, s := range sends {
		if !s.at.Before(from) && s.at.Before(from.Add(time.Duration(minutes)*time.Minute)) {
			sum += s.tok
		}
	}
	return float64(sum) / float64(minutes*tpm)
}

// TestRedisTPMShare: two processes on one Redis share a text lane of RPM
// 60 and TPM 4,000 with far more work than TPM allows, requests of 900
// input tokens (the newcomer's set-up through the binary), for 8 minutes
// on a virtual clock: from the second minute on they use at least 97 % of
// what one process alone without Redis uses (measured in the same run: 4
// requests every 60.25 s, 90 % of TPM), where they used about 60 % to 75 %
// (a round every 82 to 89 s: each grant's token budget stayed in the
// shared window until the grant's expiry, up to 30 s after its requests;
// then rounds of 2 where 4 fit: a top-up's budget sized for all its covers
// was refused whole). No 60 s window (plus the margin) of their sends
// holds more than TPM; nor with random estimates from 300 to 1,500 tokens
// and three processes.
func TestRedisTPMShare(t *testing.T) {
	const tpm = 4000
	span := time.Minute + 250*time.Millisecond
	alone := tpmShareRun(t, 0, 8*time.Minute, nil)
	base := tpmUsed(alone, alone[0].at.Add(time.Minute), 6, tpm)
	two := tpmShareRun(t, 2, 8*time.Minute, nil)
	got := tpmUsed(two, two[0].at.Add(time.Minute), 6, tpm)
	t.Logf("TPM used over minutes 2 to 7: one process without Redis %.1f %%, two on Redis %.1f %% (ratio %.3f)", 100*base, 100*got, got/base)
	if got < 0.97*base {
		t.Errorf("two processes on Redis used %.1f %% of TPM, one alone %.1f %%: want at least 97 %% of it", 100*got, 100*base)
	}
	if w := tokensInWindow(two, span); w > tpm {
		t.Errorf("a 60 s window (plus the margin) of the two processes' sends holds %d tokens, TPM %d", w, tpm)
	}
	rng := rand.New(rand.NewPCG(modelSeed(t), 13))
	three := tpmShareRun(t, 3, 8*time.Minute, func() int { return 300 + rng.IntN(1201) })
	if w := tokensInWindow(three, span); w > tpm {
		t.Errorf("a 60 s window (plus the margin) of three processes' sends of random estimates holds %d tokens, TPM %d", w, tpm)
	}
	t.Logf("three processes, random estimates: %d sends, %.1f %% of TPM used over minutes 2 to 7",
		len(three), 100*tpmUsed(three, three[0].at.Add(time.Minute), 6, tpm))
}
