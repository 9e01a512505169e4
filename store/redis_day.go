package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// ChargeDay adds n day units (n > 0) to the lane's count of day
// (DayFormat), in the Local store (AddDaily, durable when it returns) and in
// the cluster's day count of that day in Redis (one script: an increment,
// whatever the count, never a read and a write; this process's use of the
// day too), and returns the cluster's count after it. It is for a request
// that may reach the API on day while its record counted it on the day
// before (dispatched before Pacific midnight, its slot after it: see
// bucket.Class.CrossDay): the request is sent, or on its way, so the unit is
// taken even at RPD. The other processes' grants of day count it from then
// on. A Local store that fails returns its error and nothing is charged
// (the caller may call again). When Redis is unreachable (see Unreachable),
// or does not answer within 5 s (then it is taken as unreachable, as a
// failed grant is), the units are kept with this process's pending share
// grants and added to the cluster's count when Redis answers again
// (reconnect; a Redis that came back empty gets them with the Local counts
// its re-seed adds), and the count returned is the Local one with an error
// wrapping ErrUnavailable. When Redis's state changed epoch since this
// process joined, the Local store has them and this process's re-seed of
// the new epoch adds them (join re-seeds today's and tomorrow's counts): the
// same error. The caller's ctx bounds the Local write only. Safe for
// concurrent use.
func (s *Redis) ChargeDay(ctx context.Context, day string, lane LaneID, n int) (int, error) {
	if err := checkAdd(day, lane, n); err != nil {
		return 0, err
	}
	if _, ok := s.classes[lane.Class]; !ok {
		return 0, fmt.Errorf("%w: lane %s: class %q: not a class of the Redis ledger", ErrInvalid, quote(lane.String()), lane.Class)
	}
	local, err := s.Local.AddDaily(ctx, day, lane, n)
	if err != nil {
		return 0, err
	}
	// The Local store has the units: from here on they reach Redis now,
	// or at the reconnect, whatever becomes of the caller's ctx.
	ctx = context.WithoutCancel(ctx)
	for {
		if s.Unreachable() {
			if s.pendDay(ctx, day, lane, n) {
				return local, fmt.Errorf("%w: lane %s: day %s: charged in the local store; added to the cluster's count when Redis answers again", ErrUnavailable, quote(lane.String()), day)
			}
			continue // reconnected meanwhile: Redis takes them
		}
		s.mu.Lock()
		epoch := s.epoch
		s.mu.Unlock()
		bctx, cancel := context.WithTimeout(ctx, s.f.opTimeout)
		count, err := chargeDayScript.Run(bctx, s.rdb, []string{s.epochKey(), s.dayKey(day, lane), s.useKey(day, lane)},
			epoch, n, s.process, dayKeyTTL).Int()
		cancel()
		if err != nil {
			// Unreachable, or no answer in time: kept pending (when the
			// script ran after all, the units are counted twice: the
			// safe side).
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("no answer within %v", s.f.opTimeout)
			}
			s.markDown(unavailable(err))
			continue
		}
		if count < 0 {
			return local, fmt.Errorf("%w: lane %s: day %s: charged in the local store; added to the cluster's count by this process's re-seed (Redis's shared state changed epoch)", ErrUnavailable, quote(lane.String()), day)
		}
		s.mu.Lock()
		if dl := (dayLane{day, lane}); count > s.seen[dl] {
			s.seen[dl] = count
		}
		s.mu.Unlock()
		return count, nil
	}
}

// pendDay keeps n units of day that the Local store has and Redis did not
// take (ChargeDay) with this process's pending share grants, while Redis is
// unreachable: reconnect adds them to the cluster's count (reconcileLane),
// or, when Redis came back empty, its re-seed counts them from the Local
// store (join) and drops them. They count in this process's use of the day
// during the outage (its share), and in the life record (recordLife). It
// reports false, keeping nothing, when Redis is reachable again: the caller
// asks Redis. Like a grant from the share, it waits for a reconnect under
// way (shareMu).
func (s *Redis) pendDay(ctx context.Context, day string, lane LaneID, n int) bool {
	s.f.shareMu.RLock()
	defer s.f.shareMu.RUnlock()
	s.f.mu.Lock()
	if !s.f.down {
		s.f.mu.Unlock()
		return false
	}
	if s.f.pending == nil {
		s.f.pending = make(map[LaneID][]postSlot)
	}
	if s.f.pendDays == nil {
		s.f.pendDays = make(map[dayLane]int)
	}
	dl := dayLane{day, lane}
	s.f.pendDays[dl] += n
	if s.f.units != nil {
		s.f.units[dl] += n
	}
	s.f.mu.Unlock()
	_ = s.recordLife(ctx) // a failure leaves the record smaller: the re-seed still counts them
	return true
}

// chargeDayScript adds units to a lane's day count and to this process's
// use of that day, in the current epoch, whatever the count (ChargeDay).
//
// KEYS: 1 epoch, 2 day count, 3 use. ARGV: 1 epoch, 2 units, 3 process,
// 4 day key ttl s. Reply: the new count, or -1 when the epoch changed
// (nothing done).
var chargeDayScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = redis.call('INCRBY', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[3], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return n
`)

// nextDay is the Pacific day (DayFormat) after the one containing t in loc:
// the day a unit charged before midnight by ChargeDay is for, which a
// re-seed adds too (join). Daylight-saving days end at their own midnight.
func nextDay(t time.Time, loc *time.Location) string {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, loc).Format(DayFormat)
}

// noteSeen records count as lane and day dl's last shared count seen
// (seen), read when Redis's clock said at (ms), unless a count read later
// is there: the last count, not the largest, so that units given back
// (a settlement, a dead charge replaced) are not put back by a re-seed
// (see seedScript). Call with mu held.
func (s *Redis) noteSeen(dl dayLane, count int, at int64) {
	if s.seenAt == nil {
		s.seenAt = make(map[dayLane]int64)
	}
	if last, ok := s.seenAt[dl]; ok && at < last {
		return
	}
	s.seen[dl], s.seenAt[dl] = count, at
}

// viewParts returns the processes' parts (the use hashes) of the lanes of
// v whose day is one of days (a re-seed's: seedScript); nil for a nil v.
func viewParts(v *clusterView, days []string) map[dayLane]map[string]int {
	if v == nil {
		return nil
	}
	out := make(map[dayLane]map[string]int)
	for l, lv := range v.lanes {
		if len(lv.parts) > 0 && slices.Contains(days, lv.day) {
			out[dayLane{lv.day, l}] = lv.parts
		}
	}
	return out
}

// appendParts appends parts to a re-seed's arguments (seedScript): their
// count, then (process, units) pairs, in the processes' order.
func appendParts(args []any, parts map[string]int) []any {
	args = append(args, len(parts))
	names := make([]string, 0, len(parts))
	for p := range parts {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		args = append(args, p, parts[p])
	}
	return args
}

// maxPrevLives is the most earlier lives' names a Local store keeps
// (SharedLife.Prev): a process restarted more often than that under new
// names in a day has its oldest lives' parts counted twice by a re-seed
// (over, on the safe side).
const maxPrevLives = 32

// notePrevLife records, as this process starts, the names of the lives
// before it on its Local store (lifeRecorder: Bolt): the last one's and
// those it recorded before it (SharedLife.Prev), newest first, this
// process's own name excluded, at most maxPrevLives. A re-seed counts
// their parts of the views within this process's own counts, which hold
// their units (seedScript); this life's records carry them on.
func (s *Redis) notePrevLife(ctx context.Context) error {
	lr, ok := s.Local.(lifeRecorder)
	if !ok {
		return nil
	}
	prev, err := lr.SharedLife(ctx, s.cluster)
	if err != nil {
		return err
	}
	if prev.Life == "" || prev.Life == s.id {
		return nil
	}
	var names []string
	for _, n := range append([]string{displayName(prev.Life)}, prev.Prev...) {
		if n != "" && n != s.process && !slices.Contains(names, n) && len(names) < maxPrevLives {
			names = append(names, n)
		}
	}
	s.mu.Lock()
	s.prevNames = names
	s.mu.Unlock()
	return nil
}
