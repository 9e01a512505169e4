package store

import (
	"context"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Giving unused window slots back.
//
// A grant puts its Covers slots in the shared window at its expiry plus the
// margin, the latest moment they may be sent. Once the grant is over, that
// is more than the truth: some slots were not used (the lane's work ended,
// or a renewal covered again units reserved and not used yet), and the used
// ones were sent earlier. So the process tells the ledger every lease it
// stamps (Stamped), and settles each grant once it is over: k = min(stamps,
// Covers) of its slots are rescored to the k latest stamps, on Redis's
// clock and never later than they were, and its other Covers - k slots are
// removed. A grant is over at the lane's next grant (the grant script
// settles the previous one first, atomically), at a heartbeat once it has
// been expired for HeartbeatTTL/3 with no grant after it (the lane is idle),
// and at Settle (a clean stop).
//
// Why the bound still holds. The caller stamps the leases of a lane in the
// order it takes them, one at a time, and records a lease's grant before
// stamping it (the scheduler's dispatcher: one goroutine per class acquires,
// records and stamps each lease before the next). So the stamps between a
// grant and the lane's next grant are exactly those of the leases the grant
// covers; a lease abandoned before its stamp (its grant refused or not
// recorded) is never stamped. Each request really sent has its own stamp,
// no earlier than the request reaches the API (a stamp is the dispatch time
// plus the class's margin), and a grant covers at least the requests sent
// under it. Sort the grant's sends and its stamps from the latest: the j-th
// latest stamp is no earlier than the j-th latest send, since the j latest
// sends have j distinct stamps, each no earlier than its send. With k =
// min(stamps, Covers) >= sends, the k slots kept, scored at the k latest
// stamps, give every send its own slot scored no earlier than the send; a
// stamped lease refunded later (its request never left) only makes stamps
// exceed sends, which keeps more slots than needed. A stamp is converted to
// Redis's clock with the offset measured at the grant, Redis's now minus
// the local clock before the call (plus a millisecond of rounding): never
// below the true offset, so the slot is never earlier than the send on
// Redis's clock either. The grant script counts the slots scored after now
// minus 60 s: every send of that window still has its slot there.
//
// A lane's grant taken on the safe share while Redis is unreachable is not
// tracked (its slots are added to Redis at the latest moment they could be
// sent when the process reconciles, and stay so), and the lane's Redis grant
// before it is not settled: its slots stay as granted, on the safe side.
// When a settlement's call fails, it is dropped the same way.

// laneGrant is a lane's last grant from Redis and the stamps since.
type laneGrant struct {
	member string // member prefix: its slots are member+"1" .. member+Covers
	covers int
	score  int64 // Redis ms: where its slots are
	offset int64 // Redis ms minus local ms, never below the true offset
	end    int64 // local ms: the grant's expiry plus the margin
	stamps []int64
}

// stampsKept is how many stamps a grant keeps before trimming to its
// Covers latest ones (amortized: a trim sorts).
func (g *laneGrant) stampsKept() int { return 2*g.covers + 8 }

// settlement returns the slots' scores to keep (Redis ms, latest first; at
// most Covers) for g's stamps.
func (g *laneGrant) settlement() []int64 {
	st := slices.Clone(g.stamps)
	slices.SortFunc(st, func(a, b int64) int {
		switch {
		case a > b:
			return -1
		case a < b:
			return 1
		}
		return 0
	})
	st = st[:min(len(st), g.covers)]
	for i, t := range st {
		st[i] = min(t+g.offset, g.score)
	}
	return st
}

// settleArgs appends g's settlement to args for settleLua: member prefix
// ("" for none), covers, k, then k scores.
func settleArgs(args []any, g *laneGrant, keep []int64) []any {
	if g == nil {
		return append(args, "", 0, 0)
	}
	args = append(args, g.member, g.covers, len(keep))
	for _, sc := range keep {
		args = append(args, sc)
	}
	return args
}

// ceilMilli is t in Unix milliseconds, rounded up.
func ceilMilli(t time.Time) int64 {
	n := t.UnixNano()
	ms := n / 1e6
	if n%1e6 > 0 {
		ms++
	}
	return ms
}

// Stamped tells the ledger that a lease of lane was stamped: its request
// counts in the window from at (the dispatch time plus the class's margin,
// scheduler's bucket.Class.Stamp) and reaches the API before it. Call it
// for every lease stamped, in the order the lane's leases are taken, after
// the Reserve of the lease's record (if it has one) returned; a lease
// refunded afterwards stays stamped. The lane's last grant uses the stamps
// to give its unused window slots back when it is over (see the package's
// file redis_giveback.go for why the bound holds). It costs a lock and no
// Redis call; it is safe for concurrent use, but every lane must be used by
// one caller at a time (a lane's stamps are attributed to its last grant).
func (s *Redis) Stamped(lane LaneID, at time.Time) {
	ms := ceilMilli(at)
	s.stampMu.Lock()
	if g := s.cur[lane]; g != nil {
		g.stamps = append(g.stamps, ms)
		if len(g.stamps) > g.stampsKept() {
			slices.Sort(g.stamps)
			g.stamps = slices.Delete(g.stamps, 0, len(g.stamps)-g.covers)
		}
	}
	s.stampMu.Unlock()
}

// takeGrant removes lane's last grant from those being stamped and returns
// it (nil when none).
func (s *Redis) takeGrant(lane LaneID) *laneGrant {
	s.stampMu.Lock()
	defer s.stampMu.Unlock()
	g := s.cur[lane]
	delete(s.cur, lane)
	return g
}

// setGrant makes g lane's last grant, whose leases are stamped from now on.
func (s *Redis) setGrant(lane LaneID, g *laneGrant) {
	s.stampMu.Lock()
	s.cur[lane] = g
	s.stampMu.Unlock()
}

// settled records that g's settlement keep was applied in Redis, so that a
// re-seed of an empty Redis adds g's kept slots only (at the latest of
// their scores, on the safe side; at the grant's score on a TPM lane, where
// the grant's token budget is re-seeded at that score).
func (s *Redis) settled(lane LaneID, g *laneGrant, keep []int64) {
	if g == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs := s.grants[lane]
	for i := range gs {
		if gs[i].member != g.member {
			continue
		}
		switch {
		case gs[i].tokens >= 0:
			// Its token budget is re-seeded at its score too (the
			// grant's): keep both, with the slots kept.
			gs[i].covers = len(keep)
		case len(keep) == 0:
			gs = slices.Delete(gs, i, i+1)
		default:
			gs[i].covers, gs[i].score = len(keep), keep[0]
		}
		break
	}
	if len(gs) == 0 {
		delete(s.grants, lane)
	} else {
		s.grants[lane] = gs
	}
}

// settleGrants settles the grants of the lanes whose last grant is over
// (all of them when all is true, else those expired for HeartbeatTTL/3 at
// now) in one call; nothing is called when none is. A settlement whose call
// fails, or that finds another epoch, is dropped (the slots stay).
func (s *Redis) settleGrants(ctx context.Context, now time.Time, all bool) error {
	idle := now.UnixMilli() - (s.ttl / 3).Milliseconds()
	type due struct {
		lane LaneID
		g    *laneGrant
	}
	var ds []due
	s.stampMu.Lock()
	for l, g := range s.cur {
		if all || g.end <= idle {
			ds = append(ds, due{l, g})
			delete(s.cur, l)
		}
	}
	s.stampMu.Unlock()
	if len(ds) == 0 {
		return nil
	}
	slices.SortFunc(ds, func(a, b due) int { return compareLane(a.lane, b.lane) })
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	keys := []string{s.epochKey()}
	args := []any{epoch}
	keeps := make([][]int64, len(ds))
	for i, d := range ds {
		keeps[i] = d.g.settlement()
		keys = append(keys, s.winKey(d.lane))
		args = settleArgs(args, d.g, keeps[i])
	}
	n, err := settleScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return unavailable(err)
	}
	if n == 1 {
		for i, d := range ds {
			s.settled(d.lane, d.g, keeps[i])
		}
	}
	return nil
}

// settleLua is the Lua function that applies a grant's settlement to its
// lane's window: the first k of its slots rescored (never later than they
// are: ZADD XX LT; a slot already gone stays gone), the others removed. It
// reads ARGV from a (member prefix, "" for none; covers; k; k scores) and
// returns the index after them.
const settleLua = `
local function settle(key, a)
  local prefix, covers, k = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  if prefix == '' then return a end
  if k > 0 then
    local args = {}
    for i = 1, k do
      args[#args + 1] = ARGV[a + i - 1]
      args[#args + 1] = prefix .. i
    end
    redis.call('ZADD', key, 'XX', 'LT', unpack(args))
  end
  if covers > k then
    local rm = {}
    for i = k + 1, covers do rm[#rm + 1] = prefix .. i end
    redis.call('ZREM', key, unpack(rm))
  end
  return a + k
end
`

// settleScript settles grants that are over (see settleLua) in the current
// epoch.
//
// KEYS: 1 epoch, then the grants' window keys. ARGV: 1 epoch, then per
// window key a settlement (settleLua). Reply: 1, or 0 when the epoch
// changed (nothing done).
var settleScript = redis.NewScript(settleLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local a = 2
for i = 2, #KEYS do a = settle(KEYS[i], a) end
return 1
`)
