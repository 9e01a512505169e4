package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// A process that fails to start leaves nothing counted.
//
// OpenRedis's heartbeat puts the process in the live processes (the
// processes zset) for HeartbeatTTL; the others then count it in their
// views: their live processes (Usage, the daemon's
// slideshowd_cluster_processes), the N of an outage's share, and the
// roster of the processes presumed dead after an outage, each charged its
// share of every lane (redis_dead.go). A process that fails after that
// heartbeat (limits that differ, found by register's second check; that
// heartbeat's reply lost, the script having run; any later error of
// OpenRedis; an error of the program's own start after OpenRedis
// returned, which calls Abandon) took no grant: abandon removes what
// joining wrote about this life of the process (its heartbeat and its
// limits registration, named after Redis.id, never those of a live
// process given the same name; as Leave and the registration's expiry
// would) and
// sets its reconciled mark to Redis's now plus a HeartbeatTTL, so that a
// survivor whose view still held it (a view is read again at every
// heartbeat, every HeartbeatTTL/3) does not charge it for an outage that
// began before then: it never sent anything. What joining wrote for the
// cluster (the epoch, the day counts re-seeded from the Local store, the
// keys and lanes published from it) is the cluster's and stays.

// abandonTimeout bounds abandon's call: a start that failed is not held
// long by a Redis that no longer answers (the heartbeat then expires by
// itself, after HeartbeatTTL).
const abandonTimeout = time.Second

// abandonScript removes a process from the live processes and its limits
// registration, and (mark "1") sets its reconciled mark to now plus ttl,
// unless it holds a later time.
//
// KEYS: 1 processes (zset), 2 the process's limits hash, 3 its reconciled
// mark. ARGV: 1 process, 2 now ms (0: TIME), 3 heartbeat ttl ms, 4 the
// mark's life ms, 5 mark ("1" or "0"). Reply: 1.
var abandonScript = redis.NewScript(clockLua + `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
if ARGV[5] == '1' then
  local m = clock(ARGV[2]) + tonumber(ARGV[3])
  if tonumber(redis.call('GET', KEYS[3]) or '0') < m then
    redis.call('SET', KEYS[3], string.format('%d', m), 'PX', ARGV[4])
  end
end
return 1
`)

// abandon undoes this process's join, best-effort (see the top of this
// file): within abandonTimeout, also when ctx is canceled (a start
// interrupted by a signal). A process that reserved is only removed (no
// mark: it may have sent on a share).
func (s *Redis) abandon(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	mark := "1"
	if s.reserved.Load() {
		mark = "0"
	}
	keys := []string{s.procsKey(), s.key("limits") + ":" + s.id, s.key("reconciled", s.id)}
	err := abandonScript.Run(ctx, s.rdb, keys, s.id, s.clock(), s.ttl.Milliseconds(), deadMarkTTL.Milliseconds(), mark).Err()
	return unavailable(err)
}

// Abandon undoes this process's join after a start that failed once
// OpenRedis returned (a program whose own start-up then fails, before it
// reserved anything): it removes this life of the process from the live
// processes (as Leave does) and its limits registration (not those of
// another process given the same name), so no other process counts
// it alive, in its usage, its share of an outage or the processes it
// presumes dead after one (an OpenRedis that fails does this itself).
// Call it instead of Leave, then Close; do not use the ledger afterwards
// (a Heartbeat would count it alive again). After a Reserve or
// ReserveUpTo it is Leave plus the registration removed: such a process
// may have sent, and is charged like any stopped one (see the README,
// "Faults"). Best-effort: it tries for a second, also when ctx is
// already canceled (a start interrupted by a signal), and returns an error
// wrapping ErrUnavailable when Redis did not answer in it; the heartbeat
// then expires after HeartbeatTTL. Safe for concurrent use.
func (s *Redis) Abandon(ctx context.Context) error {
	return s.abandon(ctx)
}
