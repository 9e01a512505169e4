package store

import (
	"context"
	"fmt"
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
// on. When Redis is unreachable (see Unreachable), or its state changed
// epoch since this process joined, only the Local store has the unit: the
// count returned is the Local one and the error wraps ErrUnavailable (a
// re-seed of an empty Redis on day, or on the day before it, adds the Local
// count of day: join re-seeds today's and tomorrow's counts). Safe for
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
	if s.Unreachable() {
		return local, fmt.Errorf("%w: lane %s: day %s: charged in the local store only (Redis unreachable)", ErrUnavailable, quote(lane.String()), day)
	}
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	count, err := chargeDayScript.Run(ctx, s.rdb, []string{s.epochKey(), s.dayKey(day, lane), s.useKey(day, lane)},
		epoch, n, s.process, dayKeyTTL).Int()
	if err != nil {
		return local, unavailable(err)
	}
	if count < 0 {
		return local, fmt.Errorf("%w: lane %s: day %s: charged in the local store only (Redis's shared state changed epoch)", ErrUnavailable, quote(lane.String()), day)
	}
	s.mu.Lock()
	if dl := (dayLane{day, lane}); count > s.seen[dl] {
		s.seen[dl] = count
	}
	s.mu.Unlock()
	return count, nil
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
