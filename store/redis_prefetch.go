package store

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Taking a lane's next grant ahead.
//
// A grant is one script round trip (tens to hundreds of µs on loopback),
// and the caller of Reserve (the scheduler's dispatcher of the class)
// waits for it. So, for a fast lane, the ledger takes the lane's next
// grant in the background as soon as a record of the lane has been
// granted, and serves
// the lane's next record from it without calling Redis (fromAhead). The
// contract of Reserve is unchanged: it returns once the record's window
// slots and day units are granted in Redis and the record is in the Local
// store.
//
// Which lanes. A record whose life (Until - At) is at most the fast lanes'
// life, bucket.ChunkLife (2 s; aheadLife), of a class without TPM, on a
// lane whose previous record was granted at most one life before it (the
// lane records again before its record runs out: a fast lane; a slow lane,
// such as an image lane sending every 3 s, would only see its grant taken
// ahead go stale and given back, a round trip more). Classes with TPM take
// no grant ahead: their token budgets and overruns are attributed to the
// process's latest grant in the token window (redis_tokens.go), which a
// grant taken ahead would change before its record is handed out.
//
// The grant taken ahead, G', after a record r granted at t (a grant at once
// or one served from a grant taken ahead): at most one per lane at a time;
// Covers the largest Covers of the lane's last four records (at least r's)
// or, when r is larger than the record before it (a lane ramping up:
// bucket's chunks double within a second), twice r's, at most 1 % of RPD
// (bucket's largest fast chunk) unless a record was larger; and as many day
// units less the lane's banked ones (below); Until = its At + 2 × r's
// life, so that when a record is served from it up to one life later, its
// slots still outlive the record's Until. Its slots are stored in the
// shared window at its own expiry plus the margin, later than any send
// under it: the window bound is that of any grant. It is taken only while
// the lane's last grant's reply showed its window at most half full with
// it, and room in the day: near RPM, slots held ahead and never served
// (the lane's work ended) would keep the other processes' grants out
// until given back, and a grant ahead refused would be a round trip more;
// so a lane whose window is that full records with grants at once. When a
// record is served from a grant taken ahead and no next one is taken, the
// grant that was in use is settled alone (settleScript, in the background:
// the round trip the next grant's script would have made).
//
// Serving a record r from G' (fromAhead, inside Reserve): only when G' was
// granted, in the epoch the process is in, for r's Pacific day; Redis
// reachable and no outage's share in force (see sharing); G'.Until >=
// r.Until; G'.Units plus the banked units >= r.Units; and G'.Covers >=
// r.Covers, or for ReserveUpTo r gets min(G'.Covers, r.Covers) (fewer than
// asked: the caller records again at its next lease, as with Covers 1).
// Otherwise G' is given back and r is granted at once. When the lane's
// grant is still being taken, Reserve waits for it (bounded by ctx): it is
// never slower than a new grant. The day count returned is the one G's
// script saw when it was granted: it does not hold grants of other
// processes made since (at most one grant stale; daily protection uses it,
// and the heartbeat's view refreshes it).
//
// Banked units. r.Units may be fewer than G'.Units (the lane's demand
// fell): the difference stays the lane's banked units for that day and
// epoch, and the next grant taken ahead asks for that many fewer. So the
// units a lane holds ahead, banked plus taken ahead, are at most one grant
// of the size above. The banked units are given back (day count and the
// process's use decreased) when the lane goes idle, when Redis becomes
// unreachable, at Settle, and when a record of another day or epoch is
// served.
//
// Why the give-back of unused slots stays exact (redis_giveback.go). A
// lane's stamps are attributed to its current grant (cur). G' becomes the
// current grant when a record is served from it, inside Reserve, before
// the record's first lease is stamped (the caller stamps a lease after its
// record's Reserve returns, and every lease before the lane's next
// acquisition): so the stamps attributed to the grant G in use until then
// are exactly those of the leases G covers, as when each record is a grant.
// G is not settled while it is in use: a grant taken ahead does not settle
// the grant in use. G is settled by the script of the grant taken ahead
// when G' is served (that script settles first, then grants G''), so its
// stamps are complete. A grant taken ahead that is never served has no
// stamps: it is given back whole (slots removed, units subtracted).
// A stamp of a lease served from G' is converted with the offset measured
// when G' was granted, up to two lives earlier (clock drift over a few
// seconds is negligible against the millisecond of rounding).
//
// Giving back. A grant taken ahead that is not served (stale: its Until too
// early for the lane's next record; another Pacific day; another epoch;
// Redis unreachable or an outage's share in force; the record larger than
// it) is queued and given back in one script (dropScript): by the next
// grant taken ahead, before its own grant (or, when none is taken, by a
// goroutine started at once), by a Heartbeat (which also gives back those
// of lanes idle for two lives, with their banked units), and by Settle. While Redis is unreachable the queue waits for the next
// Heartbeat that reaches it in the same epoch; in another epoch (Redis lost
// its state) it is dropped: the re-seed counts the process's Local records,
// which do not hold units never served. Its window slots free themselves
// once their minute passes in any case.
//
// Crash bound. A process killed with grants in hand over-counts the day of
// each fast lane by at most two grants: the unused units of the grant in
// use and the units held ahead (banked plus taken ahead, or waiting to be
// given back: a grant ahead is taken only once what waits is given back;
// one grant, of the size above). With bucket's records (at most
// bucket.MaxChunk units: 1 % of RPD, or up to 10 units and 4 % of it under
// 1,000 RPD), that is at most twice that (TestRedisPrefetchCrash,
// TestRedisPrefetchModel).

// aheadState is the Redis ledger's part for grants taken ahead.
type aheadState struct {
	mu    sync.Mutex
	lanes map[LaneID]*aheadLane
	back  []aheadBack // given back by the next dropScript

	off      bool // no grant taken ahead (SetRedisPrefetch in tests)
	flushing bool // a goroutine gives back (flushBack) without a grant
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the goroutines taking grants ahead
	served   atomic.Int64   // records served from grants taken ahead
}

// aheadLane is a lane's grant taken ahead and its bank.
type aheadLane struct {
	running bool
	done    chan struct{} // closed when the running grant ends
	pre     *aheadGrant   // granted, not served yet
	bank    int           // day units granted and served to no record
	bankDay string
	bankEp  string
	count   int           // the day count the lane's last grant returned
	live    int           // the slots live in its window after it
	lastAt  time.Time     // At of the lane's last record granted
	life    time.Duration // its life
	hist    [4]int        // Covers of the lane's last four records
	histN   int
}

// aheadGrant is a grant taken ahead.
type aheadGrant struct {
	epoch  string
	day    string
	until  time.Time // local clock: its At + 2 lives
	units  int
	covers int
	count  int // the day count its script returned
	g      *laneGrant
}

// aheadBack is a grant taken ahead, or banked units, to give back.
type aheadBack struct {
	lane  LaneID
	epoch string
	day   string
	units int
	g     *laneGrant // nil: banked units only
}

func (p *aheadState) init() {
	p.lanes = make(map[LaneID]*aheadLane)
	p.ctx, p.cancel = context.WithCancel(context.Background())
}

// aheadOK reports whether records of class c with life ttl may be served
// from grants taken ahead.
func (s *Redis) aheadOK(c RedisClass, ttl time.Duration) bool {
	return !s.pf.off && c.TPM == 0 && ttl > 0 && ttl <= aheadLife
}

// aheadLife is the longest record life served from grants taken ahead:
// bucket.ChunkLife, the fast lanes' (a slow lane's records live longer, up
// to bucket.MaxChunkLife, and take no grant ahead).
const aheadLife = 2 * time.Second

func (s *Redis) currentEpoch() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// fromAhead serves r from the lane's grant taken ahead, waiting for one
// being taken (ctx bounds the wait): ok reports that r was served (its
// record written to the Local store, err its error) and count and covers
// are Reserve's; !ok with a nil error: r must be granted at once (a grant
// taken ahead that does not fit r is queued to be given back).
func (s *Redis) fromAhead(ctx context.Context, r Record, c RedisClass, ttl time.Duration, upTo bool) (count, covers int, ok bool, err error) {
	if !s.aheadOK(c, ttl) {
		return 0, 0, false, nil
	}
	epoch := s.currentEpoch()
	s.pf.mu.Lock()
	a := s.pf.lanes[r.Lane]
	if a == nil {
		s.pf.mu.Unlock()
		return 0, 0, false, nil
	}
	for a.running {
		done := a.done
		s.pf.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return 0, 0, false, ctx.Err()
		}
		s.pf.mu.Lock()
	}
	pre := a.pre
	a.pre = nil
	if pre == nil {
		s.pf.mu.Unlock()
		return 0, 0, false, nil
	}
	bank := 0
	if a.bankDay == r.Day && a.bankEp == epoch {
		bank = a.bank
	}
	fits := pre.epoch == epoch && pre.day == r.Day && !pre.until.Before(r.Until) &&
		pre.units+bank >= r.Units && (pre.covers >= r.Covers || upTo)
	if fits {
		// An outage or its recovery: grants stay within the share.
		s.pf.mu.Unlock()
		fits = s.sharing(s.localNow()) == nil
		s.pf.mu.Lock()
	}
	if !fits {
		s.pf.back = append(s.pf.back, aheadBack{lane: r.Lane, epoch: pre.epoch, day: pre.day, units: pre.units, g: pre.g})
		s.pf.mu.Unlock()
		return 0, 0, false, nil
	}
	if a.bank > 0 && bank == 0 { // banked on another day or epoch
		s.pf.back = append(s.pf.back, aheadBack{lane: r.Lane, epoch: a.bankEp, day: a.bankDay, units: a.bank})
	}
	a.bank, a.bankDay, a.bankEp = pre.units+bank-r.Units, r.Day, epoch
	s.pf.mu.Unlock()
	asked := r
	r.Covers = min(r.Covers, pre.covers)
	// The grant in use until now has all its stamps (this record's first
	// lease is stamped after Reserve returns): the next grant taken ahead
	// settles it; pre's grant is the lane's current one from now on.
	prev := s.takeGrant(r.Lane)
	s.setGrant(r.Lane, pre.g)
	_, err = s.Local.Reserve(ctx, r)
	s.ahead(asked, c, ttl, prev)
	if err != nil {
		return 0, 0, true, err
	}
	s.pf.served.Add(1)
	return pre.count, r.Covers, true, nil
}

// ahead notes r (as asked: its Covers are the lane's demand), granted (at
// once or from a grant taken ahead), and takes the lane's next grant in the
// background when the lane is fast (see the file's doc); prev, when not
// nil, is the lane's grant whose stamps are complete, settled by that
// grant's script.
func (s *Redis) ahead(r Record, c RedisClass, ttl time.Duration, prev *laneGrant) {
	if !s.aheadOK(c, ttl) {
		return
	}
	now := s.localNow()
	epoch := s.currentEpoch()
	s.pf.mu.Lock()
	defer s.pf.mu.Unlock()
	a := s.pf.lanes[r.Lane]
	if a == nil {
		a = &aheadLane{}
		s.pf.lanes[r.Lane] = a
	}
	fast := !a.lastAt.IsZero() && r.At.Sub(a.lastAt) <= ttl
	a.lastAt, a.life = r.At, ttl
	a.hist[a.histN%len(a.hist)] = max(r.Covers, r.Units)
	a.histN++
	if s.pf.ctx.Err() != nil {
		return // closed: prev stays unsettled, its slots as granted
	}
	want := slices.Max(a.hist[:])
	if n := a.histN; n >= 2 {
		// A lane ramping up (bucket's chunks double with the lane's
		// rate within a second): twice its last record, at most 1 % of
		// RPD (bucket's largest chunk) unless a record was larger.
		if last := a.hist[(n-1)%len(a.hist)]; last > a.hist[(n-2)%len(a.hist)] {
			want = max(want, min(2*last, max(1, c.RPD/100)))
		}
	}
	bank := 0
	if a.bankDay == r.Day && a.bankEp == epoch {
		bank = a.bank
	}
	// Only while the lane's window, at its last grant, was at most half
	// full with this one more grant, and its day had room: slots held
	// ahead on a window near RPM could keep another process's grant out
	// (and a grant ahead refused would be a round trip more).
	room := 2*(a.live+want) <= c.RPM && a.count+want-bank <= c.RPD
	if a.running || a.pre != nil || !(fast || prev != nil) || !room || s.Unreachable() || s.sharing(now) != nil {
		// No grant taken ahead: prev, when not nil, is settled alone,
		// and what waits to be given back goes now (in the background).
		flush := len(s.pf.back) > 0 && !s.pf.flushing
		if flush {
			s.pf.flushing = true
		}
		if flush || prev != nil {
			s.pf.wg.Add(1)
			go s.giveBackAhead(r.Lane, prev, flush)
		}
		return
	}
	rec := Record{Lane: r.Lane, Day: r.Day, Units: max(0, want-bank), Covers: want, At: now, Until: now.Add(2 * ttl)}
	a.running, a.done = true, make(chan struct{})
	s.pf.wg.Add(1)
	go s.takeAhead(a, rec, c, epoch, prev)
}

// giveBackAhead gives back what waits to be (flush: flushBack) and
// settles prev, lane's grant whose stamps are complete, alone (when not
// nil), in the background (see ahead).
func (s *Redis) giveBackAhead(lane LaneID, prev *laneGrant, flush bool) {
	defer s.pf.wg.Done()
	ctx, cancel := context.WithTimeout(s.pf.ctx, s.f.opTimeout)
	defer cancel()
	if flush {
		_ = s.flushBack(ctx)
		s.pf.mu.Lock()
		s.pf.flushing = false
		s.pf.mu.Unlock()
	}
	if prev == nil {
		return
	}
	keep := prev.settlement()
	args := settleArgs([]any{s.currentEpoch()}, prev, keep)
	n, err := settleScript.Run(ctx, s.rdb, []string{s.epochKey(), s.winKey(lane), s.winCountKey(lane), s.tokKey(lane)}, args...).Int()
	if err == nil && n == 1 {
		s.settled(lane, prev, keep)
	}
	// A failed settlement is dropped: prev's slots stay as granted.
}

// takeAhead gives back what waits to be (flushBack), then takes the grant
// rec ahead for a (see ahead).
func (s *Redis) takeAhead(a *aheadLane, rec Record, c RedisClass, epoch string, prev *laneGrant) {
	defer s.pf.wg.Done()
	ctx, cancel := context.WithTimeout(s.pf.ctx, s.f.opTimeout)
	defer cancel()
	ferr := s.flushBack(ctx)
	// What waits to be given back goes first: when it cannot, no grant is
	// taken ahead (so a crash leaves at most one grant ahead per lane; prev
	// stays unsettled, its slots as granted).
	var (
		count, covers, live int
		g                   *laneGrant
		err                 = ferr
	)
	if err == nil {
		var f Fit
		f, live, g, err = s.grantFrom(ctx, rec, c, rec.Until.Sub(rec.At), fitAsk{first: -1}, prev) // not upTo: no schedule
		count, covers = f.Count, f.Covers
	}
	s.pf.mu.Lock()
	if err == nil && g != nil {
		a.pre = &aheadGrant{epoch: epoch, day: rec.Day, until: rec.Until, units: rec.Units, covers: covers, count: count, g: g}
		a.count, a.live = count, live
	}
	a.running = false
	close(a.done)
	s.pf.mu.Unlock()
}

// dropAhead queues the lane's grant taken ahead and banked units to be
// given back (a grant being taken is given back when it is found unfit).
func (s *Redis) dropAhead(lane LaneID) {
	s.pf.mu.Lock()
	defer s.pf.mu.Unlock()
	if a := s.pf.lanes[lane]; a != nil {
		s.dropLocked(lane, a)
	}
}

// dropLocked queues a's grant taken ahead and bank. Call with pf.mu held.
func (s *Redis) dropLocked(lane LaneID, a *aheadLane) {
	if p := a.pre; p != nil {
		s.pf.back = append(s.pf.back, aheadBack{lane: lane, epoch: p.epoch, day: p.day, units: p.units, g: p.g})
		a.pre = nil
	}
	if a.bank > 0 {
		s.pf.back = append(s.pf.back, aheadBack{lane: lane, epoch: a.bankEp, day: a.bankDay, units: a.bank})
	}
	a.bank = 0
}

// dropIdle queues the grants taken ahead and the banks of the lanes idle
// at now (no record for two lives), and those of another day or epoch.
func (s *Redis) dropIdle(now time.Time) {
	epoch := s.currentEpoch()
	day := now.In(s.loc).Format(DayFormat)
	s.pf.mu.Lock()
	defer s.pf.mu.Unlock()
	for l, a := range s.pf.lanes {
		if a.running {
			continue
		}
		if now.Sub(a.lastAt) > 2*a.life {
			s.dropLocked(l, a)
			delete(s.pf.lanes, l)
			continue
		}
		if p := a.pre; p != nil && (p.epoch != epoch || p.day < day) {
			s.pf.back = append(s.pf.back, aheadBack{lane: l, epoch: p.epoch, day: p.day, units: p.units, g: p.g})
			a.pre = nil
		}
	}
}

// settleAhead, at Settle, waits for the grants being taken ahead (bounded
// by ctx) and gives back every grant taken ahead and bank.
func (s *Redis) settleAhead(ctx context.Context) error {
	s.pf.mu.Lock()
	for {
		var done chan struct{}
		for _, a := range s.pf.lanes {
			if a.running {
				done = a.done
				break
			}
		}
		if done == nil {
			break
		}
		s.pf.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.pf.mu.Lock()
	}
	for l, a := range s.pf.lanes {
		s.dropLocked(l, a)
	}
	clear(s.pf.lanes)
	s.pf.mu.Unlock()
	return s.flushBack(ctx)
}

// flushBack gives back the queued grants taken ahead and banked units in
// one script: those of the current epoch (others are dropped: see the
// file's doc). Nothing is called when none is queued or Redis is
// unreachable; a failed call queues them again.
func (s *Redis) flushBack(ctx context.Context) error {
	if s.Unreachable() {
		return nil
	}
	epoch := s.currentEpoch()
	s.pf.mu.Lock()
	bs := s.pf.back
	s.pf.back = nil
	s.pf.mu.Unlock()
	bs = slices.DeleteFunc(bs, func(b aheadBack) bool { return b.epoch != epoch })
	if len(bs) == 0 {
		return nil
	}
	keys := []string{s.epochKey()}
	args := []any{epoch, s.process}
	for _, b := range bs {
		keys = append(keys, s.winKey(b.lane), s.winCountKey(b.lane), s.dayKey(b.day, b.lane), s.useKey(b.day, b.lane))
		args = append(args, b.units)
		args = settleArgs(args, b.g, nil)
	}
	n, err := dropScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		s.pf.mu.Lock()
		s.pf.back = append(s.pf.back, bs...)
		s.pf.mu.Unlock()
		return unavailable(err)
	}
	if n == 1 {
		for _, b := range bs {
			s.settled(b.lane, b.g, nil)
		}
	}
	return nil
}

// stopAhead stops the goroutines taking grants ahead and waits for them.
func (s *Redis) stopAhead() {
	// Under pf.mu: ahead checks the context and adds to wg under it too.
	s.pf.mu.Lock()
	s.pf.cancel()
	s.pf.mu.Unlock()
	s.pf.wg.Wait()
}

// Close stops the grants being taken ahead (those in hand are not given
// back: see Settle; a process closed without Settle over-counts as one
// killed, see redis_prefetch.go) and closes the Local store.
func (s *Redis) Close() error {
	s.stopAhead()
	return s.Local.Close()
}

// dropScript gives back grants taken ahead that no record was served from,
// and banked units, in the current epoch: per entry, the day units
// subtracted from the day count and the process's use (never below zero),
// and the grant removed from the window (a settlement keeping none,
// settleLua, through the window's count: windowLua).
//
// KEYS: 1 epoch, then per entry: window, the window's count, day count,
// use. ARGV: 1 epoch, 2 process, then per entry: units, then the
// settlement (settleLua; member prefix "" for banked units only). Reply: 1,
// or 0 when the epoch changed (nothing done).
var dropScript = redis.NewScript(windowLua + settleLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local a = 3
for i = 2, #KEYS, 4 do
  local n = tonumber(ARGV[a])
  local w = win_open(KEYS[i], KEYS[i + 1])
  a = settle(w, a + 1)
  win_close(w)
  local cur = tonumber(redis.call('GET', KEYS[i + 2]) or '0')
  n = math.min(n, cur)
  if n > 0 then
    local u = tonumber(redis.call('HGET', KEYS[i + 3], ARGV[2]) or '0')
    if u > 0 then redis.call('HINCRBY', KEYS[i + 3], ARGV[2], -math.min(n, u)) end
    redis.call('DECRBY', KEYS[i + 2], n)
  end
end
return 1
`)

// noteRoom records the day count and the window's live slots that a
// lane's grant at once returned (see ahead).
func (s *Redis) noteRoom(lane LaneID, count, live int) {
	s.pf.mu.Lock()
	defer s.pf.mu.Unlock()
	if a := s.pf.lanes[lane]; a != nil {
		a.count, a.live = count, live
	} else {
		s.pf.lanes[lane] = &aheadLane{count: count, live: live}
	}
}
