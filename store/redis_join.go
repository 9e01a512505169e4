package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// A process that joins while the others may still be about to reconcile.
//
// After an outage that Redis survived with its state, what the processes
// sent on their share (redis_fault.go), and what the ones that died during
// it sent, is in no Redis window and no day count until the survivors reach
// Redis again (reconnect adds their own; the end of their recovery charges
// the dead ones', redis_dead.go). A process that joins in those seconds and
// takes grants from Redis alone would be granted that room again: a window
// over RPM (a daemon killed during the outage and restarted by a supervisor
// as soon as Redis answers). So a process that joins is held (no grant:
// Reason "share", Joining reports it) while a process of the cluster may
// still reach Redis from an outage without the joiner knowing:
//
//   - Overdue heartbeats. Before its first heartbeat (which prunes the
//     expired ones), OpenRedis counts the processes zset's entries whose
//     last heartbeat (score minus the TTL) is the grace (redis_fault.go: a
//     heartbeat interval, TTL/3, plus TTL/15; 6 s at the daemon's TTL)
//     old or older: each missed a beat, so it may be in an outage (or
//     partitioned, or dead). Every live process in an outage
//     reaches Redis within joinWait of the joiner's start (Redis answered
//     the joiner, and it answers every process alike: the outages the
//     share covers): its heartbeat comes a heartbeat interval after its
//     last attempt, which was bounded to an interval (the daemon's is), plus
//     go-redis's dial back-off, up to a second, and a second of slack. The
//     joiner is held for joinWait; then it follows the recovering key (a
//     survivor that reached Redis meanwhile set it, below), until none is
//     left. A process that stopped cleanly left the zset (Leave: the
//     daemon's clean stop), and the heartbeats of healthy processes are
//     not overdue (they come every TTL/3; one later than that by TTL/15
//     or more, a second at the daemon's TTL, holds the joiner: the safe
//     side): a process joining an idle or healthy cluster is not held. One whose entry is overdue because it was killed (Redis never
//     down) costs the joiners of the next heartbeat TTL (until a live
//     process's heartbeat prunes it; with none, until one joins and
//     beats) joinWait without grants; so does a joiner whose previous life
//     was killed: its own entry is overdue.
//   - The recovering key. A process whose call to Redis fails and that
//     reaches it again sets it before anything else (markBack, before the
//     heartbeat's script, which would prune the overdue entries of the
//     others): until its recovery's end plus the charge's delay (a
//     heartbeat interval and a second: the dead are charged at the first
//     heartbeat or grant after the recovery's end), later when Redis came
//     back empty (reconnect). A joiner that counted overdue entries sets
//     it too, before its first heartbeat (which prunes them), until the
//     end of its own hold, so that a process joining after that
//     heartbeat (which sees neither those entries nor, were the key set
//     later, any key), while the first is still in OpenRedis or after
//     its OpenRedis failed, is held as long. A start that fails leaves
//     that hold: its heartbeat may have pruned the entries; when it
//     failed before, the entries themselves hold the next joiner at
//     least as long. The key holds that end on the scripts' clock
//     (Redis's TIME, or RedisOptions.Now); a joiner is held until it,
//     and at its end reads the key again (a later end set meanwhile),
//     until the key's end is past.
//
// Early release. The hold ends before joinWait when every heartbeat that
// was overdue as the process joined (joinOverdue) beat again, as the
// joiner's own heartbeat reads them (releaseJoin, every heartbeat while
// held), and the recovering key holds no later end than the joiner's
// own: a process that reaches Redis again from an outage sets the key
// (markBack, for its recovery and the charge of the dead) before its
// heartbeat's script renews its entry, so an entry renewed with the key
// still at the joiner's end is one of a process that was late but never
// unreachable (a stall), which took no share.
//
// Heartbeats delivered late. A heartbeat's call may be written to the
// socket before a partition, time out (the process goes down: its share
// may begin a grace later) and still be run by Redis when the partition
// heals, before the process's next heartbeat and its markBack. So a
// heartbeat counts from when it was made, never from when Redis runs it
// (heartbeatScript's ARGV 8, Redis.sentClock: the call's local time on
// Redis's clock, early): its entry then says the process beat no later
// than it went down, so it is overdue when the share may begin, and a
// joiner is held by it; it prunes only the entries expired by then; and
// it beat again for releaseJoin only when made after the join (its score
// less the TTL later than the hold's end less joinWait), so a call made
// before the join and delivered during the hold releases nothing. The
// reconciled mark (redis_dead.go) counts from when its call was made the
// same way. Grants, give-backs and re-stamps neither renew an entry nor
// touch the recovering key: delivered late, they only count more (a
// grant whose reply was lost) or give back what was not used. An entry pruned (its
// heartbeat expired) releases nothing: a process in an outage longer than
// the TTL has an expired entry (the joiner's own first heartbeat prunes
// it) and may still reach Redis with its share's sends within joinWait;
// nor does a process killed, which never beats again. A joiner held by
// the key alone (it counted no overdue entry) is not released early.
//
// A process sends on its share only after the grace (redis_fault.go)
// after its failed call, and once a try at or after the grace's end failed
// (so Redis did not answer it in the grace), so at least the grace after
// its last heartbeat: by then its entry is overdue, whatever the TTL (the
// same length). Not covered: a cluster whose every process died
// during the outage (nobody charges them). See the README, "Faults".

// joinWait is how long a process joining is held when the processes zset
// holds an overdue heartbeat (see the top of this file): a heartbeat
// interval after an attempt bounded to an interval, go-redis's dial
// back-off (a second) and a second of slack; 12 s at the daemon's TTL.
func (s *Redis) joinWait() time.Duration { return 2*(s.ttl/3) + 2*time.Second }

// overdueBeats returns the entries of the processes zset that missed a
// heartbeat, each with its score: last heartbeat (score minus the TTL) the
// grace old or older, on the scripts' clock (the grace's length, after
// which a process that Redis did not answer may send on its share:
// overdue at or before its share can begin, at every TTL).
func (s *Redis) overdueBeats(ctx context.Context) ([]redis.Z, error) {
	late := s.ttl - s.grace()
	zs, err := overdueScript.Run(ctx, s.rdb, []string{s.procsKey()}, s.clock(), late.Milliseconds()).StringSlice()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]redis.Z, 0, len(zs)/2)
	for i := 0; i+1 < len(zs); i += 2 {
		sc, err := strconv.ParseFloat(zs[i+1], 64)
		if err != nil {
			return nil, fmt.Errorf("%w: overdue heartbeats: unexpected score %q", ErrUnavailable, zs[i+1])
		}
		out = append(out, redis.Z{Member: zs[i], Score: sc})
	}
	return out, nil
}

// holdJoiners sets the recovering key's end to d from now on the scripts'
// clock, unless it holds a later one (see the top of this file).
func (s *Redis) holdJoiners(ctx context.Context, d time.Duration) error {
	_, err := s.holdJoinersEnd(ctx, d)
	return err
}

// holdJoinersEnd is holdJoiners; it returns the end it asked for (ms, the
// scripts' clock; 0 for none).
func (s *Redis) holdJoinersEnd(ctx context.Context, d time.Duration) (int64, error) {
	if d <= 0 {
		return 0, nil
	}
	life := max(d, deadMarkTTL) // the end in the value decides; the life only cleans up
	end, err := recoveringScript.Run(ctx, s.rdb, []string{s.recoveringKey()}, s.clock(), d.Milliseconds(), life.Milliseconds()).Int64()
	return end, unavailable(err)
}

// joinOverdue records, for releaseJoin, the heartbeats overdue as this
// process joined and the end of the hold they caused (ms, the scripts'
// clock). Call after joinRecovery.
func (s *Redis) joinOverdue(zs []redis.Z, end int64) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.joining && len(zs) > 0 && end > 0 {
		s.f.overdue, s.f.joinEnd = zs, end
	}
}

// releaseJoin ends this process's hold as it joined before its end when
// every heartbeat overdue at its join beat again and the recovering key
// holds no later end than the hold's own (see "Early release" at the top
// of this file); a heartbeat calls it while the process is held. An error
// wraps ErrUnavailable (the hold stays; tried again at the next
// heartbeat).
func (s *Redis) releaseJoin(ctx context.Context) error {
	s.f.mu.Lock()
	zs, end := s.f.overdue, s.f.joinEnd
	held := s.f.joining && !s.f.down && len(zs) > 0 && s.localNow().Before(s.f.recovers)
	s.f.mu.Unlock()
	if !held {
		return nil
	}
	args := make([]any, 0, 3+2*len(zs))
	// A heartbeat counts from when it was made (heartbeatScript): it beat
	// again only when made after the process joined (when the hold's end
	// was set, joinWait before it), not one made before and delivered late.
	args = append(args, s.clock(), end, end-s.joinWait().Milliseconds()+s.ttl.Milliseconds())
	for _, z := range zs {
		args = append(args, z.Member, strconv.FormatFloat(z.Score, 'f', -1, 64))
	}
	ok, err := releaseJoinScript.Run(ctx, s.rdb, []string{s.procsKey(), s.recoveringKey()}, args...).Int()
	if err != nil {
		return unavailable(err)
	}
	if ok != 1 {
		return nil
	}
	now := s.localNow()
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.joining && !s.f.down && s.f.joinEnd == end {
		s.f.joining = false
		s.f.recovers = earliest(s.f.recovers, now)
		s.f.lostEnd = earliest(s.f.lostEnd, now)
		s.f.overdue, s.f.joinEnd = nil, 0
	}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// markBack, called by a process that Redis was unreachable for before its
// first call that may reach it again, holds the processes joining until
// its recovery and the charge of the processes presumed dead may be over
// (reconnect sets the exact end, or a later one when Redis came back
// empty). An error is Redis still unreachable.
func (s *Redis) markBack(ctx context.Context) error {
	return s.holdJoiners(ctx, s.ttl+s.ttl/3+time.Second)
}

// joinHeld returns how long the recovering key still holds a process
// joining (0: not).
func (s *Redis) joinHeld(ctx context.Context) (time.Duration, error) {
	ms, err := joinHeldScript.Run(ctx, s.rdb, []string{s.recoveringKey()}, s.clock()).Int64()
	if err != nil {
		return 0, unavailable(err)
	}
	return time.Duration(max(0, ms)) * time.Millisecond, nil
}

// rejoinCheck, when this process was held as it joined (joinRecovery) and
// the hold is over, reads the recovering key again: it is held until a
// later end set meanwhile, or its hold ends. An error wraps ErrUnavailable
// (tried again at the next grant).
func (s *Redis) rejoinCheck(ctx context.Context) error {
	s.f.mu.Lock()
	due := s.f.joining && !s.localNow().Before(s.f.recovers)
	s.f.mu.Unlock()
	if !due {
		return nil
	}
	d, err := s.joinHeld(ctx)
	if err != nil {
		return err
	}
	now := s.localNow()
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if d <= 0 {
		s.f.joining = false
		s.f.overdue, s.f.joinEnd = nil, 0
		return nil
	}
	s.f.recovers = later(s.f.recovers, now.Add(d))
	s.f.lostEnd = later(s.f.lostEnd, s.f.recovers)
	return nil
}

// Joining reports whether this process is held as it joined the cluster:
// it takes no grant (Reason "share") while a process of the cluster may
// still reach Redis from an outage, or recovers from one (see the README,
// "Faults"). Safe for concurrent use.
func (s *Redis) Joining() bool {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.f.joining && !s.f.down
}

// overdueScript returns the processes zset's entries scored at or before
// now plus late ms, with their scores (member, score, ...).
//
// KEYS: 1 processes (zset). ARGV: 1 now ms (0: TIME), 2 late ms.
var overdueScript = redis.NewScript(clockLua + `
local now = clock(ARGV[1])
return redis.call('ZRANGE', KEYS[1], '-inf', string.format('%d', now + tonumber(ARGV[2])), 'BYSCORE', 'WITHSCORES')
`)

// releaseJoinScript answers 1 when every entry given beat again (its
// score in the processes zset later than the one given, than now and than
// the floor: a heartbeat made after the join) and the recovering key's end
// is not later than the hold's, else 0.
//
// KEYS: 1 processes (zset), 2 the recovering key. ARGV: 1 now ms (0:
// TIME), 2 the hold's end ms, 3 the floor (the join's time plus the TTL,
// ms), then (member, score) pairs.
var releaseJoinScript = redis.NewScript(clockLua + `
local now = clock(ARGV[1])
if (tonumber(redis.call('GET', KEYS[2]) or '0') or 0) > tonumber(ARGV[2]) then return 0 end
local floor = tonumber(ARGV[3])
for i = 4, #ARGV, 2 do
  local sc = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not sc or tonumber(sc) <= tonumber(ARGV[i + 1]) or tonumber(sc) <= now or tonumber(sc) <= floor then return 0 end
end
return 1
`)

// recoveringScript sets the recovering key to now plus d ms (its end, on
// the scripts' clock) unless it holds a later end.
//
// KEYS: 1 the key. ARGV: 1 now ms (0: TIME), 2 d ms, 3 the key's life ms.
// Reply: now plus d ms.
var recoveringScript = redis.NewScript(clockLua + `
local e = clock(ARGV[1]) + tonumber(ARGV[2])
if (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) < e then
  redis.call('SET', KEYS[1], string.format('%d', e), 'PX', ARGV[3])
end
return e
`)

// joinHeldScript returns the recovering key's end minus now, ms (<= 0:
// none).
//
// KEYS: 1 the key. ARGV: 1 now ms (0: TIME).
var joinHeldScript = redis.NewScript(clockLua + `
return (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) - clock(ARGV[1])
`)
