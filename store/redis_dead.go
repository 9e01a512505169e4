package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A process that dies during an outage that Redis survives with its state.
//
// While Redis is unreachable, every process sends on its share of each lane
// (redis_fault.go): at most RPM / N slots in any window (livePosted counts
// its own share grants whose slots may still be sent in the window, against
// windowCap, at most RPM / N), and on a day at most (RPD - its view's day
// count - the most the others may have taken after its view) / N units,
// which is at most (RPD - C) / N, C the lane's shared day count when the
// outage began. The first heartbeat that reaches Redis again adds those
// grants to the shared window and day count (reconnect). A process that
// dies before it reaches Redis again adds them nowhere: once the others'
// recoveries are over, Redis would grant that room again.
//
// So, when the recovery of a process S ends (a heartbeat TTL after its
// reconnect), S charges every process Q of its view from when the outage
// began (the roster: the live processes of its last view, whatever its age)
// that did not reach Redis since the outage began: Q is presumed dead. Q
// reached Redis since then when its heartbeat in the processes zset was
// renewed after the outage's start (its expiry minus the heartbeat TTL is
// later: every process of a cluster has the same HeartbeatTTL, the
// daemon's 15 s), or its reconnect wrote its reconciled mark (Redis's
// clock) after that start. The outage's start is S's F (the end of the call
// that failed) on Redis's clock, taken late: F minus the smallest offset of
// S's view (F - offMin); a heartbeat from before the outage is earlier. The
// bound assumes (as the share's does) that every live process reaches Redis
// within a heartbeat TTL of the first one: then by the end of S's recovery
// every live process has, and the ones that have not are dead (or cut off
// by a partition: not covered, see the README).
//
// The charge is one script per Q (deadScript), once per (Q, outage): it
// sets a mark holding Redis's time of the charge, and charges nothing when
// that mark is not older than the outage's start (another survivor charged
// Q already; a later outage starts after any charge of an earlier one). Per
// lane of S (the lanes Q had are the cluster's configuration: S knows its
// own), it adds:
//
//   - RPM / N window slots as sent at the script's now plus the lane's
//     window margin (the latest Q may have sent: they leave the window 60 s
//     plus the margin later), in one member named after Q; so every window
//     from then on counts what Q may have sent on its share in the last
//     minute;
//   - TPM / N tokens to the lane's token window the same way (TPM lanes);
//   - day units to the shared day count of the day of S's view (Q's part
//     of it): the smaller of two bounds of what Q took on its share of
//     that day, each safe alone:
//
//     1. floor((RPD - C) / N), Q's whole day share: at least it when C is
//     at most Q's view's count plus the most the others may have taken
//     after it. C is the smaller of two counts of the lane, each such a
//     bound in most cases: the one S's view read (a view read later than
//     Q's holds at most those grants more, an earlier one fewer; but day
//     units given back between the two views, a grant settled, make it
//     larger), and the one the first process to reconnect recorded before
//     it added anything (recordOutageCounts: the count when the outage
//     began, as nobody wrote during it; but grants Redis made after it
//     came back and before that reconcile, to a process that started
//     meanwhile or did not notice the outage, make it larger).
//
//     2. ceil(RPM / N) x (floor((now - q + 1 s) / 60 s) + 1), what Q may
//     have taken on its share between its last reach of Redis and the
//     charge (60 s: the window, as below; the script takes the window's
//     length, shorter in this package's tests): Q grants itself a share grant only when its own share
//     grants still live (livePosted: those whose slots' score, the grant's
//     time plus its life and the margin, is later than 60 s before) plus
//     the new one's slots are at most windowCap, which is at most
//     floor(RPM / N) (N of Q's view); a grant's life and margin are not
//     negative, so every share grant made less than 60 s before Q's last
//     one is still live then: the share grants of any span shorter than
//     60 s hold at most floor(RPM / N) slots (ceil with S's N: a little
//     more when both views count the same processes; see N below). Q's
//     share grants come after its last reach of Redis (before it, it was
//     not down, or its reconnect added them) and before its death, before
//     the charge's now (presumed dead by the end of S's recovery, above;
//     Redis's clock, the script's; a heartbeat that reached Redis while
//     Q was down, its reconnect then failing, is not such a reach: not
//     covered, see the README); a span of length L is covered by
//     floor(L / 60 s) + 1 spans of 60 s, each shorter by a millisecond.
//     The day units of a record are at most its Covers (package bucket's
//     records: a record's Chunk is part of what it covers, the lane's
//     units reserved and not used; the store does not check it), so Q's
//     share day units are at most its share slots. q, Q's last reach on
//     Redis's clock, is the latest known of: its heartbeat's time (its
//     score in the processes zset minus the heartbeat TTL: absent once
//     the survivors' heartbeats pruned it, after a TTL), its reconciled
//     mark, and the time of S's view minus the TTL (Q was live in it: its
//     heartbeat expired after that view, so it beat less than a TTL before
//     it); so q is at most a TTL before Q's last heartbeat, one more 60 s
//     span charged at most. The second of slack covers the clocks'
//     milliseconds (TIME truncated, the views' offsets rounded).
//
//     When the Pacific day at the charge is a later one than the view's,
//     that day instead, at most floor(RPD / N) (the share of a new day
//     did not subtract the view's count) and the second bound as is (Q's
//     grants of the later day came after q too).
//
// N is that of S's view (its live processes). Views read within a
// heartbeat of each other count the same processes; one that expired or
// joined between two views may make Q's N differ by one from S's.
//
// Until every check is done, the process's grants stay within its share
// (sharing), so no grant from Redis alone comes before the charge. A
// check that fails (Redis unreachable again) is tried again at the next
// heartbeat or grant.
//
// A Q that reaches Redis again after it was charged (later than the bound
// allows) adds its own share grants too: counted twice, on the safe side
// (at most its share of a window for a minute, and its day share). It is
// not charged again: its reconciled mark is later than the outage's start.
// Charging costs the cluster, per dead process and lane, RPM / N of the
// window for a minute and, of the day, ceil(RPM / N) units per started
// minute from its last reach of Redis (its view's time minus a TTL at the
// earliest) to the charge (at most its day share), whether or not it sent
// them; a process that stopped (or died) within a heartbeat TTL before
// the outage began is charged too. The day's part of that cost lasts until
// its data directory starts again ("The charge replaced", below).

// deadSlack is added to the span from a dead process's last reach of Redis
// to its charge: the clocks' milliseconds (see the top of this file).
const deadSlack = time.Second

// deadMarkTTL is how long the charge and reconciled marks live: longer
// than any recovery (a heartbeat TTL) after the reconnects they follow.
const deadMarkTTL = 10 * time.Minute

// deadCheck is one outage's check of the processes presumed dead, due
// when the recovery after it ends.
type deadCheck struct {
	start int64 // the outage's start on Redis's clock, late (ms)
	n     int
	view  *clusterView
	// dayOnly: Redis came back empty, so the recovery was long enough for
	// every slot of the outage to leave the window; only the day units
	// are charged.
	dayOnly bool
}

// DeadCharge is a process presumed dead that this process charged at the
// end of its recovery after an outage: the share it may have sent on,
// added to the shared windows and day counts (see the README, "Faults").
type DeadCharge struct {
	Process string
	Lanes   []DeadLane
}

// DeadLane is one lane of a DeadCharge: the window slots, day units (of
// Day, a Pacific day YYYY-MM-DD) and tokens (TPM lanes; else 0) added.
type DeadLane struct {
	Lane   LaneID
	Day    string
	Slots  int
	Units  int
	Tokens int64
}

// DeadCharges returns the charges this process made since the last call
// (none: nil), oldest first. Safe for concurrent use.
func (s *Redis) DeadCharges() []DeadCharge {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	out := s.f.charged
	s.f.charged = nil
	return out
}

// newDeadCheck queues the check of the outage o's roster (reconnect), of
// the day units only when Redis came back empty (dayOnly). Call with f.mu
// held.
func (s *Redis) newDeadCheck(o *outage, dayOnly bool) {
	if o == nil || o.roster == nil || len(o.roster.procs) == 0 {
		return
	}
	n := o.n
	if n == 0 {
		n = max(1, o.roster.live)
	}
	s.f.deads = append(s.f.deads, deadCheck{start: o.since.UnixMilli() - o.roster.offMin, n: n, view: o.roster, dayOnly: dayOnly})
}

// outageCountKey keeps lane l's day count of day as the first process to
// reconnect after an outage found it (recordOutageCounts).
func (s *Redis) outageCountKey(day string, l LaneID) string {
	return s.key("outagecount", day, redisLane(l))
}

// recordOutageCounts records, for a heartbeat TTL times three (past every
// survivor's check), each lane's day count of the day of the roster's view
// as Redis holds it now, unless another process recorded it already or the
// cluster's epoch is not the one this process joined (Redis came back
// empty: its counts are not the outage's): the first process to reconnect
// after an outage calls it before it adds its own share grants, so the
// count is the one the outage began with. A nil roster records nothing.
func (s *Redis) recordOutageCounts(ctx context.Context, roster *clusterView) error {
	if roster == nil || len(s.lanes) == 0 {
		return nil
	}
	keys := make([]string, 1, 1+2*len(s.lanes))
	keys[0] = s.epochKey()
	for _, l := range s.lanes {
		day := roster.lanes[l].day
		if day == "" {
			continue
		}
		keys = append(keys, s.outageCountKey(day, l), s.dayKey(day, l))
	}
	if len(keys) == 1 {
		return nil
	}
	return unavailable(outageCountScript.Run(ctx, s.rdb, keys, (3 * s.ttl).Milliseconds(), s.currentEpoch()).Err())
}

// markReconciled records in Redis (its clock) that this process reached it
// and reconciled after an outage, as of when the call was made (sentClock:
// a mark delivered late does not say the process reached Redis after a
// later outage began).
func (s *Redis) markReconciled(ctx context.Context) error {
	err := reconciledScript.Run(ctx, s.rdb, []string{s.key("reconciled", s.id)}, s.clock(), deadMarkTTL.Milliseconds(),
		s.sentClock(s.localNow())).Err()
	return unavailable(err)
}

// chargeDead runs the checks due (the recovery over, Redis answering): see
// the top of this file. It returns an error wrapping ErrUnavailable when
// Redis did not answer (the checks left are tried again at the next call).
func (s *Redis) chargeDead(ctx context.Context) error {
	// The previous life's charge replaced, when it was left (fixDead).
	if err := s.retryFix(ctx); err != nil {
		return err
	}
	s.f.mu.Lock()
	due := len(s.f.deads) > 0 && !s.f.down && !s.localNow().Before(s.f.recovers)
	s.f.mu.Unlock()
	if !due {
		return nil
	}
	s.f.deadMu.Lock()
	defer s.f.deadMu.Unlock()
	for {
		s.f.mu.Lock()
		if len(s.f.deads) == 0 || s.f.down {
			s.f.mu.Unlock()
			return nil
		}
		dc := s.f.deads[0]
		s.f.mu.Unlock()
		var charges []DeadCharge
		for _, p := range dc.view.procs {
			if p == s.id {
				continue
			}
			c, err := s.chargeOne(ctx, dc, p)
			if err != nil {
				return err
			}
			if c != nil {
				charges = append(charges, *c)
			}
		}
		s.f.mu.Lock()
		s.f.deads = s.f.deads[1:]
		s.f.charged = append(s.f.charged, charges...)
		s.f.mu.Unlock()
	}
}

// chargeOne charges process p of dc when it did not reach Redis since the
// outage began and nobody charged it for this outage; nil when not charged.
func (s *Redis) chargeOne(ctx context.Context, dc deadCheck, p string) (*DeadCharge, error) {
	day := s.localNow().In(s.loc).Format(DayFormat)
	keys := []string{s.key("dead", p), s.key("reconciled", p), s.procsKey(), s.fixKey(p), s.chargedKey(p)}
	// p was live in the view: it beat less than a TTL before the view's
	// time on Redis's clock (t1 - offMax).
	seen := dc.view.at.UnixMilli() - dc.view.offMax - s.ttl.Milliseconds()
	args := []any{p, dc.start, s.ttl.Milliseconds(), s.clock(), s.window.Milliseconds(), dayKeyTTL,
		deadMarkTTL.Milliseconds(), seen, deadSlack.Milliseconds(), displayName(p), s.prefix}
	charge := &DeadCharge{Process: displayName(p)}
	for _, l := range s.lanes {
		c := s.classes[l.Class]
		dl := DeadLane{Lane: l, Day: day}
		if !dc.dayOnly {
			dl.Slots = c.RPM / dc.n
			if c.TPM > 0 {
				dl.Tokens = int64(c.TPM / dc.n)
			}
		}
		count := -1 // the view's count of the day charged; -1: none (a later day)
		if lv, ok := dc.view.lanes[l]; ok && lv.day >= day {
			dl.Day, count = lv.day, lv.count
		}
		charge.Lanes = append(charge.Lanes, dl)
		keys = append(keys, s.winKey(l), s.winCountKey(l), s.dayKey(dl.Day, l), s.useKey(dl.Day, l), s.tokKey(l),
			s.outageCountKey(dl.Day, l))
		rate := (c.RPM + dc.n - 1) / dc.n // ceil(RPM / N): its share's slots in any span under 60 s
		args = append(args, dl.Slots, c.Margin.Milliseconds(), c.RPD, count, dc.n, dl.Tokens, rate)
	}
	res, err := deadScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, unavailable(err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	if len(res) != len(charge.Lanes) {
		return nil, fmt.Errorf("%w: dead charge: unexpected reply %v", ErrUnavailable, res)
	}
	for i := range charge.Lanes {
		charge.Lanes[i].Units = int(res[i])
	}
	return charge, nil
}

// reconciledScript sets this process's reconciled mark to when the call
// was made (never later than Redis's now, nor earlier than the mark).
//
// KEYS: 1 the mark. ARGV: 1 now ms (0: TIME), 2 the mark's life ms, 3 when
// the call was made (ms, the scripts' clock, early: Redis.sentClock; 0:
// now).
var reconciledScript = redis.NewScript(clockLua + `
local now = clock(ARGV[1])
local at = tonumber(ARGV[3]) or 0
if at <= 0 or at > now then at = now end
if at > (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) then
  redis.call('SET', KEYS[1], string.format('%d', at), 'PX', ARGV[2])
end
return 1
`)

// outageCountScript records each lane's day count, unless recorded, in the
// epoch joined.
//
// KEYS: 1 the epoch, then pairs of (the record, the day count). ARGV: 1 the
// record's life ms, 2 the epoch this process joined.
var outageCountScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
for i = 2, #KEYS, 2 do
  redis.call('SET', KEYS[i], redis.call('GET', KEYS[i + 1]) or '0', 'NX', 'PX', ARGV[1])
end
return 1
`)

// deadScript charges a process presumed dead with its share of each lane
// (see the top of redis_dead.go): unless it reached Redis since the
// outage's start (its reconciled mark, or its heartbeat, is later) or was
// charged for this outage (its charge mark is not older than the start).
//
// KEYS: 1 the process's charge mark, 2 its reconciled mark, 3 processes
// (zset), 4 its fix mark (deadFixScript: no day units then), 5 its charged
// units (day:lane -> units, for deadFixScript), then per lane: window,
// window count, day count, use, token window, the day count recorded after
// the outage (recordOutageCounts).
// ARGV: 1 process (its life's name in Redis: Redis.id), 2 the outage's
// start ms, 3 heartbeat ttl ms, 4 now ms (0: TIME), 5 window ms, 6 day key
// ttl s, 7 mark life ms, 8 the latest time the process is known to have
// reached Redis by the view (ms), 9 the slack ms (deadSlack), 10 its name
// (displayName: its field of the use hash), 11 the cluster's key prefix,
// then per lane: slots, margin ms, RPD, the view's
// day count (-1: none, a later day), N, tokens, ceil(RPM / N). Reply: the
// day units charged per lane, or {} when not charged.
var deadScript = redis.NewScript(clockLua + windowLua + tokensLua + `
local now = clock(ARGV[4])
local start = tonumber(ARGV[2])
local mark = tonumber(redis.call('GET', KEYS[2]) or '0')
if mark > start then return {} end
local hb = redis.call('ZSCORE', KEYS[3], ARGV[1])
local last = math.max(tonumber(ARGV[8]), mark)
if hb then
  last = math.max(last, tonumber(hb) - tonumber(ARGV[3]))
  if tonumber(hb) - tonumber(ARGV[3]) > start then return {} end
end
-- The window-long spans from its last reach to now: its share's slots in
-- each.
local spans = math.floor(math.max(0, now - last + tonumber(ARGV[9])) / tonumber(ARGV[5])) + 1
if tonumber(redis.call('GET', KEYS[1]) or '0') >= start then return {} end
redis.call('SET', KEYS[1], string.format('%d', now), 'PX', ARGV[7])
local win = tonumber(ARGV[5])
local fixed = redis.call('EXISTS', KEYS[4]) == 1
local out = {}
local i = 0
for a = 12, #ARGV - 6, 7 do
  local k = 5 + 6 * i
  i = i + 1
  local slots, lead, rpd, count, n, tokens, rate = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
    tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local score = now + lead
  local member = ARGV[1] .. ':' .. string.format('%d', now) .. ':d:' .. i
  if slots > 0 then
    local w = win_open(KEYS[k + 1], KEYS[k + 2])
    win_add(w, score, member .. '*' .. slots, slots)
    local want = score - now + win + 1000
    if redis.call('PTTL', KEYS[k + 1]) < want then redis.call('PEXPIRE', KEYS[k + 1], want) end
    win_close(w)
  end
  if count < 0 then
    count = 0
  else
    local rec = redis.call('GET', KEYS[k + 6])
    if rec then count = math.min(count, tonumber(rec)) end
  end
  local units = math.min(math.floor(math.max(0, rpd - count) / n), rate * spans)
  if fixed then units = 0 end
  if units > 0 then
    redis.call('INCRBY', KEYS[k + 3], units)
    redis.call('EXPIRE', KEYS[k + 3], ARGV[6])
    redis.call('HINCRBY', KEYS[k + 4], ARGV[10], units)
    redis.call('EXPIRE', KEYS[k + 4], ARGV[6])
    redis.call('HINCRBY', KEYS[5], string.sub(KEYS[k + 3], #ARGV[11] + 5), units)
    redis.call('EXPIRE', KEYS[5], ARGV[6])
  end
  out[#out + 1] = units
  if tokens > 0 then
    tok_take(KEYS[k + 5], member, score, tokens, score - now + win + 1000)
  end
end
return out
`)

// The charge replaced. A process presumed dead is charged a bound of what
// it may have taken on its share (above), whether or not it sent anything
// (a daemon killed during an outage was charged 13 % of a day in the
// verifier's runs, though it sent nothing). Its data directory knows
// better: when the Local store keeps lives (lifeRecorder: Bolt), each life
// records there, durably, its name in Redis, the epoch it joined, and the
// day units it granted itself on a share and had not added to Redis yet
// (pending: written before the grant is used, so never below it; emptied
// once its reconnect added them, or re-seeded them). Each record is
// numbered (Gen); the reconnect's script that adds the pending units to a
// day count (reconcileScript) marks that day count, in the life's added
// hash, with the number of the last record written, in the same script:
// a life killed after that script and before its emptied record was
// written leaves a record whose units are marked added, and they are not
// added again (the units of a later record, number above the mark, are).
// When a process starts
// on that data directory (whatever its name now), before it takes any
// grant, it replaces the previous life's charge by those units (fixDead,
// deadFixScript, one atomic script): per day and lane, the day count and
// the previous life's part of it (its name's field of the use hash) move by
// pending minus the units charged to that life (the deadScript records
// them per life, day and lane); when that life was not charged yet, its
// pending units are added now, and a charge that comes later adds its
// window slots and tokens but no day units. Once per life and epoch (a
// mark), so a start that fails after it and is tried again corrects it
// once. In an epoch that
// life did not join (Redis lost its state, and the mark), pending is not
// added (this process's re-seed of its Local day counts, which hold it,
// did) and a charge made there (of the day only) is removed: the process
// does it again in each epoch it joins, as long as it runs (a charge comes
// at the end of a recovery, after an outage of any length: with a time
// limit, 10 minutes before, a charge in an epoch joined after an outage
// longer than that stayed). That life is dead: its record is in the very
// file this process opened (the same boot id, device and inode:
// SharedLife.Copy false), which stays locked while a process has it open,
// so that life no longer runs, and every unit it took on a share is in
// that record. While that life beat within the grace, it is left to the
// next heartbeats (fixDead: a clone of the disk under the same boot id
// would read as this file). The mark holds the record's number: a later
// record of that life (its own file, after a clone's replacement from a
// shorter one) replaces again. A record read
// on another file (a copy of the data directory: that life may still run
// on the original, or may have taken more on a share after the copy, so
// the record may be short) only raises the charge to pending, once, and
// marks nothing: a later charge adds its day units, and the original's
// next start replaces both. Before, any start whose previous life's
// heartbeat was past the grace took that life for dead, so a copy started
// while the original's heartbeat was late marked the live original, and
// again in each new epoch, before the original could beat there
// (review10 R10-2): its share units of a later outage were in no count. A
// life whose heartbeat finds its own mark deletes it (heartbeatScript: a
// killed life's last heartbeat delivered late; a later charge of it then
// adds day units again: the safe side).
// `slideshowd store restore` forgets the
// restored file's records (Bolt.ForgetSharedLives): a backup's record is
// the life as it was then, and would replace the charge by the units
// pending then, not those taken after; without a record the charge stays.
// Each lane and day replaced is reported (DeadFixes; the scheduler logs
// one line each). What the cluster then counts of the dead life's share
// is what it granted itself, never below what it sent; a data directory
// that never starts again leaves the charge (the bound above).

// lifeRecorder is a Local store that keeps the last life of a process in
// a cluster (Bolt; see SharedLife).
type lifeRecorder interface {
	SharedLife(ctx context.Context, cluster string) (SharedLife, error)
	SetSharedLife(ctx context.Context, cluster string, l SharedLife) error
}

// fixKey marks the charge of life p replaced (deadFixScript).
func (s *Redis) fixKey(p string) string { return s.key("deadfix", p) }

// chargedKey holds the day units life p counts for from its charges
// (deadScript) and their replacements (deadFixScript): day:lane -> units.
func (s *Redis) chargedKey(p string) string { return s.key("charged", p) }

// addedKey holds, per day count that life p's reconnects added its
// pending share units to (reconcileScript), the number (Gen) of p's last
// record in its Local store then: day count key -> Gen.
func (s *Redis) addedKey(p string) string { return s.key("added", p) }

// recordLife writes this life, its epoch and its pending share units to
// the Local store when it keeps lives (see "The charge replaced" above).
// Writes are serialized, each one the state when it is made, so the last
// one holds every unit noted before it.
func (s *Redis) recordLife(ctx context.Context) error {
	lr, ok := s.Local.(lifeRecorder)
	if !ok {
		return nil
	}
	s.f.lifeMu.Lock()
	defer s.f.lifeMu.Unlock()
	s.f.lifeSeq++
	s.mu.Lock()
	l := SharedLife{Life: s.id, Epoch: s.epoch, Gen: s.f.lifeSeq, Prev: s.prevNames}
	s.mu.Unlock()
	s.f.mu.Lock()
	for dl, n := range s.f.pendDays {
		if n > 0 {
			l.Pending = append(l.Pending, DailyCount{Day: dl.day, Lane: dl.lane, Count: n})
		}
	}
	s.f.mu.Unlock()
	slices.SortFunc(l.Pending, func(a, b DailyCount) int {
		if a.Day != b.Day {
			return strings.Compare(a.Day, b.Day)
		}
		return compareLane(a.Lane, b.Lane)
	})
	if err := lr.SetSharedLife(ctx, s.cluster, l); err != nil {
		return err
	}
	s.f.mu.Lock()
	s.f.lifeGen = l.Gen
	s.f.mu.Unlock()
	return nil
}

// fixDead, as this process starts (joined, before any grant), replaces the
// charge of the previous life recorded in the Local store by its pending
// share units (see "The charge replaced" above), then records this life.
// On a record written to this very file (the file is locked while open, so
// that life no longer runs) the replacement is exact, and made again in
// each epoch this process joins later, as long as it runs (Redis restarted
// empty loses the mark, and a charge of the day only may come in the new
// epoch: retryFix); while that life beat within the grace (a restart at
// once after a kill; or a clone of the disk, which reads as this file), it
// is left to this process's next heartbeats, fixTries in all, until that
// life's heartbeat is overdue. On a Copy (another file: that life may
// still run on the original, and take more on a share than the copy
// recorded) it only raises the charge, once.
func (s *Redis) fixDead(ctx context.Context) error {
	lr, ok := s.Local.(lifeRecorder)
	if !ok {
		return nil
	}
	prev, err := lr.SharedLife(ctx, s.cluster)
	if err != nil {
		return err
	}
	if prev.Life != "" && prev.Life != s.id {
		s.f.mu.Lock()
		s.f.fixPrev = &prev
		s.f.mu.Unlock()
		if err := s.runFix(ctx); err != nil {
			return err
		}
	}
	return s.recordLife(ctx)
}

// retryFix runs the replacement of fixDead again when it is due: not made
// in the epoch this process joined (left, or made in another), Redis
// answering, at most once per heartbeat interval. An error wraps
// ErrUnavailable (tried again later).
func (s *Redis) retryFix(ctx context.Context) error {
	now := s.localNow()
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	s.f.mu.Lock()
	due := s.f.fixPrev != nil && !s.f.down && !now.Before(s.f.fixNext) && s.f.fixEpoch != epoch
	s.f.mu.Unlock()
	if !due {
		return nil
	}
	return s.runFix(ctx)
}

// runFix runs deadFixScript for the life fixDead found (see fixDead).
func (s *Redis) runFix(ctx context.Context) error {
	s.f.mu.Lock()
	prev := s.f.fixPrev
	s.f.mu.Unlock()
	if prev == nil {
		return nil
	}
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	raise := "0"
	if prev.Copy {
		raise = "1"
	}
	keys := []string{s.fixKey(prev.Life), s.chargedKey(prev.Life), s.epochKey(), s.addedKey(prev.Life), s.procsKey()}
	args := []any{epoch, displayName(prev.Life), dayKeyTTL, s.prefix, raise, prev.Epoch, prev.Gen, prev.Life, s.clock(),
		(s.ttl - s.grace()).Milliseconds()}
	for _, p := range prev.Pending {
		args = append(args, p.Day+":"+redisLane(p.Lane), p.Count)
	}
	reply, err := deadFixScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return unavailable(err)
	}
	res, fixes, err := s.fixReply(prev.Life, reply)
	if err != nil {
		return err
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.fixes = append(s.f.fixes, fixes...)
	switch {
	case res == -1: // not joined the epoch Redis holds yet: later
	case res == 2: // that life beat within the grace
		if s.f.fixTries++; s.f.fixTries >= fixTries {
			s.f.fixPrev = nil
		}
	case prev.Copy: // raised once: in a later epoch its units count 0
		s.f.fixPrev = nil
	default:
		s.f.fixEpoch = epoch
	}
	s.f.fixNext = s.localNow().Add(s.ttl / 3)
	return nil
}

// DeadFix is one lane's day charge of a dead life replaced, as this
// process started on that life's data directory or joined a new epoch
// after, or raised, as it started on a copy of that directory (see the
// README, "Faults"): the dead life's name in Redis (its process name and
// life suffix), the lane and Pacific day (YYYY-MM-DD), the day units the
// survivors had charged it, with any earlier replacement (0: not charged
// yet; after a replacement a charge that comes later adds no day units),
// the units it counts now (its share units its data directory recorded
// and Redis did not have; raised: at least those charged), the units
// recorded (more than counted when its reconnect added them before it was
// killed, or Redis lost its state and this process's re-seed added them),
// and the lane's day count after it.
type DeadFix struct {
	Life     string
	Lane     LaneID
	Day      string
	Charged  int
	Counted  int
	Recorded int
	Count    int
}

// DeadFixes returns the replacements of a dead life's day charge this
// process made since the last call (none: nil), oldest first, one per
// lane and day. Safe for concurrent use.
func (s *Redis) DeadFixes() []DeadFix {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	out := s.f.fixes
	s.f.fixes = nil
	return out
}

// fixReply decodes deadFixScript's reply for life: its code and, when
// replaced, the lanes replaced. A reply of another shape is an error
// wrapping ErrUnavailable.
func (s *Redis) fixReply(life string, reply []any) (int64, []DeadFix, error) {
	bad := fmt.Errorf("%w: dead charge replaced: unexpected reply %v", ErrUnavailable, reply)
	if len(reply) == 0 || (len(reply)-1)%5 != 0 {
		return 0, nil, bad
	}
	code, ok := reply[0].(int64)
	if !ok {
		return 0, nil, bad
	}
	var fixes []DeadFix
	for i := 1; i < len(reply); i += 5 {
		f, ok := reply[i].(string)
		day, l, good := parseDayLane(f)
		if !ok || !good {
			return 0, nil, bad
		}
		var n [4]int64
		for j := range n {
			if n[j], ok = reply[i+1+j].(int64); !ok {
				return 0, nil, bad
			}
		}
		fixes = append(fixes, DeadFix{Life: life, Lane: l, Day: day, Charged: int(n[0]), Counted: int(n[1]),
			Recorded: int(n[2]), Count: int(n[3])})
	}
	return code, fixes, nil
}

// parseDayLane splits a charged or pending field, day:redisLane(lane).
func parseDayLane(f string) (string, LaneID, bool) {
	day, rest, ok := strings.Cut(f, ":")
	if !ok || len(day) != len(DayFormat) {
		return "", LaneID{}, false
	}
	ns, rest, ok := strings.Cut(rest, ":")
	n, err := strconv.Atoi(ns)
	if !ok || err != nil || n < 0 || n >= len(rest) || rest[n] != '/' {
		return "", LaneID{}, false
	}
	return day, LaneID{Project: rest[:n], Class: rest[n+1:]}, true
}

// fixTries is how many times fixDead and retryFix try to replace the
// previous life's charge while it beats within the grace, though its
// record is in this very file: a killed life's heartbeat is overdue at
// the second try (a heartbeat interval apart); a life that goes on beating
// runs on a file that reads as this one (a clone of the disk that the
// boot id did not tell apart), and keeps its charge.
const fixTries = 6

// deadFixScript replaces the day units charged to a dead life by its
// pending share units, once per life and epoch; or, for a record read on a
// copy of the life's file, only raises them to those units (never lower,
// no mark: the life may still run on the original). Per day and lane, the
// day count and the life's part move by pending minus charged (raise: by
// that when positive), pending counted only in the epoch the life joined
// (in a later one the re-seed of the caller's Local counts, which hold
// them, added them) and when that life's reconnect did not add them
// already (its added hash holds the record's number or a later one for
// that day count: a crash before the record was emptied); the charged
// hash then holds the units the life counts for now (charged plus the
// move), so a later replacement moves from there.
//
// An exact replacement is made unless that life beat within the grace
// (nothing done), and once per life, epoch and record: the mark holds the
// record's number, and a record of that life numbered above it (a later
// one: the file the earlier replacement read was a copy that read as the
// life's own) replaces again, from the charged hash.
//
// KEYS: 1 the life's fix mark, 2 its charged units (hash: day:lane ->
// units), 3 the epoch, 4 its added hash (reconcileScript), 5 processes
// (zset). ARGV: 1 the
// epoch the caller joined (its Local counts are in it), 2 the life's name
// (its field of the use hashes), 3 day key ttl s, 4 the cluster's key
// prefix, 5 "1": raise only (a copy), else exact, 6 the epoch the life
// joined, 7 the record's number (Gen; 0: none), 8 the life (its member of
// the processes), 9 now ms (0: TIME), 10 ms: a score above now plus it is
// a heartbeat within the grace (TTL - grace), then (day:lane, pending
// units) pairs. Reply: {1, then per day:lane charged or recorded:
// day:lane, the units charged, the units counted now (pending; raise: at
// least the units charged), the units recorded,
// the day count after} when replaced (or raised), {0} when replaced
// before in this epoch by this record or a later one (exact only), {-1}
// when the epoch is not the caller's, {2} when the life beat within the
// grace (exact only; nothing done).
var deadFixScript = redis.NewScript(clockLua + `
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {-1} end
local raise = ARGV[5] == '1'
local gen = tonumber(ARGV[7])
if not raise then
  local m = redis.call('GET', KEYS[1])
  if m then
    local mg = tonumber(string.match(m, '^g:(%d+)$') or '')
    if not mg or gen <= mg then return {0} end
  end
  local sc = redis.call('ZSCORE', KEYS[5], ARGV[8])
  if sc and tonumber(sc) > clock(ARGV[9]) + tonumber(ARGV[10]) then return {2} end
  redis.call('SET', KEYS[1], 'g:' .. string.format('%d', gen), 'EX', ARGV[3])
end
local want, rec, order = {}, {}, {}
local same = ARGV[6] == ARGV[1]
for i = 11, #ARGV, 2 do
  local f, u = ARGV[i], tonumber(ARGV[i + 1])
  if not rec[f] then order[#order + 1] = f end
  rec[f] = (rec[f] or 0) + u
  local added = tonumber(redis.call('HGET', KEYS[4], ARGV[4] .. 'day:' .. f) or '0')
  if not same or (gen > 0 and added >= gen) then u = 0 end
  want[f] = (want[f] or 0) + u
end
local got = {}
local c = redis.call('HGETALL', KEYS[2])
for i = 1, #c, 2 do
  if not rec[c[i]] and not got[c[i]] then order[#order + 1] = c[i] end
  got[c[i]] = tonumber(c[i + 1])
end
local out = {1}
for _, f in ipairs(order) do
  local d = (want[f] or 0) - (got[f] or 0)
  if raise and d < 0 then d = 0 end
  local dk, uk = ARGV[4] .. 'day:' .. f, ARGV[4] .. 'use:' .. f
  local n = tonumber(redis.call('GET', dk) or '0')
  if d ~= 0 then
    n = math.max(0, n + d)
    redis.call('SET', dk, string.format('%d', n), 'EX', ARGV[3])
    local u = math.max(0, tonumber(redis.call('HGET', uk, ARGV[2]) or '0') + d)
    redis.call('HSET', uk, ARGV[2], string.format('%d', u))
    redis.call('EXPIRE', uk, ARGV[3])
    redis.call('HSET', KEYS[2], f, string.format('%d', (got[f] or 0) + d))
    redis.call('EXPIRE', KEYS[2], ARGV[3])
  end
  if (got[f] or 0) ~= 0 or (want[f] or 0) ~= 0 or (rec[f] or 0) ~= 0 then
    for _, v in ipairs({f, got[f] or 0, (got[f] or 0) + d, rec[f] or 0, n}) do out[#out + 1] = v end
  end
end
return out
`)
