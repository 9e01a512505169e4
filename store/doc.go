// Package store keeps what slideshowd must not forget across restarts and
// crashes: the daily request counters of every lane, lane cooldowns and
// exhaustion, disabled keys, and job records.
//
// # Basics
//
// A Store is an interface with two implementations: Memory (for tests and
// embedding without durability) and Bolt, backed by one go.etcd.io/bbolt file
// opened with Open. Every method of both is safe for concurrent use. Every
// method but Close takes a context first and returns ctx.Err() if it is
// already done, and ErrClosed after Close. Invalid arguments give an error
// wrapping ErrInvalid that names the field and the value (arguments are
// checked first, so that error comes even after Close).
//
// Daily counters are keyed by (Pacific day, project, class); a day is a string
// in DayFormat ("2006-01-02"). Callers lease daily units in chunks and record
// the chunk with AddDaily before any of its units is used (write-ahead), so the
// stored count is never below the true count: a crash can only over-count, by
// at most one chunk per lane. Bolt's AddDaily is one synced bbolt transaction.
//
// A store keeps the counters of the newest Options.History calendar days (7 by
// default), counted back from the newest day ever written: writing a newer day
// deletes the days that fall out of that window, and Open does the same (so a
// smaller History takes effect at the next Open). AddDaily for a day that is
// already outside the window fails with ErrTooOld.
//
// Results come in a fixed order: counts by day, then project, then class; lane
// states by project, then class; disabled keys and jobs by id.
//
// # Several processes
//
// Redis (OpenRedis) shares the quota state of several processes that use the
// same keys through one Redis server (github.com/redis/go-redis/v9): each
// lane's window of grants and day count per Pacific day, cooldowns, day
// exhaustion, lane stops (no quota on a model) and disabled keys, with
// pub/sub events so that the others learn of them at once; changes of keys
// and stops made while Redis is unreachable are pushed when it answers
// (ErrPending). Its Reserve is a grant in the manner of YouTube's
// Doorman: one atomic Lua script takes (or refuses whole) a record's window
// slots, counted as sent at the latest moment they may be sent, and its day
// units; the record then goes to the process's own Local store
// (write-ahead). Once the grant is over, its unused slots are given back and
// its used ones counted from their stamps (Redis.Stamped). Heartbeats count the live processes; a process whose limits
// for a lane differ from a live one's is refused (ErrLimitsConflict) and
// leaves nothing counted alive, as does any start that fails (Abandon); a
// Redis that restarted empty is re-seeded from the processes' own records.
// Jobs stay in each process's Local store. Redis Cluster (sharding) is not
// supported: the scripts touch keys of several lanes and processes.
//
// # Caveats
//
// A Bolt file can be opened by one process at a time (and, because the lock is
// an flock(2) on an open file description, by one Open at a time within a
// process); Open gives up after Options.Timeout with an error wrapping
// ErrLocked instead of hanging. The lock dies with the process, so a file
// left behind by a killed process opens normally.
//
// A Bolt file records its schema version; Open refuses a file of another
// version with an error wrapping ErrSchema.
//
// Project, class, key ids and job ids are at most MaxIDLen bytes and must not
// be empty. Times are stored in UTC without their monotonic reading: compare
// them with time.Time.Equal.
//
// The window of kept days is anchored at the newest day written, not at the
// clock: a day key far in the future would push every real day out of the
// window. Callers derive days from the clock only.
package store
