package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis unreachable: the safe share.
//
// While Redis answers, every Heartbeat also reads a view of the cluster:
// the live processes and, per lane, the shared day count and when each slot
// of the shared window leaves it. When a call to Redis fails, the outage
// begins for this process at F, the end of that call: from F, Unreachable
// and Health say so and Outages counts it, and every computation below
// counts from F.
//
// The grace. One failed call is not yet Redis down for every process (a
// timeout on a loaded machine, a dropped connection, a failover's blip):
// when Redis still answers the others, they grant the whole window, and a
// share taken on top of it would overfill it. So the share begins only at
// F + G, G the grace: one heartbeat interval (HeartbeatTTL/3) plus
// HeartbeatTTL/15, 6 s by default. Until then Reserve grants nothing
// (a *GrantError of Reason "share" with Confirming set: the process sends
// only what the grants in hand cover) and tries Redis again, at most once
// every HeartbeatTTL/15 (1 s) counted from the last call that tried it,
// each try one Heartbeat bounded by HeartbeatTTL/15 (retry); when Redis
// answers, the process reconnects as below, having used no share. The
// first Reserve at or after F + G makes a last try (retry), so that Redis
// answering in the grace's last second is found too: the share begins
// only once a try at or after F + G failed. Why G:
// it holds the failed call's next try (a second later) with room for a
// slow answer, and the next regular heartbeat, which comes within an
// interval of the last one, so a process whose failed call was a
// heartbeat (or one whose Reserve is not called) has tried again within
// it too; it is short next to what the share is for (Redis or its machine
// down or restarting: many seconds), and it costs no quota: the process
// only sends less meanwhile. A Redis really down sees one try a second
// per process for G at most (a Reserve that asks then), and one after.
//
// From F + G, Reserve grants from the process's own share instead of
// failing:
//
//   - Window: the slots of the view that leave the window after F (all the
//     processes' grants from before the outage) are the only sends that
//     count there; each one that leaves makes room, and the process takes
//     its share of that room, room / N (rounding down), N the live
//     processes of its view. Grants the others took after the view (Redis
//     answered them a little longer) fit in the room the view did not see
//     free and leave by F + grant life + margin + 60 s; from then on the
//     share is RPM / N. So, with every process doing the same, no 60 s
//     window holds more than RPM sends of all of them together.
//   - Day: (RPD - the view's day count - the most the others may have taken
//     after the view) / N, rounding down, for all of the outage.
//
// The grace only refuses: the share's checks (windowCap, dayCap, shareCheck)
// are the same functions of F, the view and the time as without it, and
// the process's own grants since F are checked against them at each grant
// as before. So every run of grants made with the grace is one the share
// allowed without it (one that asked for nothing before F + G), and the
// bound, which holds for every such run, holds. In particular the room
// taken from F + G on is that of the view's slots that left after F, those
// that left during the grace included: a send made at t' on room that
// freed at t <= t' counts in the windows ending in [t', t' + 60 s), none of
// which still holds the slot that left; without the grace the process may
// have waited until t' to take that room just the same. Using room later
// than it freed is only safer.
//
// A process takes no share (it sends only what its grants in hand cover)
// when its view is older than the heartbeat TTL at F, or when it joined
// less than a TTL before its view (the others may not count it yet). It
// joins again when a heartbeat finds it was not counted alive any more (its
// heartbeat expired, or Redis lost it) or Redis came back empty.
//
// On reconnect (the next call that Redis answers) the process first adds
// what it granted itself to the shared day counts and windows (a slot as
// sent at the latest moment it could be), or re-seeds them when Redis came
// back empty, and pushes the keys disabled or enabled and the lanes stopped
// or resumed meanwhile (see redis_pending.go); then, for one heartbeat TTL,
// its grants from Redis still stay within its share, so that the processes
// that have not reconciled yet keep theirs; then grants are Redis's alone
// again. When Redis came back empty, or restarted empty while it answered
// (newEpoch), that recovery lasts until every slot granted before may
// have left the window (recoveryEnd), since Redis lacks the slots of the
// processes no longer alive.
//
// The bound holds when Redis is unreachable for every process alike (Redis
// or its machine down), and when one process's call fails while Redis
// answers the others, as long as Redis answers that process again within
// G (it granted itself nothing; its grants in hand are in Redis's window).
// A partition that cuts off some processes for longer than G while others
// still reach Redis is not covered: those others do not leave room for the
// cut-off ones' share (see the README).

// opTimeout bounds a call that shares a change of a key, a lane stop, a
// cooldown or an exhaustion: a Redis that does not answer within it is
// unreachable (the change is kept pending or not shared), so an
// operator's call or a dispatcher does not wait on go-redis's dial retries.
const opTimeout = 5 * time.Second

// ErrDegraded is wrapped by Health while Redis is unreachable.
var ErrDegraded = errors.New("store: redis: unreachable; sending within this process's safe share")

// maxGrantLife is the longest a grant's slots may be used after it was
// granted (Record.Until - Record.At): bucket.MaxChunkLife, a slow lane's
// record (a fast lane's lives bucket.ChunkLife, 2 s). Every process
// assumes it of the others' grants, whatever lives it saw itself. Reserve
// raises it when a record asks for longer.
const maxGrantLife = 30 * time.Second

// faultState is the Redis ledger's part for Redis unreachable.
type faultState struct {
	mu        sync.Mutex
	joined    time.Time    // when OpenRedis's heartbeat answered (local clock)
	rejoin    bool         // Redis came back empty: joined again at the next heartbeat
	view      *clusterView // the last one read; nil before the first
	down      bool
	reason    string
	outages   int
	restarts  int                   // epochs found gone while Redis answered (newEpoch)
	conflict  string                // a live process's other limits, from the last heartbeat ("" none)
	out       *outage               // the current or last outage; nil before the first
	recovers  time.Time             // grants stay within the share until then
	lostEnd   time.Time             // the end of the last recovery after Redis lost its state (see recoveryEnd)
	life      time.Duration         // the longest grant life seen (at least minLife)
	minLife   time.Duration         // maxGrantLife; shorter in this package's tests
	gran      int64                 // ms: the view's slots are rounded up to it (1000)
	posted    map[LaneID][]postSlot // own grants since out.since
	units     map[dayLane]int       // own day units since out.since
	pending   map[LaneID][]postSlot // own-share grants not yet in Redis
	pendDays  map[dayLane]int       // their day units
	ops       []pendingOp           // changes of keys and stops not yet in Redis (redis_pending.go)
	times     map[LaneID]laneTimes  // cooldowns and exhaustion set meanwhile, not yet in Redis (redis_pending.go)
	lastOp    time.Time             // the time of the last change of a key or stop made here
	opTimeout time.Duration         // opTimeout; shorter in this package's tests
	shareFrom time.Time             // down: the share begins then (the outage's start plus grace)
	tried     time.Time             // down: the last call that tried Redis (the failed one, or retry's)
	deads     []deadCheck           // checks of processes presumed dead, due at the recovery's end (redis_dead.go)
	joining   bool                  // held as it joined: the recovering key is read again at the hold's end (redis_join.go)
	overdue   []redis.Z             // joining: the heartbeats overdue at the join, with their scores (releaseJoin)
	joinEnd   int64                 // joining: the end of the hold they caused (ms, the scripts' clock)
	charged   []DeadCharge          // charges made, not yet taken by DeadCharges
	reseed    reseedMark            // the last re-seed after Redis lost its state (redis_usage.go)

	// grantMu serializes Reserve while the process is down or recovering,
	// so that a share's check and take are one step.
	grantMu sync.Mutex
	// recMu serializes reconnects.
	recMu sync.Mutex
	// shareMu: a grant from the share holds it for reading from its check
	// until the Local store has its record (reserveShare), a reconnect for
	// writing, so that the pending grants it adds to Redis, or the Local
	// counts its re-seed adds instead (join), hold every grant of the
	// share taken until then, and none is taken from the share meanwhile.
	shareMu sync.RWMutex
	// reconnectHook, when set (tests), is called as a reconnect is about
	// to wait for the share's grants under way (shareMu).
	reconnectHook func()
	// shareHook, when set (tests), is called as a grant from the share
	// is about to wait for a reconnect under way (shareMu).
	shareHook func()
	// retryMu: one retry of Redis at a time (see retry).
	retryMu sync.Mutex
	// deadMu serializes chargeDead.
	deadMu sync.Mutex
	// lifeMu serializes recordLife (redis_dead.go), which numbers the
	// records (lifeSeq: the last one tried; lifeGen, under mu: the last
	// one written).
	lifeMu  sync.Mutex
	lifeSeq uint64
	lifeGen uint64
	// fixPrev is the previous life on the Local store whose dead charge
	// fixDead replaces (nil: none, or no more), in each epoch joined
	// (fixEpoch: the last one it was replaced in), not before fixNext;
	// fixTries counts the tries it beat within the grace.
	fixPrev  *SharedLife
	fixEpoch string
	fixNext  time.Time
	fixTries int
	fixes    []DeadFix // replacements made, not yet taken by DeadFixes

	// The disabled keys of the shared state as this process last saw them,
	// and their version (see Watch).
	keysMu   sync.Mutex
	disabled map[string]string // key id -> its record in Redis
	stops    map[LaneID]stopInfo
	version  string
	resync   chan struct{} // wakes Watch to re-read the shared state
}

// postSlot is one own grant since an outage began: covers slots that may be
// sent until score (local Unix ms, the grant's expiry plus the margin).
type postSlot struct {
	score  int64
	covers int
	tokens int64 // the grant's token budget, overruns added (TPM lanes)
}

// clusterView is what a heartbeat last read of the cluster.
type clusterView struct {
	at             time.Time // local clock, when the reply came
	live           int
	offMin, offMax int64 // local ms minus Redis ms, bounds
	rnow           int64 // Redis's now when it was read (ms)
	lanes          map[LaneID]laneView
	// procs names the live processes (this one included): the ones a
	// recovery's end charges when they did not reconcile (redis_dead.go).
	procs []string
	// tokens is, per lane with TPM, when the token window's budgets leave
	// it (n: tokens), as leave; nil when no lane has TPM. See
	// tokenViewFrom.
	tokens map[LaneID][]leaveAt
}

type laneView struct {
	day   string
	count int
	// parts is the lane's use of the day per process (the use hash:
	// process name -> units; nil when none), alive or not: what a re-seed
	// of an empty Redis puts back (see seedScript).
	parts map[string]int
	// leave is when the window's slots leave it, on the local clock rounded
	// up to the second and shifted by offMax (never earlier than they do),
	// ascending.
	leave []leaveAt
}

type leaveAt struct {
	at int64 // local Unix ms
	n  int
}

// outage is one period of Redis unreachable, from this process's view.
type outage struct {
	since  time.Time
	view   *clusterView // nil: no share
	n      int
	spread int64 // offMax - offMin of the view, ms
	// prev is the outage of a recovery after Redis lost its state that was
	// still under way when this one began, and prevEnd that recovery's
	// end: until then, grants also stay within prev's share (the views
	// read since came from a Redis that may lack the slots of processes
	// no longer alive; prev's view holds them). nil: none.
	prev    *outage
	prevEnd time.Time
	// roster is the last view read when the outage began, whatever its
	// age (nil: none): the processes whose share the recovery's end
	// charges when they did not reconcile (redis_dead.go).
	roster *clusterView
}

// newOutage is the outage beginning at now: with the share of the last
// view when it is recent enough (read within a heartbeat TTL, a TTL or
// more after this process joined), chained to the outage of a recovery
// after Redis lost its state that is still under way. Call with f.mu held.
func (s *Redis) newOutage(now time.Time) *outage {
	o := &outage{since: now, roster: s.f.view}
	if v := s.f.view; v != nil && !s.f.rejoin && now.Sub(v.at) <= s.ttl && v.at.Sub(s.f.joined) >= s.ttl {
		o.view, o.n, o.spread = v, max(1, v.live), v.offMax-v.offMin
	}
	if p := s.f.out; p != nil && now.Before(s.f.lostEnd) {
		o.prev, o.prevEnd = p, s.f.lostEnd
		for q := p; q.prev != nil; q = q.prev { // drop the links over
			if !now.Before(q.prevEnd) {
				q.prev = nil
				break
			}
		}
	}
	return o
}

// recoveryEnd is when a recovery after Redis lost its state (restarted
// empty), beginning at now, ends: once every slot any process may have
// been granted before now has left the window, those of processes no
// longer alive included, which no re-seed put back (the longest grant
// life, the largest window margin, the window and a second of rounding
// after now, measured on this process's clock: the slots' scores are the
// grant's time plus that life and margin on Redis's); after extra more
// (a heartbeat TTL after an outage: a process that dies before it
// reconnects sent on its share until then). At least one heartbeat TTL.
func (s *Redis) recoveryEnd(now time.Time, extra time.Duration) time.Time {
	var margin time.Duration
	for _, c := range s.classes {
		margin = max(margin, c.Margin)
	}
	d := extra + s.life() + margin + s.window + time.Duration(s.f.gran)*time.Millisecond
	return now.Add(max(d, s.ttl))
}

func (s *Redis) localNow() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// viewKeys appends the keys of the cluster's view of day to keys: per lane,
// its window and day count; then per lane, its use of the day; then per
// lane with TPM, its token window (see viewLua).
func (s *Redis) viewKeys(keys []string, day string) []string {
	for _, l := range s.lanes {
		keys = append(keys, s.winKey(l), s.dayKey(day, l))
	}
	for _, l := range s.lanes {
		keys = append(keys, s.useKey(day, l))
	}
	for _, l := range s.lanes {
		if s.classes[l.Class].TPM > 0 {
			keys = append(keys, s.tokKey(l))
		}
	}
	return keys
}

// readView reads the cluster's view (see clusterView) in one script. A
// Heartbeat reads it in its own script; this is for OpenRedis and after a
// reconnect or a re-seed.
func (s *Redis) readView(ctx context.Context) error {
	t0 := s.localNow()
	day := t0.In(s.loc).Format(DayFormat)
	keys := s.viewKeys([]string{s.epochKey(), s.procsKey()}, day)
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	res, err := viewScript.Run(ctx, s.rdb, keys, s.clock(), s.window.Milliseconds(), len(s.lanes), s.f.gran, epoch).Slice()
	t1 := s.localNow()
	if err != nil {
		return unavailable(err)
	}
	if len(res) < 1 {
		return fmt.Errorf("%w: view: empty reply", ErrUnavailable)
	}
	if n, _ := res[0].(int64); n < 0 {
		return errEpoch
	}
	v, err := s.viewFrom(res, t0, t1, day)
	if err != nil {
		return err
	}
	s.setView(v)
	return nil
}

// viewFrom makes the cluster's view of day from viewLua's reply res, read
// by a call sent at t0 whose reply came at t1 (local clock), with the live
// processes of the last heartbeat.
func (s *Redis) viewFrom(res []any, t0, t1 time.Time, day string) (*clusterView, error) {
	// Redis's now, then the live processes' count and names (viewLua).
	if len(res) < 2 {
		return nil, fmt.Errorf("%w: view: short reply", ErrUnavailable)
	}
	np, _ := res[1].(int64)
	if np < 0 || int(np) > len(res)-2 {
		return nil, fmt.Errorf("%w: view: short reply", ErrUnavailable)
	}
	procs := make([]string, 0, np)
	for _, x := range res[2 : 2+np] {
		p, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("%w: view: unexpected process %v", ErrUnavailable, x)
		}
		procs = append(procs, p)
	}
	// Then each lane's use of the day per process (its parts).
	i := 2 + int(np)
	parts := make([]map[string]int, len(s.lanes))
	for li := range s.lanes {
		if i >= len(res) {
			return nil, fmt.Errorf("%w: view: short reply", ErrUnavailable)
		}
		nf, _ := res[i].(int64)
		i++
		if nf < 0 || int(nf) > (len(res)-i)/2 {
			return nil, fmt.Errorf("%w: view: short reply", ErrUnavailable)
		}
		if nf > 0 {
			parts[li] = make(map[string]int, nf)
		}
		for j := range int(nf) {
			p, ok := res[i+2*j].(string)
			n, ok2 := res[i+2*j+1].(int64)
			if !ok || !ok2 {
				return nil, fmt.Errorf("%w: view: unexpected use %v %v", ErrUnavailable, res[i+2*j], res[i+2*j+1])
			}
			parts[li][p] = int(n)
		}
		i += 2 * int(nf)
	}
	res = append([]any{res[0]}, res[i:]...)
	ints := make([]int64, len(res))
	for i, x := range res {
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("%w: view: unexpected value %v", ErrUnavailable, x)
		}
		ints[i] = n
	}
	if len(ints) < 1 {
		return nil, fmt.Errorf("%w: view: empty reply", ErrUnavailable)
	}
	v := &clusterView{at: t1, live: s.Live(), offMin: t0.UnixMilli() - ints[0], offMax: t1.UnixMilli() - ints[0],
		rnow: ints[0], lanes: make(map[LaneID]laneView, len(s.lanes)), procs: procs}
	i = 1
	for li, l := range s.lanes {
		if i+1 >= len(ints) {
			return nil, fmt.Errorf("%w: view: short reply", ErrUnavailable)
		}
		lv := laneView{day: day, count: int(ints[i]), parts: parts[li]}
		nb := int(ints[i+1])
		i += 2
		if nb < 0 || i+2*nb > len(ints) {
			return nil, fmt.Errorf("%w: view: short reply", ErrUnavailable)
		}
		for j := range nb {
			sec, n := ints[i+2*j], ints[i+2*j+1]
			lv.leave = append(lv.leave, leaveAt{at: sec*s.f.gran + s.window.Milliseconds() + v.offMax, n: int(n)})
		}
		i += 2 * nb
		slices.SortFunc(lv.leave, func(a, b leaveAt) int { return int(a.at - b.at) })
		v.lanes[l] = lv
	}
	if err := s.tokenViewFrom(ints[i:], v); err != nil {
		return nil, err
	}
	return v, nil
}

// setView makes v the last view read, unless one read later is there (a
// heartbeat and a grant carrying one may read at the same time).
func (s *Redis) setView(v *clusterView) {
	s.f.mu.Lock()
	if s.f.view == nil || !v.at.Before(s.f.view.at) {
		s.f.view = v
	}
	s.f.mu.Unlock()
	// The day counts are the cluster's: a re-seed of an empty Redis raises
	// each lane's count to at least the last one seen, also on a lane this
	// process has not been granted anything on lately.
	s.mu.Lock()
	for l, lv := range v.lanes {
		s.noteSeen(dayLane{lv.day, l}, lv.count, v.rnow)
	}
	s.mu.Unlock()
}

// ViewedDaily returns the shared day counts of the lanes of
// RedisOptions.Projects as the last view of the cluster read them (each
// Heartbeat that Redis answers reads one, in its own round trip; so does
// OpenRedis), of the Pacific day of that read, and when the read's reply
// came (this process's clock; the zero Time and nil before the first view).
// It makes no call to Redis. Daily protection compares them with RPD
// between grants (a grant's reply has its own lane's count).
func (s *Redis) ViewedDaily() ([]DailyCount, time.Time) {
	s.f.mu.Lock()
	v := s.f.view
	s.f.mu.Unlock()
	if v == nil {
		return nil, time.Time{}
	}
	out := make([]DailyCount, 0, len(s.lanes))
	for _, l := range s.lanes {
		lv := v.lanes[l]
		out = append(out, DailyCount{Day: lv.day, Lane: l, Count: lv.count})
	}
	return out, v.at
}

// errEpoch: the cluster's epoch is not the one this process joined (Redis
// restarted empty, or another process re-seeded it since).
var errEpoch = fmt.Errorf("%w: the cluster's epoch changed (Redis lost its state)", ErrUnavailable)

// newEpoch is called when this process finds the epoch it joined gone
// while Redis answers (a grant, a heartbeat or a view read: Redis restarted
// empty): as when Redis comes back after an outage, its grants from Redis
// stay within its share of the outage computed from its last view (the
// others may not have re-seeded their counts yet, and the slots of
// processes no longer alive are lost: the view holds them), until every
// slot granted before now may have left the window (recoveryEnd: about a
// minute and a half, not one HeartbeatTTL); then it joins the new epoch, re-seeding
// its own counts and the last ones it saw.
func (s *Redis) newEpoch(ctx context.Context) error {
	now := s.localNow()
	end := s.recoveryEnd(now, 0)
	s.f.mu.Lock()
	if !s.f.down { // down: reconnect re-seeds within the outage's share
		s.f.out = s.newOutage(now)
		s.f.recovers = later(s.f.recovers, end)
		s.f.lostEnd = s.f.recovers
		if s.f.posted == nil {
			s.f.posted = make(map[LaneID][]postSlot)
		}
		s.f.units = make(map[dayLane]int)
		s.f.restarts++
	}
	s.f.mu.Unlock()
	if err := s.join(ctx); err != nil {
		return err
	}
	s.markRecovering(ctx, end)
	// Redis lost the limits registrations too: before the next heartbeat,
	// so that a process starting meanwhile with other limits is refused.
	_ = s.renewLimits(ctx)
	return nil
}

func (s *Redis) recoveringKey() string { return s.key("recovering") }

// markRecovering tells processes that join the cluster before end (this
// process's clock) that it recovers from a lost state until then (see
// joinRecovery): the recovering key holds the latest end any process set
// (holdJoiners, redis_join.go). A failure only leaves them unwarned.
func (s *Redis) markRecovering(ctx context.Context, end time.Time) {
	_ = s.holdJoiners(ctx, end.Sub(s.localNow()))
}

// joinRecovery: a process joining while the running ones recover after
// Redis lost its state (markRecovering) has no view of the cluster from
// before, and the slots of processes no longer alive are in no Redis
// window: it takes no grant until that recovery ends (Reason "share").
// The same after an outage that Redis survived, until the processes
// presumed dead may have been charged (reconnect; redis_dead.go): their
// share's sends are in no Redis window before; and for joinWait at least
// when a heartbeat was overdue (a process may still be about to reach
// Redis from an outage: OpenRedis set the key before its first heartbeat;
// see redis_join.go). At the hold's end it reads the key again
// (rejoinCheck).
func (s *Redis) joinRecovery(ctx context.Context) error {
	d, err := s.joinHeld(ctx)
	if err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	now := s.localNow()
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.out = &outage{since: now}
	s.f.recovers = now.Add(d)
	s.f.lostEnd = s.f.recovers
	s.f.joining = true
	if s.f.posted == nil {
		s.f.posted = make(map[LaneID][]postSlot)
	}
	s.f.units = make(map[dayLane]int)
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// markDown records that Redis did not answer: the outage begins now unless
// one is under way.
func (s *Redis) markDown(err error) {
	now := s.localNow()
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.reason = err.Error()
	if s.f.down {
		return
	}
	s.f.down = true
	s.f.outages++
	s.f.out = s.newOutage(now)
	s.f.shareFrom, s.f.tried = now.Add(s.grace()), now
	// Own slots of an earlier outage stay counted until they leave the
	// window (counting them twice only lowers the share); the day's units
	// count from the new view on.
	if s.f.posted == nil {
		s.f.posted = make(map[LaneID][]postSlot)
	}
	s.f.units = make(map[dayLane]int)
}

// grace is how long after the outage's start the share begins (see the
// file's doc, "The grace"): a heartbeat interval plus HeartbeatTTL/15.
func (s *Redis) grace() time.Duration { return s.ttl/3 + s.retryEvery() }

// retryEvery is how often retry tries Redis during the grace, at most,
// and how long one try waits for it (HeartbeatTTL/15, 1 s by default).
func (s *Redis) retryEvery() time.Duration { return s.ttl / 15 }

// confirming reports whether the outage's share has not begun at now: in
// the grace, or after it until a try at or after its end failed (the last
// try: see retry). Call with f.mu held.
func (s *Redis) confirming(now time.Time) bool {
	return s.f.down && (now.Before(s.f.shareFrom) || s.f.tried.Before(s.f.shareFrom))
}

// retry tries Redis again while this process confirms it is unreachable
// (the grace): one Heartbeat, bounded by retryEvery, when retryEvery has
// passed since the last call that tried Redis and no retry is under way;
// the heartbeat reconnects when Redis answers. After the grace, the first
// call makes the last try (whatever the time since the one before), so
// that Redis answering in the grace's last retryEvery is found before any
// share: the share begins only once that try failed (it sets tried when
// done, so a Reserve during it is refused as in the grace). It reports
// whether Redis is reachable again. It makes no call after the last try
// (the heartbeats probe Redis then), nor more than one per retryEvery
// during the grace.
func (s *Redis) retry(ctx context.Context) bool {
	if !s.f.retryMu.TryLock() {
		return false
	}
	defer s.f.retryMu.Unlock()
	now := s.localNow()
	s.f.mu.Lock()
	last := !now.Before(s.f.shareFrom)
	due := s.confirming(now) && (last || !now.Before(s.f.tried.Add(s.retryEvery())))
	if due && !last {
		s.f.tried = now
	}
	s.f.mu.Unlock()
	if !due {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, s.retryEvery())
	defer cancel()
	_, err := s.heartbeat(rctx, 0)
	if last {
		s.f.mu.Lock()
		s.f.tried = later(s.f.tried, now)
		s.f.mu.Unlock()
	}
	return err == nil && !s.Unreachable()
}

// confirmRefused is the refusal of a grant during the grace: Reason
// "share", Confirming, until the next retry is due (or the share begins,
// if sooner). Call with f.mu held.
func (s *Redis) confirmRefused(lane LaneID, now time.Time) error {
	next := s.f.tried.Add(s.retryEvery())
	if !next.After(now) {
		next = now.Add(s.retryEvery())
	}
	if s.f.shareFrom.After(now) {
		next = earlier(next, s.f.shareFrom)
	}
	return &GrantError{Lane: lane, Reason: "share", Until: next, Confirming: true}
}

// Unreachable reports whether Redis is unreachable for this process now
// (since its last call to Redis failed, until one succeeds and the process
// has reconciled).
func (s *Redis) Unreachable() bool {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.f.down
}

// Outages returns how many times Redis became unreachable for this process
// since OpenRedis.
func (s *Redis) Outages() int {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.f.outages
}

// Health returns nil while Redis answers, else an error wrapping
// ErrDegraded saying since when, what the process sends meanwhile and the
// last error (it names no password: go-redis's errors do not hold the URL).
// While Redis answers, it returns LimitsConflict's error when there is one.
func (s *Redis) Health() error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if !s.f.down {
		if s.f.conflict != "" {
			return fmt.Errorf("%w: %s; this process goes on with its own limits", ErrLimitsConflict, s.f.conflict)
		}
		return nil
	}
	share := "no share (its view of the cluster was too old or too new): it sends only what grants in hand cover"
	if o := s.f.out; o.view != nil {
		share = fmt.Sprintf("1/%d of each lane's RPM, TPM and of the day left", o.n)
	}
	if now := s.localNow(); s.confirming(now) {
		share = fmt.Sprintf("confirming: it sends only what grants in hand cover and tries Redis again every %v; from %s (in %v), %s",
			s.retryEvery(), s.f.shareFrom.UTC().Format(time.RFC3339), max(0, s.f.shareFrom.Sub(now)).Round(time.Second), share)
	}
	return fmt.Errorf("%w: since %s: %s; last error: %s", ErrDegraded, s.f.out.since.UTC().Format(time.RFC3339), share, s.f.reason)
}

// windowCap is how many slots of lane (of class c) this process may hold
// in the window at now (local Unix ms) in the outage o, and when that may
// grow (0: not before the outage ends). Call with f.mu held.
func (s *Redis) windowCap(o *outage, l LaneID, c RedisClass, now int64, life time.Duration) (int, int64) {
	if o.view == nil {
		return 0, 0
	}
	f := o.since.UnixMilli()
	full := f + (life + c.Margin + s.window).Milliseconds() + s.f.gran + o.spread
	if now >= full {
		return c.RPM / o.n, 0
	}
	room, next, known := 0, full, 0
	for _, b := range o.view.lanes[l].leave {
		if b.at <= f+s.f.gran+o.spread {
			continue
		}
		known += b.n
		if b.at > now {
			next = min(next, b.at)
			continue
		}
		room += b.n
	}
	// A scheduled grant may leave the window counting more than RPM: the
	// first known - RPM slots to leave are promised to its future slots
	// (redis_giveback.go, "Scheduled slots"), not room.
	room = max(0, room-max(0, known-c.RPM))
	return min(room, c.RPM) / o.n, next
}

// dayCap is how many day units of lane on day this process may take in the
// outage o.
func (s *Redis) dayCap(o *outage, l LaneID, c RedisClass, day string) int {
	if o.view == nil {
		return 0
	}
	lv, ok := o.view.lanes[l]
	if !ok {
		return 0
	}
	f := o.since.UnixMilli()
	known := 0 // the view's slots still in the window at F: no room for others' later grants
	for _, b := range lv.leave {
		if b.at > f+s.f.gran+o.spread {
			known += b.n
		}
	}
	left := c.RPD - max(0, c.RPM-known)
	switch {
	case day == lv.day:
		left -= lv.count
	case day < lv.day:
		return 0
	}
	return max(0, left) / o.n
}

func (s *Redis) life() time.Duration {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return max(s.f.life, s.f.minLife)
}

// livePosted counts the own slots of lane since the outage that may still
// be sent in a window ending at now, and returns when the oldest leaves.
func (f *faultState) livePosted(l LaneID, now, window int64) (int, int64) {
	ps := slices.DeleteFunc(f.posted[l], func(p postSlot) bool { return p.score <= now-window })
	f.posted[l] = ps
	n, oldest := 0, int64(0)
	for _, p := range ps {
		n += p.covers
		if oldest == 0 || p.score < oldest {
			oldest = p.score
		}
	}
	if oldest != 0 {
		oldest += window + 1
	}
	return n, oldest
}

// shareRefused is the refusal of a grant beyond the share: Reason "share",
// until the earliest of when the share grows (grows), when room frees in
// the window (frees), each 0 when unknown, else one grant life after n;
// and, since Redis may answer again at the next heartbeat and the share
// ends with the recovery, no later than either (the recovery's end
// rounded up to the millisecond: asked again in the end's millisecond, a
// grant is still within the recovery, and was refused until the share's
// room freed, up to a minute more). While recovering, when neither grows
// nor frees is known, nothing grows the share before the recovery's end
// (no view, or the share is already all it will be): until then. none
// says the process took nothing of this share (GrantError.NoShare).
// Times are local Unix ms. Call with s.f.mu held.
func (s *Redis) shareRefused(lane LaneID, grows, frees, n int64, life time.Duration, none bool) error {
	until, joining := grows, false
	if frees != 0 && (until == 0 || frees < until) {
		until = frees
	}
	if until == 0 || until <= n {
		until = n + life.Milliseconds()
	}
	if s.f.down {
		until = min(until, n+(s.ttl/3).Milliseconds())
	} else if end := s.f.recovers.Add(time.Millisecond - 1).UnixMilli(); end >= n {
		until = min(until, end)
		if grows == 0 && frees == 0 {
			// Nothing frees room of the share before the recovery's end
			// (N10-2: the wait said one grant life, then the next
			// heartbeat, while the lane could only start at the end).
			until = end
			// Held as it joined (joinRecovery): nothing is granted before
			// the hold's end, the wait's end; an earlier release wakes
			// the lanes (scheduler releaseJoined), a later end set
			// meanwhile is refused again then (rejoinCheck).
			joining = s.f.joining
		}
	}
	return &GrantError{Lane: lane, Reason: "share", Until: time.UnixMilli(until), Joining: joining, NoShare: none}
}

// shareCheck refuses r when it does not fit in this process's share of the
// outage (down or recovering); nil when it fits. Call with f.mu held.
func (s *Redis) shareCheck(o *outage, r Record, c RedisClass, now time.Time, life time.Duration) error {
	n := now.UnixMilli()
	w := s.window.Milliseconds()
	live, oldest := s.f.livePosted(r.Lane, n, w)
	// The outage's share, and that of each earlier recovery after Redis
	// lost its state still under way (own posted slots are kept until they
	// leave the window, so they count against each).
	for p, until := o, (time.Time{}); p != nil; p, until = p.prev, p.prevEnd {
		if !until.IsZero() && !now.Before(until) {
			break
		}
		limit, grows := s.windowCap(p, r.Lane, c, n, life)
		if live+r.Covers > limit {
			return s.shareRefused(r.Lane, grows, oldest, n, life, live == 0)
		}
		if err := s.tokenShare(p, r, c, n, life); err != nil {
			return err
		}
	}
	if used := s.f.units[dayLane{r.Day, r.Lane}]; r.Units > 0 && used+r.Units > s.dayCap(o, r.Lane, c, r.Day) {
		// The share of the day is spent (or none: dayCap 0); while Redis
		// is unreachable, it may grant more once it answers: ask again at
		// the next heartbeat. While it answers and the recovery lasts,
		// the day's share grows only with the day (the view and the
		// count of live processes are the outage's): ask again at the
		// recovery's end, or at the next Pacific midnight if sooner
		// (N10-2: the wait said the next heartbeat, sliding, for up to
		// the recovery's last 45 s).
		until := now.Add(s.ttl / 3)
		if end := time.UnixMilli(s.f.recovers.Add(time.Millisecond - 1).UnixMilli()); !s.f.down && end.After(until) {
			until = earlier(end, nextDayStart(now, s.loc))
		}
		return &GrantError{Lane: r.Lane, Reason: "share", Until: until, NoShare: used == 0}
	}
	return nil
}

// nextDayStart is the first midnight in loc after t: when the day of t
// ends.
func nextDayStart(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// noteShare counts r, granted at now, in this process's share.
func (s *Redis) noteShare(r Record, c RedisClass, now time.Time, pending bool) {
	lead := r.Until.Sub(r.At) + c.Margin
	p := postSlot{score: now.Add(lead).UnixMilli(), covers: r.Covers, tokens: r.Tokens}
	s.f.posted[r.Lane] = append(s.f.posted[r.Lane], p)
	if r.Units > 0 {
		s.f.units[dayLane{r.Day, r.Lane}] += r.Units
	}
	if !pending {
		return
	}
	if s.f.pending == nil {
		s.f.pending = make(map[LaneID][]postSlot)
		s.f.pendDays = make(map[dayLane]int)
	}
	s.f.pending[r.Lane] = append(s.f.pending[r.Lane], p)
	if r.Units > 0 {
		s.f.pendDays[dayLane{r.Day, r.Lane}] += r.Units
	}
}

// errReconnected: reserveShare found the outage over (a reconnect ended
// since the caller found Redis unreachable); the caller asks Redis.
var errReconnected = errors.New("store: redis: reconnected: ask Redis")

// reserveShare grants r from this process's share while Redis is
// unreachable, recording it in the Local store; it refuses with a
// *GrantError (Reason "share") when the share is used, or has not begun
// (the grace: Confirming), and returns errReconnected when Redis is
// reachable again.
func (s *Redis) reserveShare(ctx context.Context, r Record, c RedisClass) (int, error) {
	if h := s.f.shareHook; h != nil {
		h()
	}
	s.f.shareMu.RLock() // until the Local store has r (see reconnect)
	defer s.f.shareMu.RUnlock()
	now := s.localNow()
	life := s.life()
	s.f.mu.Lock()
	if !s.f.down {
		// Reconnected since the caller found Redis unreachable: a grant
		// from the share now would stay pending, never added to Redis.
		s.f.mu.Unlock()
		return 0, errReconnected
	}
	if s.confirming(now) {
		// The grace: Redis may still answer the others (see retry).
		err := s.confirmRefused(r.Lane, now)
		s.f.mu.Unlock()
		return 0, err
	}
	o := s.f.out
	if err := s.shareCheck(o, r, c, now, life); err != nil {
		s.f.mu.Unlock()
		return 0, err
	}
	s.noteShare(r, c, now, true)
	count := s.f.units[dayLane{r.Day, r.Lane}]
	if o.view != nil {
		if lv := o.view.lanes[r.Lane]; lv.day == r.Day {
			count += lv.count
		}
	}
	var offMin int64
	if s.f.view != nil {
		offMin = s.f.view.offMin
	}
	s.f.mu.Unlock()
	// For a re-seed of an empty Redis: the slots as Redis's clock would
	// have scored them (never earlier).
	s.mu.Lock()
	lead := r.Until.Sub(r.At) + c.Margin
	member := s.id + ":" + strconv.FormatUint(s.seq.Add(1), 36) + ":s:"
	s.grants[r.Lane] = append(s.grants[r.Lane], sentGrant{score: now.Add(lead).UnixMilli() - offMin,
		member: member, covers: r.Covers, tokens: grantTokens(r, c)})
	s.noteShareTokens(r, c, member, now.Add(lead).UnixMilli())
	s.mu.Unlock()
	// Durable before it is used: a start on this data directory after a
	// kill replaces this life's dead charge by it (redis_dead.go).
	if err := s.recordLife(ctx); err != nil {
		// The share stays counted: on the safe side.
		return 0, err
	}
	if _, err := s.Local.Reserve(ctx, r); err != nil {
		// The share stays counted: on the safe side.
		return 0, err
	}
	return count, nil
}

// reconnect, when Redis was unreachable, adds what this process granted
// itself meanwhile to the shared state (re-seeding it when Redis came back
// empty) and starts the recovery period; it returns an error wrapping
// ErrUnavailable when Redis still does not answer.
func (s *Redis) reconnect(ctx context.Context) error {
	s.f.mu.Lock()
	down := s.f.down
	s.f.mu.Unlock()
	if !down {
		return nil
	}
	s.f.recMu.Lock()
	defer s.f.recMu.Unlock()
	if h := s.f.reconnectHook; h != nil {
		h()
	}
	// A grant from the share under way is in pending (noteShare) before
	// it is in the Local store: wait for it, so that a re-seed (join
	// reads the Local counts, then pending is dropped) counts it, and let
	// none start until the outage has ended (pushPending).
	s.f.shareMu.Lock()
	defer s.f.shareMu.Unlock()
	s.f.mu.Lock()
	if !s.f.down {
		s.f.mu.Unlock()
		return nil
	}
	s.mu.Lock()
	joined := s.epoch
	s.mu.Unlock()
	lanes := make([]LaneID, 0, len(s.f.pending))
	for l := range s.f.pending {
		lanes = append(lanes, l)
	}
	for dl := range s.f.pendDays {
		if _, ok := s.f.pending[dl.lane]; !ok {
			lanes = append(lanes, dl.lane)
		}
	}
	roster := s.f.out.roster
	s.f.mu.Unlock()
	// Before this process adds anything: the lanes' day counts as the
	// outage left them, when no other process recorded them first
	// (redis_dead.go).
	if err := s.recordOutageCounts(ctx, roster); err != nil {
		return err
	}
	slices.SortFunc(lanes, compareLane)
	for _, l := range lanes {
		ok, err := s.reconcileLane(ctx, l)
		if err != nil {
			return err
		}
		if !ok { // Redis came back empty: re-seed everything at once
			if err := s.join(ctx); err != nil {
				return err
			}
			s.f.mu.Lock()
			s.f.pending, s.f.pendDays = nil, nil
			s.f.mu.Unlock()
			break
		}
	}
	if err := s.reconcileTokens(ctx); err != nil {
		return err
	}
	// A Redis that came back empty with nothing pending here still needs
	// this process's counts: join re-seeds when the epoch changed.
	if err := s.join(ctx); err != nil {
		return err
	}
	// Reconciled: the processes whose recovery ends later do not charge
	// this one as dead (redis_dead.go).
	if err := s.markReconciled(ctx); err != nil {
		return err
	}
	// Then the keys disabled or enabled and the lanes stopped or resumed
	// meanwhile, in order; the outage ends with the last.
	if err := s.pushPending(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	lost := s.epoch != joined
	s.mu.Unlock()
	// At the recovery's end, the processes of the outage's roster that
	// did not reach Redis since are charged their share (redis_dead.go):
	// of the day only when Redis came back empty (the longer recovery
	// covers the window).
	s.f.mu.Lock()
	s.newDeadCheck(s.f.out, lost)
	o := s.f.out
	hold := o != nil && o.roster != nil && slices.ContainsFunc(o.roster.procs, func(p string) bool { return p != s.id })
	holdEnd := s.f.recovers.Add(s.ttl/3 + time.Second)
	s.f.mu.Unlock()
	if hold && !lost {
		// A process that joins before the processes presumed dead are
		// charged (at the first heartbeat or grant after this recovery's
		// end, a heartbeat interval at most) would be granted the room
		// their share's sends hold, which no Redis window has yet (a
		// daemon killed during the outage and restarted when Redis
		// answers again): it is held until then, as a joiner during the
		// recovery after Redis lost its state (joinRecovery).
		s.markRecovering(ctx, holdEnd)
	}
	if lost {
		// Redis came back empty (or another process re-seeded it first):
		// a restart as newEpoch counts it, and the recovery lasts until
		// the slots of processes no longer alive may have left the
		// window, a TTL more for those that die before they reconnect
		// (their grants on their share are nowhere else).
		end := s.recoveryEnd(s.localNow(), s.ttl)
		s.f.mu.Lock()
		s.f.restarts++
		s.f.recovers = later(s.f.recovers, end)
		s.f.lostEnd = s.f.recovers
		s.f.mu.Unlock()
		s.markRecovering(ctx, end)
	}
	_ = s.readView(ctx)
	s.signalResync()
	// The pending share units are in Redis now: this life's record in the
	// Local store says so (a failure leaves it larger: the safe side).
	_ = s.recordLife(ctx)
	return nil
}

// reconcileLane adds lane's pending own-share grants to the shared day
// counts and window; false when the epoch changed (Redis came back empty).
func (s *Redis) reconcileLane(ctx context.Context, l LaneID) (bool, error) {
	s.f.mu.Lock()
	slots := slices.Clone(s.f.pending[l])
	var days []string
	for dl := range s.f.pendDays {
		if dl.lane == l {
			days = append(days, dl.day)
		}
	}
	slices.Sort(days)
	units := make([]int, len(days))
	for i, d := range days {
		units[i] = s.f.pendDays[dayLane{d, l}]
	}
	// The last record of this life in the Local store holds at most
	// these units (redis_dead.go): marked added with them.
	gen := s.f.lifeGen
	s.f.mu.Unlock()
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	now := s.localNow().UnixMilli()
	keys := []string{s.epochKey(), s.winKey(l), s.winCountKey(l)}
	args := []any{epoch, s.process, s.id + ":" + strconv.FormatUint(s.seq.Add(1), 36) + ":r:", dayKeyTTL,
		s.window.Milliseconds(), s.clock(), len(days)}
	for i, d := range days {
		keys = append(keys, s.dayKey(d, l), s.useKey(d, l))
		args = append(args, units[i])
	}
	keys = append(keys, s.addedKey(s.id))
	args = append(args, gen)
	for _, p := range slots {
		args = append(args, p.score-now, p.covers)
	}
	res, err := reconcileScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return false, unavailable(err)
	}
	if res == 0 {
		return false, nil
	}
	s.f.mu.Lock()
	delete(s.f.pending, l)
	for _, d := range days {
		delete(s.f.pendDays, dayLane{d, l})
	}
	s.f.mu.Unlock()
	return true, nil
}

// sharing returns the outage whose share still bounds grants (down, or
// recovering after it), or nil.
func (s *Redis) sharing(now time.Time) *outage {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.down || (s.f.out != nil && now.Before(s.f.recovers)) {
		return s.f.out
	}
	if (len(s.f.deads) > 0 || s.f.joining) && s.f.out != nil {
		// The recovery is over but the processes presumed dead are not
		// charged yet (chargeDead), or the recovering key not read again
		// after a hold as this process joined (rejoinCheck): the share
		// still bounds grants.
		return s.f.out
	}
	return nil
}

// signalResync wakes Watch to re-read the shared disabled keys and lane
// states (it does nothing when no Watch runs).
func (s *Redis) signalResync() {
	select {
	case s.f.resync <- struct{}{}:
	default:
	}
}

// viewLua holds view, the function that reads the cluster's view for
// viewScript and heartbeatScript (with tokensLua before it).
//
// view(out, k, n, now, win, gran, pk) appends to out Redis's now, the
// live processes of the processes zset pk (heartbeat expiry after now): their
// count, then their names; then, for the n lanes whose keys start at
// KEYS[k] (per lane: window, day count; then the n lanes' use hashes),
// each lane's use of the day per process (the use hash: every process
// with a part, alive or not): fields n, then (process, units) pairs; then
// each lane's day count, then its window's live slots counted by the second of
// their score, rounded up (gran: 1000 ms): buckets n, then (score / gran,
// rounded up; slots, summed over the members: see windowLua) pairs; then,
// for each key after those (the token
// windows of the lanes with TPM, in the lanes' order), its live budgets the
// same way: buckets n, then (score / gran, rounded up; tokens) pairs. It
// returns out.
const viewLua = slotsLua + `
local function view(out, k, n, now, win, gran, pk)
  out[#out + 1] = now
  local procs = redis.call('ZRANGE', pk, '(' .. now, '+inf', 'BYSCORE')
  out[#out + 1] = #procs
  for _, p in ipairs(procs) do out[#out + 1] = p end
  for i = 0, n - 1 do
    local use = redis.call('HGETALL', KEYS[k + 2 * n + i])
    out[#out + 1] = #use / 2
    for j = 1, #use, 2 do
      out[#out + 1] = use[j]
      out[#out + 1] = tonumber(use[j + 1]) or 0
    end
  end
  for i = 0, n - 1 do
    out[#out + 1] = tonumber(redis.call('GET', KEYS[k + 2 * i + 1]) or '0')
    local e = redis.call('ZRANGE', KEYS[k + 2 * i], '(' .. (now - win), '+inf', 'BYSCORE', 'WITHSCORES')
    local b, order = {}, {}
    for j = 2, #e, 2 do
      local sec = math.ceil(tonumber(e[j]) / gran)
      if not b[sec] then
        b[sec] = 0
        order[#order + 1] = sec
      end
      b[sec] = b[sec] + win_slots(e[j - 1])
    end
    out[#out + 1] = #order
    for _, sec in ipairs(order) do
      out[#out + 1] = sec
      out[#out + 1] = b[sec]
    end
  end
  for i = k + 3 * n, #KEYS do
    local all = redis.call('HGETALL', KEYS[i])
    local b, order = {}, {}
    for j = 2, #all, 2 do
      local sc, tk = tok_parse(all[j])
      if sc > now - win then
        local sec = math.ceil(sc / gran)
        if not b[sec] then
          b[sec] = 0
          order[#order + 1] = sec
        end
        b[sec] = b[sec] + tk
      end
    end
    out[#out + 1] = #order
    for _, sec in ipairs(order) do
      out[#out + 1] = sec
      out[#out + 1] = b[sec]
    end
  end
  return out
end
`

// viewScript reads the cluster's view (viewLua) when the epoch is the one
// this process joined.
//
// KEYS: 1 the epoch, 2 processes (zset), then viewLua's keys. ARGV: 1 now
// ms (0: TIME), 2 window ms, 3 lanes n, 4 rounding ms (1000), 5 the epoch
// this process joined. Reply: viewLua's, or {-1} when the epoch is not the one joined
// (Redis lost its state: its counts are not the cluster's).
var viewScript = redis.NewScript(clockLua + tokensLua + viewLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[5] then return {-1} end
return view({}, 3, tonumber(ARGV[3]), clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4]), KEYS[2])
`)

// reconcileScript adds one lane's own-share grants, taken while Redis was
// unreachable, to the shared state in the current epoch: their day units,
// and their slots to the window as sent at the latest moment they could be
// (Redis's now plus what was left of their lead when the call left), one
// member per grant (see windowLua).
//
// Each day's count it adds to is marked in this life's added hash with the
// number of its last record in the Local store (redis_dead.go: a start
// after a crash before that record was emptied does not add it again).
//
// KEYS: 1 epoch, 2 window, 3 window count, then per day: day count, use;
// then this life's added hash (day count key -> record number).
// ARGV: 1 epoch, 2 process, 3 member prefix, 4 day key ttl s, 5 window ms,
// 6 now ms (0: TIME), 7 days n, then units per day, then the record
// number (0: none kept), then (lead ms, covers) pairs. Reply: 1, or 0 when
// the epoch changed (nothing done).
var reconcileScript = redis.NewScript(clockLua + windowLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local now = clock(ARGV[6])
local win = tonumber(ARGV[5])
local nd = tonumber(ARGV[7])
local gen = ARGV[8 + nd]
for i = 1, nd do
  local u = tonumber(ARGV[7 + i])
  if u > 0 then
    redis.call('INCRBY', KEYS[2 + 2 * i], u)
    redis.call('EXPIRE', KEYS[2 + 2 * i], ARGV[4])
    redis.call('HINCRBY', KEYS[3 + 2 * i], ARGV[2], u)
    redis.call('EXPIRE', KEYS[3 + 2 * i], ARGV[4])
    if gen ~= '0' then
      redis.call('HSET', KEYS[#KEYS], KEYS[2 + 2 * i], gen)
      redis.call('EXPIRE', KEYS[#KEYS], ARGV[4])
    end
  end
end
local w = win_open(KEYS[2], KEYS[3])
local k, top = 0, 0
for a = 9 + nd, #ARGV - 1, 2 do
  local score = now + tonumber(ARGV[a])
  local n = tonumber(ARGV[a + 1])
  if score > now - win and n > 0 then
    k = k + 1
    win_add(w, score, ARGV[3] .. k .. '*' .. string.format('%d', n), n)
    if score > top then top = score end
  end
end
if top > 0 then
  local want = top - now + win + 1000
  if redis.call('PTTL', KEYS[2]) < want then redis.call('PEXPIRE', KEYS[2], want) end
end
win_close(w)
return 1
`)

// ResyncProcess is the Process of the events Watch makes up from the
// shared state it re-read (see Watch).
const ResyncProcess = "(shared state)"

// noteShared records a disabled key's change that this process made or
// heard of, so a re-read does not report it again: rec is the key's
// record in Redis (its reason and time), "" for a key enabled.
func (s *Redis) noteShared(keyID, rec string) {
	s.f.keysMu.Lock()
	defer s.f.keysMu.Unlock()
	if s.f.disabled == nil {
		s.f.disabled = make(map[string]string)
	}
	if rec != "" {
		s.f.disabled[keyID] = rec
	} else {
		delete(s.f.disabled, keyID)
	}
}

// disabledRecord is a disabled key's record in Redis.
func disabledRecord(reason string, at time.Time) string {
	b, _ := json.Marshal(struct {
		Reason string    `json:"reason"`
		At     time.Time `json:"at"`
	}{reason, at.UTC()})
	return string(b)
}

// setShared records the shared disabled keys as read (DisabledKeys).
func (s *Redis) setShared(shared map[string]string, version string) {
	s.f.keysMu.Lock()
	defer s.f.keysMu.Unlock()
	s.f.disabled = make(map[string]string, len(shared))
	for id, rec := range shared {
		s.f.disabled[id] = rec
	}
	if version == "" {
		version = "0"
	}
	s.f.version = version
}

// keysVersion notes the disabled keys' version a grant returned: when it
// changed since this process last read them, Watch re-reads them.
func (s *Redis) keysVersion(v string) {
	s.f.keysMu.Lock()
	changed := s.f.version != "" && s.f.version != v
	if s.f.version == "" {
		s.f.version = v
	}
	s.f.keysMu.Unlock()
	if changed {
		s.signalResync()
	}
}

// resyncShared re-reads the shared disabled keys and lane states and calls
// fn with what changed since this process last saw them (keys disabled or
// enabled, lanes stopped or resumed; and every cooldown and exhaustion not
// over: applying one again changes nothing). A read that fails, or finds
// another epoch than this process joined, is retried at the next
// re-subscription or signal.
func (s *Redis) resyncShared(ctx context.Context, fn func(SharedEvent)) {
	// Under joinMu: a join that finds the epoch gone sets the new epoch
	// and then puts back the keys and stops it saw (seedView); a read
	// between the two would take the half-seeded state as every key
	// enabled and every lane resumed, and forget what the seed was to put
	// back. fn is called after, unlocked.
	s.joinMu.Lock()
	evs := s.resyncEvents(ctx)
	s.joinMu.Unlock()
	for _, ev := range evs {
		fn(ev)
	}
}

// resyncEvents is resyncShared's read (under joinMu): the events to report,
// none when the read fails or finds another epoch.
func (s *Redis) resyncEvents(ctx context.Context) []SharedEvent {
	var all *redis.MapStringStringCmd
	var ver, ep *redis.StringCmd
	states := make([]*redis.SliceCmd, len(s.lanes))
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, s.disabledKey())
		ver = p.Get(ctx, s.keysVersionKey())
		ep = p.Get(ctx, s.epochKey())
		for i, l := range s.lanes {
			states[i] = p.HMGet(ctx, s.stateKey(l), "cool", "exhausted", "stopped", "config", "stopat")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil
	}
	s.mu.Lock()
	known := s.epoch
	s.mu.Unlock()
	if ep.Val() != known {
		// Redis lost its state (restarted empty) or another process
		// re-seeded it: an empty shared state would read as every key
		// enabled and every lane resumed. This process re-seeds at its
		// next grant or reconnect, puts back what it saw (seedView), then
		// re-reads.
		return nil
	}
	var evs []SharedEvent
	shared := all.Val()
	s.f.keysMu.Lock()
	for id, v := range shared {
		if _, ok := s.f.disabled[id]; !ok {
			var rec struct {
				Reason string    `json:"reason"`
				At     time.Time `json:"at"`
			}
			if json.Unmarshal([]byte(v), &rec) != nil || rec.Reason == "" {
				rec.Reason = "disabled by another process"
			}
			evs = append(evs, SharedEvent{Process: ResyncProcess, Kind: "disabled", KeyID: id, Reason: rec.Reason, At: rec.At})
		}
	}
	for id := range s.f.disabled {
		if _, ok := shared[id]; !ok {
			evs = append(evs, SharedEvent{Process: ResyncProcess, Kind: "enabled", KeyID: id})
		}
	}
	s.f.keysMu.Unlock()
	s.setShared(shared, ver.Val())
	slices.SortFunc(evs, func(a, b SharedEvent) int {
		switch {
		case a.KeyID < b.KeyID:
			return -1
		case a.KeyID > b.KeyID:
			return 1
		}
		return 0
	})
	var laneEvs []SharedEvent
	stops := make(map[LaneID]stopInfo)
	stopAt := make(map[LaneID]time.Time) // the change's time, for the Local store's resume time
	for i, l := range s.lanes {
		v := states[i].Val()
		if len(v) < 4 {
			continue
		}
		if reason, _ := v[2].(string); reason != "" {
			config, _ := v[3].(string)
			stops[l] = stopInfo{reason, config}
		}
		if len(v) > 4 {
			sv, _ := v[4].(string)
			if ms, err := strconv.ParseInt(sv, 10, 64); err == nil {
				stopAt[l] = time.UnixMilli(ms).UTC()
			}
		}
	}
	s.f.keysMu.Lock()
	for _, l := range s.lanes {
		now, was := stops[l]
		before, had := s.f.stops[l]
		switch {
		case was && (!had || before != now):
			laneEvs = append(laneEvs, SharedEvent{Process: ResyncProcess, Kind: "stopped", Lane: l, Reason: now.reason, Config: now.config, At: stopAt[l]})
		case !was && had:
			laneEvs = append(laneEvs, SharedEvent{Process: ResyncProcess, Kind: "resumed", Lane: l, At: stopAt[l]})
		}
	}
	s.f.stops = stops
	s.f.keysMu.Unlock()
	evs = append(evs, laneEvs...)
	now := time.Now().UnixMilli()
	for i, l := range s.lanes {
		v := states[i].Val()
		for j, kind := range []string{"cool", "exhausted"} {
			if j >= len(v) {
				break
			}
			sv, _ := v[j].(string)
			if ms, err := strconv.ParseInt(sv, 10, 64); err == nil && ms > now {
				evs = append(evs, SharedEvent{Process: ResyncProcess, Kind: kind, Lane: l, Until: time.UnixMilli(ms).UTC()})
			}
		}
	}
	return evs
}

// LimitsConflict returns an error wrapping ErrLimitsConflict, naming the
// lane and both values, when the last heartbeat found a live process that
// registered other limits for one of this process's lanes (one that
// started in the seconds after Redis restarted empty, before this process
// registered again); else nil. The process goes on granting with its own
// limits: a lane's shared window then holds up to the larger RPM (each
// process's grants stop at its own). Its heartbeats keep its registration,
// so processes starting later are refused (ErrLimitsConflict).
func (s *Redis) LimitsConflict() error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.conflict == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrLimitsConflict, s.f.conflict)
}

// Restarts returns how many times this process found the cluster's epoch
// gone (Redis restarted empty, or came back empty after an outage) since
// OpenRedis.
func (s *Redis) Restarts() int {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.f.restarts
}
