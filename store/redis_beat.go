package store

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Heartbeats carried by grants.
//
// A heartbeat is one script (heartbeatScript): it renews the process's
// liveness and limits registration and reads the view of the cluster (the
// outage share's, and the day counts daily protection takes). Once Beat
// has been called, a grant made when the last heartbeat is at least
// HeartbeatTTL/15 old (1 s by default) sends that same script in the same
// round trip (one pipeline: the grant's script, then the heartbeat's), and
// Beat skips the script when the last heartbeat came with a grant within
// its fresh. The caller calls Beat HeartbeatTTL/3 after LastBeat, so the
// heartbeat is never older than when Beat sent it every HeartbeatTTL/3; a
// process whose grants come at least every 4 s makes no round trip of its
// own for it, one whose grants are sparser makes one when 4 s pass without
// a grant; and the script runs at most once a second.

// beatState is the Redis ledger's part for heartbeats carried by grants.
type beatState struct {
	mu     sync.Mutex
	riding bool      // Beat was called: grants may carry heartbeats
	at     time.Time // when the last heartbeat's reply came (now), Heartbeat's or a grant's; zero before the first
	rode   bool      // the last one came with a grant
	busy   bool      // a grant is carrying one now
	// now is the clock of at: time.Now (tests set a virtual one).
	now func() time.Time
}

func (b *beatState) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

// Beat is Heartbeat for a caller that calls it every HeartbeatTTL/3 from
// LastBeat: from its first call on, grants carry the heartbeat when it is
// due (see the file redis_beat.go), and Beat skips the heartbeat's script
// when a grant carried one within fresh (it then returns the live
// processes that one counted; the rest of Heartbeat's work, token overruns
// and idle lanes' unused slots, is done as by Heartbeat).
func (s *Redis) Beat(ctx context.Context, fresh time.Duration) (int, error) {
	s.beat.mu.Lock()
	s.beat.riding = true
	s.beat.mu.Unlock()
	return s.heartbeat(ctx, fresh)
}

// LastBeat returns when the reply of this process's last heartbeat came
// (time.Now's clock), sent by Heartbeat, Beat or a grant that carried it;
// the zero Time before the first.
func (s *Redis) LastBeat() time.Time {
	s.beat.mu.Lock()
	defer s.beat.mu.Unlock()
	return s.beat.at
}

// beaten records a heartbeat whose reply came now, by a grant (rode) or
// not.
func (s *Redis) beaten(rode bool) {
	s.beat.mu.Lock()
	s.beat.at, s.beat.rode = s.beat.clock(), rode
	s.beat.mu.Unlock()
}

// rode reports whether the last heartbeat came with a grant within fresh.
func (s *Redis) rode(fresh time.Duration) bool {
	s.beat.mu.Lock()
	defer s.beat.mu.Unlock()
	return s.beat.rode && s.beat.clock().Sub(s.beat.at) < fresh
}

// due reports whether a grant should carry a heartbeat now, and if so
// marks one under way (call ridden after).
func (s *Redis) due() bool {
	s.beat.mu.Lock()
	defer s.beat.mu.Unlock()
	if !s.beat.riding || s.beat.busy || s.beat.at.IsZero() || s.beat.clock().Sub(s.beat.at) < s.ttl/15 {
		return false
	}
	s.beat.busy = true
	return true
}

// runGrant runs the grant script with keys and args, as grantScript.Run,
// and the heartbeat's script in the same round trip when one is due.
func (s *Redis) runGrant(ctx context.Context, keys []string, args ...any) *redis.Cmd {
	if !s.due() {
		return grantScript.Run(ctx, s.rdb, keys, args...)
	}
	defer func() {
		s.beat.mu.Lock()
		s.beat.busy = false
		s.beat.mu.Unlock()
	}()
	b := s.beatCall(false)
	var g, hb *redis.Cmd
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		g = grantScript.EvalSha(ctx, p, keys, args...)
		hb = heartbeatScript.EvalSha(ctx, p, b.keys, b.args...)
		return nil
	})
	t1 := s.localNow()
	if redis.HasErrorPrefix(g.Err(), "NOSCRIPT") {
		// Redis did not have the grant's script (it did not run): as
		// grantScript.Run. The heartbeat is left to Beat.
		return grantScript.Run(ctx, s.rdb, keys, args...)
	}
	s.ridden(hb, b, t1)
	return g
}

// ridden records the heartbeat a grant carried (b, its reply hb, which came
// at t1 on the local clock): the live processes, a new join and the limits
// conflict as Heartbeat does; and when Redis is reachable and kept the
// epoch joined, its view, and the heartbeat as done. Anything else (a
// re-seed, a reconnect) is left to the next Beat, which then sends the
// script.
func (s *Redis) ridden(hb *redis.Cmd, b beatArgs, t1 time.Time) {
	res, err := hb.Slice()
	if err != nil || len(res) < 6 {
		return
	}
	_, ep, down := s.noteBeat(res, false)
	s.mu.Lock()
	same := ep == s.epoch && ep == b.joined
	s.mu.Unlock()
	if down || !same || len(res) <= 6 {
		return
	}
	v, err := s.viewFrom(res[6:], b.t0, t1, b.day)
	if err != nil {
		return
	}
	s.setView(v)
	s.beaten(true)
}
