package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

var tpmClass = store.RedisClass{Name: "text", RPM: 10, RPD: 100, TPM: 1000, Margin: 100 * time.Millisecond}

func (e *redisEnv) tokens(covers int, tokens int64) store.Record {
	r := e.record(covers, covers)
	r.Tokens = tokens
	return r
}

// tokenWindow returns the token budgets Redis holds for the lane p1/text of
// cluster "test" (every entry, live or not yet dropped), by field.
func tokenWindow(t *testing.T, e *redisEnv) map[string]int64 {
	t.Helper()
	all, err := e.client(t).HGetAll(context.Background(), "test:tok:2:p1/text").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64, len(all))
	for f, v := range all {
		_, tok, ok := strings.Cut(v, " ")
		n, err := strconv.ParseInt(tok, 10, 64)
		if !ok || err != nil {
			t.Fatalf("token entry %s = %q", f, v)
		}
		out[f] = n
	}
	return out
}

func sum(m map[string]int64) int64 {
	n := int64(0)
	for _, v := range m {
		n += v
	}
	return n
}

// TestRedisTokens: with TPM, a grant takes its token budget in the lane's
// shared window, as sent at its expiry plus the margin, or is refused whole
// with Reason "tpm" until enough budgets leave; an overrun reported by a
// process is added to its latest grant's entry by its next grant, refused
// or not, or at Settle, and dropped once that entry has left the window.
func TestRedisTokens(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	a, b := e.open(t, "a", tpmClass), e.open(t, "b", tpmClass)
	if _, err := a.Reserve(ctx, e.tokens(1, 600)); err != nil { // counts until 12:01:02.1
		t.Fatal(err)
	}
	e.clock.add(time.Second)
	// 600 + 500 > 1000: refused until a's budget leaves, 61.1 s from now;
	// the window's slots (2 of 10) are not what refuses it.
	ge := grantErr(t, reserveErr(b, e.tokens(1, 500)), "tpm")
	if want := time.Now().Add(61100 * time.Millisecond); ge.Until.Before(want.Add(-time.Second)) || ge.Until.After(want.Add(time.Second)) {
		t.Errorf("Until %v, want about %v", ge.Until, want)
	}
	if !strings.Contains(ge.Error(), "tpm until") {
		t.Errorf("error %q does not say tpm", ge)
	}
	if _, err := b.Reserve(ctx, e.tokens(1, 400)); err != nil { // 1000: full
		t.Fatal(err)
	}
	// Nothing was taken by the refusal: the window holds 600 + 400.
	if w := tokenWindow(t, e); len(w) != 2 || sum(w) != 1000 {
		t.Errorf("token window %v, want 600 and 400", w)
	}
	// a's requests used 50 tokens more than estimated: its next grant adds
	// them to its entry first, so even a grant of no tokens is refused now
	// (1050 of 1000), until a's 650 leave.
	a.Overran(lane, 50)
	ge = grantErr(t, reserveErr(a, e.tokens(1, 0)), "tpm")
	if want := time.Now().Add(61100 * time.Millisecond); ge.Until.Before(want.Add(-time.Second)) || ge.Until.After(want.Add(time.Second)) {
		t.Errorf("Until %v, want about %v (a's entry leaving)", ge.Until, want)
	}
	if w := tokenWindow(t, e); sum(w) != 1050 {
		t.Errorf("token window %v, want 650 and 400 (the overrun added by a refused grant)", w)
	}
	// Added once: the next refusal adds nothing.
	grantErr(t, reserveErr(a, e.tokens(1, 0)), "tpm")
	if w := tokenWindow(t, e); sum(w) != 1050 {
		t.Errorf("token window %v, want 1050 (the overrun added once)", w)
	}
	// 12:01:02.2: a's entry left; b's (12:01:03.1) still counts.
	e.clock.add(61100 * time.Millisecond)
	grantErr(t, reserveErr(a, e.tokens(1, 601)), "tpm")
	if _, err := a.Reserve(ctx, e.tokens(1, 600)); err != nil {
		t.Fatal(err)
	}
	// A grant without tokens on a TPM lane still leaves an entry (of 0),
	// for the overruns of the requests it covers. (b's 400 left at
	// 12:01:03.1.)
	e.clock.add(time.Second)
	if _, err := b.Reserve(ctx, e.tokens(1, 0)); err != nil {
		t.Fatal(err)
	}
	b.Overran(lane, 30)
	if err := b.Settle(ctx, store.Settlement{}); err != nil {
		t.Fatal(err)
	}
	if w := tokenWindow(t, e); sum(w) != 630 || len(w) != 2 {
		t.Errorf("token window %v, want a's 600 and b's 0 + 30 (b's overrun added at Settle)", w)
	}
	b.Overran(lane, 5)
	if _, err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if w := tokenWindow(t, e); sum(w) != 635 {
		t.Errorf("token window %v, want 635 (b's overrun added by its heartbeat)", w)
	}
	// An overrun whose entry has left the window is dropped: its
	// requests have left it too.
	e.clock.add(2 * time.Minute)
	a.Overran(lane, 500)
	if _, err := a.Reserve(ctx, e.tokens(1, 1000)); err != nil {
		t.Fatalf("a full minute's budget after the window emptied: %v", err)
	}
	if w := tokenWindow(t, e); sum(w) != 1000 {
		t.Errorf("token window %v, want a's 1000 alone", w)
	}
	// The cluster's usage shows the token window, each process's part.
	u, err := a.Usage(ctx, "2026-03-01")
	if err != nil {
		t.Fatal(err)
	}
	if l := u.Lanes[0]; l.TPM != 1000 || l.Tokens != 1000 || l.TokensByProcess["a"] != 1000 || len(l.TokensByProcess) != 1 {
		t.Errorf("usage %+v, want TPM 1000 and 1000 tokens, all a's", l)
	}
	e.clock.add(30 * time.Second)
	if _, err := b.Reserve(ctx, e.tokens(1, 0)); err != nil {
		t.Fatal(err)
	}
	b.Overran(lane, 1) // not yet in Redis
	if u, err = b.Usage(ctx, "2026-03-01"); err != nil {
		t.Fatal(err)
	}
	if l := u.Lanes[0]; l.Tokens != 1000 || l.TokensByProcess["a"] != 1000 || l.TokensByProcess["b"] != 0 {
		t.Errorf("usage %+v, want 1000 tokens: a 1000, b 0", l)
	}
	// A new record gives the unused part of the previous one's budget
	// back: a's entry of 1000 keeps the 700 its requests used.
	e.clock.add(time.Second)
	r := e.tokens(1, 300)
	r.PrevUnused = 300
	if _, err := a.Reserve(ctx, r); err != nil {
		t.Fatalf("after giving 300 back: %v", err)
	}
	if u, err = a.Usage(ctx, "2026-03-01"); err != nil || u.Lanes[0].Tokens != 1000 {
		t.Errorf("usage %+v, %v; want 700 + 300 tokens", u, err)
	}
	// A clean stop gives the unused part of the last budget back.
	if err := a.Settle(ctx, store.Settlement{Unused: []store.UnusedTokens{{Lane: lane, Tokens: 100}}}); err != nil {
		t.Fatal(err)
	}
	if u, err = a.Usage(ctx, "2026-03-01"); err != nil || u.Lanes[0].Tokens != 900 {
		t.Errorf("usage %+v, %v; want 700 + 200 tokens", u, err)
	}
	if err := a.Settle(ctx, store.Settlement{Unused: []store.UnusedTokens{{Lane: lane, Tokens: -1}}}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("negative unused tokens: %v", err)
	}
	// A budget above TPM can never be granted: invalid.
	if err := reserveErr(a, e.tokens(1, 1001)); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "Record.Tokens: 1001") {
		t.Errorf("tokens above TPM: %v", err)
	}
}

// TestRedisTokensOff: a class without TPM ignores Record.Tokens and
// overruns, and leaves no token window.
func TestRedisTokensOff(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	a := e.open(t, "a")
	a.Overran(lane, 100)
	for range 3 {
		if _, err := a.Reserve(ctx, e.tokens(1, 1<<40)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := e.client(t).Exists(ctx, "test:tok:2:p1/text").Result(); err != nil || n != 0 {
		t.Errorf("token window exists: %d, %v", n, err)
	}
}

// TestRedisTokensLimitsConflict: a process with another TPM for a lane is
// refused while one with the first is alive, naming both values.
func TestRedisTokensLimitsConflict(t *testing.T) {
	e := newRedisEnv(t)
	e.open(t, "a", tpmClass)
	for _, tc := range []struct {
		tpm  int
		want string
	}{
		{2000, "store: redis: limits differ between processes: lane p1/text: rpm 10, rpd 100, tpm 2000, window margin 100ms here, rpm 10, rpd 100, tpm 1000, window margin 100ms in process a"},
		{0, "store: redis: limits differ between processes: lane p1/text: rpm 10, rpd 100, window margin 100ms here, rpm 10, rpd 100, tpm 1000, window margin 100ms in process a"},
	} {
		other := tpmClass
		other.TPM = tc.tpm
		_, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{
			Client: e.client(t), Cluster: "test", Process: "b", Classes: []store.RedisClass{other},
			Projects: []string{"p1"}, Now: e.clock.now,
		})
		if !errors.Is(err, store.ErrLimitsConflict) || err.Error() != tc.want {
			t.Errorf("err\n got %v\nwant %s", err, tc.want)
		}
	}
	bad := tpmClass
	bad.TPM = -1
	_, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{
		Client: e.client(t), Cluster: "test", Process: "c", Classes: []store.RedisClass{bad},
		Projects: []string{"p1"}, Now: e.clock.now,
	})
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "tpm -1") {
		t.Errorf("negative TPM: %v", err)
	}
}

// TestRedisTokensOutage: when Redis comes back empty, each process's
// token budgets of the last two minutes (its overruns included) are
// re-seeded with its window; while Redis is unreachable a TPM lane gets no
// share, where a lane without TPM does (see TestRedisShare).
func TestRedisTokensOutage(t *testing.T) {
	ctx := context.Background()
	e := &redisEnv{srv: redistest.Start(t, redistest.Options{}),
		clock: &vclock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	image := store.RedisClass{Name: "image", RPM: 10, RPD: 100, Margin: 100 * time.Millisecond}
	imageLane := store.LaneID{Project: "p1", Class: "image"}
	a, b := e.open(t, "a", tpmClass, image), e.open(t, "b", tpmClass, image)
	if _, err := a.Reserve(ctx, e.tokens(1, 300)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctx, e.tokens(1, 200)); err != nil {
		t.Fatal(err)
	}
	a.Overran(lane, 100) // a's entry becomes 400 at its next grant
	if _, err := a.Reserve(ctx, e.tokens(1, 100)); err != nil {
		t.Fatal(err)
	}
	e.srv.Kill()
	grantErr(t, reserveErr(a, e.tokens(1, 1)), "confirming")
	e.clock.add(6 * time.Second) // past the grace: a TPM lane gets no share
	grantErr(t, reserveErr(a, e.tokens(1, 1)), "share")
	e.srv.Restart() // empty
	// a's heartbeat re-seeds a's budgets (400 and 100); b's grant finds
	// the new epoch and re-seeds b's 200, then asks within its share of
	// the recovery (none: b's view came less than a TTL after it joined);
	// once that is over, Redis checks it.
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.add(16 * time.Second)
	grantErr(t, reserveErr(b, e.tokens(1, 301)), "share")
	if w := tokenWindow(t, e); sum(w) != 700 || len(w) != 3 {
		t.Errorf("token window after the re-seed %v, want a's 400 and 100, b's 200", w)
	}
	// The recoveries last until every budget granted before may have left
	// the window (grant life up to 30 s, margin, window and a second: 91 s;
	// a TTL more for a, back after an outage).
	e.clock.add(110 * time.Second)
	if _, err := b.Reserve(ctx, e.tokens(1, 300)); err != nil {
		t.Fatalf("after the recoveries: %v", err)
	}
	// Redis unreachable again, with fresh views: 100 s later (every
	// budget granted before the outage may have left: 60 s, a grant's
	// longest life, bucket.MaxChunkLife, 30 s, the margin and a second of
	// rounding) the share is RPM / 2 and TPM / 2.
	e.heartbeats(t, 20*time.Second, a, b)
	e.srv.Stop()
	if _, err := a.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("heartbeat with Redis stopped: %v", err)
	}
	e.clock.add(100 * time.Second)
	r := e.record(5, 5)
	r.Lane = imageLane
	if _, err := a.Reserve(ctx, r); err != nil {
		t.Errorf("the share of a lane without TPM: %v", err)
	}
	grantErr(t, reserveErr(a, e.tokens(1, 501)), "share")
	if _, err := a.Reserve(ctx, e.tokens(1, 500)); err != nil {
		t.Errorf("TPM / 2: %v", err)
	}
	ge := grantErr(t, reserveErr(a, e.tokens(1, 1)), "share")
	if d := ge.Until.Sub(e.clock.now()); d != 5*time.Second {
		t.Errorf("Until %v after now, want the next heartbeat (5s)", d)
	}
}

// TestRedisTokensShare: with Redis unreachable, a TPM lane's share follows
// RPM's rule in tokens: room / N of the budgets of the view that leave the
// window after the outage began, TPM / N once all of them may have left;
// the process's overruns count against it. On reconnect its share grants'
// budgets (the overruns added) are in the shared token window, and a
// process that saw no outage is checked against them.
func TestRedisTokensShare(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	a, b := e.open(t, "a", tpmClass), e.open(t, "b", tpmClass)
	e.heartbeats(t, 20*time.Second, a, b)
	if _, err := a.Reserve(ctx, e.tokens(4, 300)); err != nil { // leaves at 12:01:22.1
		t.Fatal(err)
	}
	e.clock.add(10 * time.Second)
	if _, err := b.Reserve(ctx, e.tokens(4, 500)); err != nil { // at 12:01:32.1
		t.Fatal(err)
	}
	for _, s := range []*store.Redis{b, a} {
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.Stop() // 12:00:30
	if _, err := a.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("heartbeat with Redis stopped: %v", err)
	}
	grantErr(t, reserveErr(a, e.tokens(1, 1)), "confirming") // the grace, until 12:00:36
	e.clock.add(6 * time.Second)
	grantErr(t, reserveErr(a, e.tokens(1, 1)), "share") // nothing has left yet
	e.clock.add(47 * time.Second)                       // 12:01:23: a's 300 left: a's share 150 (and 2 slots)
	grantErr(t, reserveErr(a, e.tokens(1, 151)), "share")
	if _, err := a.Reserve(ctx, e.tokens(1, 150)); err != nil {
		t.Fatalf("a's share of the room: %v", err)
	}
	grantErr(t, reserveErr(a, e.tokens(1, 1)), "share")
	e.clock.add(10 * time.Second) // 12:01:33: b's 500 left too: 400
	if _, err := a.Reserve(ctx, e.tokens(1, 250)); err != nil {
		t.Fatalf("a's share of the room: %v", err)
	}
	grantErr(t, reserveErr(a, e.tokens(1, 1)), "share")
	// 63.1 s after the outage began: TPM / 2 = 500, of which a holds 400;
	// an overrun of 60 counts against it.
	e.clock.add(31 * time.Second) // 12:02:04
	a.Overran(lane, 60)
	grantErr(t, reserveErr(a, e.tokens(1, 41)), "share")
	if _, err := a.Reserve(ctx, e.tokens(1, 40)); err != nil {
		t.Fatalf("TPM / 2: %v", err)
	}
	e.srv.Restart()
	e.clock.add(time.Second)
	if _, err := a.Heartbeat(ctx); err != nil { // reconciles
		t.Fatal(err)
	}
	u, err := a.Usage(ctx, "2026-03-01")
	if err != nil {
		t.Fatal(err)
	}
	if l := u.Lanes[0]; l.Tokens != 500 || l.TokensByProcess["a"] != 500 {
		t.Errorf("token window after the reconnect: %d, by process %v; want a's 150 + 250 + 40 + the overrun 60", l.Tokens, l.TokensByProcess)
	}
	grantErr(t, reserveErr(b, e.tokens(1, 501)), "tpm")
	if _, err := b.Reserve(ctx, e.tokens(1, 500)); err != nil {
		t.Errorf("b within TPM after a's reconcile: %v", err)
	}
}

// TestRedisTokensModel drives several processes, each with its own
// connection, against one Redis on a virtual clock (the scripts take its
// now): at each step, in a random order, each process takes a grant of a
// random size whose budget is its requests' estimates, sends at random
// times within the grant, leaves requests unused, reports actual counts
// above the estimates as overruns, and is sometimes killed (it drops its
// grants and its pending overruns, a new one starts); each sends its
// heartbeat every HeartbeatTTL/3, as the scheduler does. Every interval of
// one window plus the margin holds sends of at most TPM estimated tokens.
//
// The window is the real one (60 s) and the grants live 8 s: Redis expires
// a lane's token window on its own clock, real time, ttl + margin + window
// + 1 s after the lane's last grant, so on a virtual clock the window must
// outlast any stall of the test between two grants (with a 300 ms window
// it was 1.36 s, less than a loaded -race run spent between grants: the
// budgets vanished and grants passed TPM).
func TestRedisTokensModel(t *testing.T) {
	seed := modelSeed(t)
	ctx := context.Background()
	e := newRedisEnv(t)
	const (
		window  = time.Minute // the shared window's default
		margin  = 4 * time.Second
		ttl     = 8 * time.Second
		tpm     = 1000
		clients = 4
		step    = 200 * time.Millisecond
		beat    = 5 * time.Second // HeartbeatTTL/3
		run     = 10 * time.Minute
	)
	cls := store.RedisClass{Name: "text", RPM: 1000, RPD: 1_000_000, TPM: tpm, Margin: margin}
	rng := rand.New(rand.NewPCG(seed, 1))
	gens := make([]int, clients)
	open := func(i int) *store.Redis {
		gens[i]++
		s, err := store.OpenRedis(ctx, store.NewMemory(), e.options(t, fmt.Sprintf("p%d-%d", i, gens[i]), cls))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ps := make([]*store.Redis, clients)
	for i := range ps {
		ps[i] = open(i)
	}
	t.Cleanup(func() {
		for _, s := range ps {
			s.Close()
		}
	})
	var sends []tokenSend
	refused, kills := 0, 0
	start := e.clock.now()
	for e.clock.now().Before(start.Add(run)) {
		now := e.clock.now()
		if now.Sub(start)%beat == 0 {
			for _, s := range ps {
				if _, err := s.Heartbeat(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, i := range rng.Perm(clients) {
			s := ps[i]
			covers := 1 + rng.IntN(4)
			ests := make([]int, covers)
			budget := 0
			for k := range ests {
				ests[k] = 20 + rng.IntN(180)
				budget += ests[k]
			}
			r := store.Record{Lane: lane, Day: "2026-03-01", Units: covers, Covers: covers, At: now, Until: now.Add(ttl), Tokens: int64(budget)}
			_, err := s.Reserve(ctx, r)
			if errors.Is(err, store.ErrNoGrant) {
				refused++
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, est := range ests {
				if rng.IntN(5) == 0 {
					continue // unused
				}
				sends = append(sends, tokenSend{now.Add(time.Duration(rng.Int64N(int64(ttl)))), est})
				if rng.IntN(3) == 0 {
					s.Overran(lane, int64(1+rng.IntN(est))) // its actual count was above the estimate
				}
			}
			if rng.IntN(20) == 0 { // killed
				s.Close()
				ps[i] = open(i)
				kills++
			}
		}
		e.clock.add(step)
	}
	span := window + margin
	worst, total := busiestTokens(sends, span)
	if worst > tpm {
		t.Errorf("an interval of %v held sends of %d estimated tokens, TPM %d (seed %d)", span, worst, tpm, seed)
	}
	t.Logf("%d sends, %d tokens, %d refusals, %d kills; busiest %v interval %d of %d tokens (seed %d)", len(sends), total, refused, kills, span, worst, tpm, seed)
	if total < 4*tpm {
		t.Errorf("only %d tokens sent in %v: the model did not cross several windows (seed %d)", total, run, seed)
	}
}

// tokenSend is a request of a model test as sent: when, and its estimated
// tokens.
type tokenSend struct {
	at  time.Time
	est int
}

// busiestTokens sorts sends by time and returns the most estimated tokens
// any interval of span holds (the busiest interval starts at a send: one
// starting elsewhere holds no more) and the tokens of all the sends.
func busiestTokens(sends []tokenSend, span time.Duration) (worst, total int) {
	slices.SortFunc(sends, func(a, b tokenSend) int { return a.at.Compare(b.at) })
	for i := range sends {
		sum := 0
		for j := i; j < len(sends) && sends[j].at.Before(sends[i].at.Add(span)); j++ {
			sum += sends[j].est
		}
		worst = max(worst, sum)
		total += sends[i].est
	}
	return worst, total
}
