package store

import (
	"context"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

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
// clock and never later than they were (grouped in runs: see "Few members"
// below), and its other Covers - k slots are removed. A grant is over at the lane's next grant (the grant script
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
// Late stamps. The argument needs every send no later than its grant's
// score: the settlement keeps a stamp no later than that. The scheduler
// sends a record's requests before its Until (the grant's expiry or
// earlier) and Reserve hands a record out only when its first request can
// still go under the grant (handOut), but a dispatcher stalled between the
// two sends later. So Stamped tells such a stamp apart (later than the
// score even with the offset, which is never below the true one) and adds
// a slot of its own at the stamp, as a late write's second way does (see
// "Late writes" below), and on a lane with TPM the grant's token budget
// again at the stamp (its requests all went out no later than that stamp,
// by the stamping order); the grant's slot at the score stays, one slot
// too many, as a stamped lease refunded. A stamp with no grant (the grant
// settled meanwhile: its settlement has no slot for it) adds its slot the
// same way, except one of a record granted on the outage share up to that
// record's end plus the margin (shareGranted: the reconcile adds its
// slots at the latest moment they could be sent). Nothing is added while
// Redis is unreachable or when the call fails: such a send then counts
// from its grant's score only (from nowhere, with no grant).
//
// Few members. The window stores a grant as one member holding its Covers
// slots (see windowLua in redis_scripts.go), and a settlement as one member
// per run of the k kept scores (keptRuns): from the latest kept score not
// in a run yet, the scores less than G = runSpan (100 ms) before it make a
// run, whose slots are all counted at that latest score. So a settled slot
// may be counted up to G later than its stamp, never earlier, and never
// later than the grant's own score (each kept score is capped at it before
// the runs are made, and the script caps again). The bound still holds: the
// argument above only needs every send to keep a slot of its own scored no
// earlier than the send, and a slot counted at a later score s' >= s is
// counted by every check that would count it at s (a check at now counts it
// while its score > now - 60 s, true of s' whenever of s); it is counted
// longer, never less. Nor is it counted beyond what the grant itself took:
// until the settlement the slot was at the grant's score, and after it, it
// leaves the window no later than from there. A member holding n slots
// counts n, so the live count, the sum of the slots of the members scored
// after now - 60 s, is the number of those slots, as when each was its own
// member. The cost is in utilization only: a slot counted up to G late
// takes its place in the window up to G longer, at most G/60 s (1/600,
// 0.17 %) of a lane's RPM at saturation; in return a grant of 100 slots
// whose requests went out in one burst is settled as one member, not 100,
// and any grant as at most its life (plus the margin) / G + 1 members.
//
// Scheduled slots. When the window has room for r >= 1 slots but not for
// a record's Covers, ReserveUpTo grants the record anyway: its r slots may
// be sent now, and its future slots only later, the j-th of them no
// earlier than the moment the j-th oldest slot of the window leaves it
// (that slot's score + 60 s + 1 ms), and only those due before the
// grant's expiry (Redis's now plus its life, Until - At). The grant is one
// member holding all its Covers at its expiry plus the margin, as any
// grant; the window's live count then holds more than RPM
// (over-commitment), and every reader counts it so.
//
// Why the bound holds. Give every slot a time nb before which it is not
// sent: the grant's now for a slot free then, its "not before" time for a
// future one (the lane sends its record's requests in order and the j-th
// one no earlier than its slot's time: bucket.Class.Scheduled). A send
// then has a slot with nb <= send <= score (the scores as above), so the
// sends in a window (t - 60 s, t] are at most C(t), the slots with nb <= t
// and score > t - 60 s; the claim is C(t) <= RPM for every t from the
// grant on. Before the grant it holds (a slot counted in the live count L
// is counted in C(t) at most while its score > t - 60 s). The grant adds r
// = RPM - L slots with nb = now, and future slot j counts at t only when
// t >= s_j + 60 s + 1 ms, s_j the j-th oldest live score: by then the j
// oldest live slots have left, so at most L - j of the old slots count at
// t and C(t) <= (L - j) + r + j = RPM. A refused grant's "free at" (k =
// live + Covers - RPM oldest slots gone, the live count holding the
// promised future slots) waits for the promised slots to be used: those
// slots leave only at the promising grant's score (or its settlement's).
// A settlement only moves scores earlier and removes slots, and the
// sends' own times never change: C(t) only falls, so every promise stays
// kept. So does the outage share: it counts as room only the slots of
// its view that leave beyond the view's known - RPM promised ones (see
// windowCap in redis_fault.go). A promise is on Redis's clock; the lane
// converts it to its own with the offset measured after the reply (Redis's
// now minus the local clock then), never above the true one, so the local
// time maps to that Redis time or later.
//
// How far ahead. The argument above holds for future slots due at any
// time: it counts a slot in C(t) from its nb on, and needs of its send
// only nb <= send <= score, which the caller keeps (it sends a record's
// requests before its Until, the grant's expiry, and none before its
// time). The horizon is the grant's expiry because a slot due at or after
// it could not be sent under the grant: it would only hold a slot of the
// window until the grant is settled. (It was half the grant's life at
// first, a choice, not part of the argument: a paced image lane,
// one request every 3 s, whose window was full then got about 5 slots a
// grant where bucket.MaxChunk allows 10; with the whole life, a record of
// 10 covers living 29 s gets its 10, the last one due 27 s after the first
// plus the margins, before its renewal 28.5 s after.) A longer horizon
// makes the window over-committed by more (at most Covers - 1 promised
// slots per grant, as before); every reader that counts the promised
// slots counts them by number, not by time: the refused grant's "free at"
// (k oldest slots of the live count, promises included), the outage
// share's room (windowCap: the view's first known - RPM leaving slots are
// promised), a re-seed (each grant's Covers at its score). Nor does it
// change what a process killed with grants in hand holds: a grant's
// slots, promised or not, are at its score, its expiry plus the margin
// (at most bucket.MaxChunkLife, 30 s, ahead), and leave the window a
// minute after; its day units are the record's (at most bucket.MaxChunk).
//
// Token budgets. On a lane with TPM the grant's token budget (its entry in
// the token window, redis_tokens.go) is at the grant's score too, and a
// TPM-bound lane is slow: its grants live up to bucket.MaxChunkLife (30 s),
// so a budget whose requests all went out at the grant stayed in the token
// window up to 30 s longer than they, and two processes sharing TPM 4,000
// with requests of 900 tokens sent a round of 4 every 82 to 89 s (about
// 60 % of TPM) where one process alone sends one every 60 s (90 %). So the
// settlement also moves the budget's entry back to the grant's latest kept
// stamp (the first run's score, on Redis's clock and capped at the grant's
// score, as above), when that is earlier. Why the bound still holds: the
// budget is taken for the leases the grant covers, which are exactly those
// stamped between it and the lane's next grant (as above), and each of
// their requests reaches the API no later than its own stamp, so no later
// than the latest stamp; the entry then still counts in every window that
// may hold any of them (a check at now counts it while its score > now -
// 60 s). What else the entry holds stays covered: the overruns added to it
// before the settlement are of requests sent before the grant was taken
// (earlier stamps, by the stamping order), and those added after it (at
// the next heartbeat, when the lane is idle) are of requests stamped no
// later than its latest stamp or under earlier grants; the unused budget
// given back only lowers it. A grant with no stamp kept keeps its entry
// where it was. As for slots, the re-seed of an empty Redis keeps the
// budget at the grant's score (later, on the safe side).
//
// A lane's grant taken on the safe share while Redis is unreachable is not
// tracked (its slots are added to Redis at the latest moment they could be
// sent when the process reconciles, and stay so), and the lane's Redis grant
// before it is not settled: its slots stay as granted, on the safe side.
// When a settlement's call fails, it is dropped the same way.

// laneGrant is a lane's last grant from Redis and the stamps since.
type laneGrant struct {
	// n: the stamps published in buf[:n&stampCount], and the stamp*
	// flags; read and written with sync/atomic only (first: 64-bit
	// aligned on 32-bit platforms too).
	n int64

	member string // member prefix: its window member is grantMember(member, covers)
	covers int
	score  int64 // Redis ms: where its slots are
	offset int64 // Redis ms minus local ms, never below the true offset
	end    int64 // local ms: the grant's expiry plus the margin
	tokens int64 // its token budget on a lane with TPM; below 0: none

	// While the grant is the lane's current one, Stamped writes its stamps
	// to buf (room for stampsKept()+1, made with the grant: newStamps) and
	// publishes them through n (see stamp); once it is taken (close), stamps
	// is what was published, read by settlement. A grant built without buf
	// (a test's) has only stamps.
	buf    []int64
	stamps []int64
}

// The flags of laneGrant.n. stampClosed: the grant was taken (close), its
// stamps are final and a stamp is the lane's next grant's. stampBusy: buf
// is being rewritten (a trim, or update) and is not read or written by
// anyone else meanwhile.
const (
	stampClosed = 1 << 62
	stampBusy   = 1 << 61
	stampCount  = stampBusy - 1
)

// newStamps makes g's room for its stamps, once, before it is handed out
// (setGrant): Stamped then allocates nothing.
func (g *laneGrant) newStamps() { g.buf = make([]int64, g.stampsKept()+1) }

// stamp adds ms to g's stamps, and reports false when g was closed first
// (the stamp then belongs to the lane's next grant, or to none). It costs
// one atomic compare-and-swap (a trim, once every Covers + 9 stamps, two
// more and a sort). Only one goroutine at a time stamps a lane (Stamped's
// precondition): the others (close, update) only set flags, so the slot at
// n is written by this goroutine alone and read by nobody until the
// compare-and-swap publishes it; a close in between fails it (the slot,
// past the count close took, is never read), as does an update (it is
// written again once the update is over).
func (g *laneGrant) stamp(ms int64) bool {
	for {
		v := atomic.LoadInt64(&g.n)
		switch {
		case v&stampClosed != 0:
			return false
		case v&stampBusy != 0: // an update: wait for it
			runtime.Gosched()
			continue
		}
		i := int(v & stampCount)
		if i >= len(g.buf) {
			// Full: keep the Covers latest, in place, while busy.
			if !atomic.CompareAndSwapInt64(&g.n, v, v|stampBusy) {
				continue
			}
			if g.buf == nil {
				// A grant made without its room (not by grantFrom).
				g.newStamps()
				atomic.StoreInt64(&g.n, 0)
				continue
			}
			st := g.buf[:i]
			if !slices.IsSorted(st) {
				slices.Sort(st)
			}
			k := min(i, g.covers)
			copy(st, st[i-k:])
			atomic.StoreInt64(&g.n, int64(k))
			continue
		}
		g.buf[i] = ms
		if atomic.CompareAndSwapInt64(&g.n, v, v+1) {
			return true
		}
	}
}

// lock waits until no update or trim rewrites g's stamps and marks them
// busy; it returns the count of stamps in buf and whether g was closed.
// The caller ends it by storing the count (and the closed flag) in g.n.
func (g *laneGrant) lock() (n int64, closed bool) {
	for {
		v := atomic.LoadInt64(&g.n)
		if v&stampBusy != 0 {
			runtime.Gosched()
			continue
		}
		if atomic.CompareAndSwapInt64(&g.n, v, v|stampBusy) {
			return v & stampCount, v&stampClosed != 0
		}
	}
}

// close ends g's stamping: the stamps published before it are final, in
// g.stamps; a stamp after it is the lane's next grant's (Stamped).
func (g *laneGrant) close() {
	n, closed := g.lock()
	if !closed && g.buf != nil {
		g.stamps = g.buf[:n]
	}
	atomic.StoreInt64(&g.n, n|stampClosed)
}

// reopen makes a closed g take stamps again, after those it had (the
// lane's grant again: restoreGrant). Call it only with g held by nobody
// else (taken, not yet handed out again).
func (g *laneGrant) reopen() {
	if g.buf == nil {
		return // no room: it stays closed, as a test's grant
	}
	atomic.StoreInt64(&g.n, int64(len(g.stamps)))
}

// update runs f on g's stamps, the published ones (f may change their
// values, not their number), while no stamp is added or taken, and reports
// whether g was still open (f ran): after close, g's stamps are its
// settlement's. Safe for concurrent use with stamp and close.
func (g *laneGrant) update(f func(stamps []int64)) bool {
	n, closed := g.lock()
	if !closed {
		f(g.buf[:n])
	}
	v := n
	if closed {
		v |= stampClosed
	}
	atomic.StoreInt64(&g.n, v)
	return !closed
}

// laneStamps is a lane's place for its current grant, made once per lane
// and never removed (Redis.stampsOf), so Stamped finds it without a lock.
type laneStamps struct {
	ready atomic.Bool // in Redis.stampIdx: lane is set (read lane only then)
	lane  LaneID
	g     atomic.Pointer[laneGrant] // nil: no grant stamped
	// last is the lane's last grant set (setGrant), kept once it is no
	// longer g: a stamp with no grant is of its record (its token budget).
	last atomic.Pointer[laneGrant]
	// share is a local ms up to which a stamp with no grant is of a
	// record granted on the outage share (see shareGranted): the
	// reconcile adds its slots. 0 once the lane has a grant after it.
	share atomic.Int64
	// 64 bytes a lane in stampIdx (not aligned to a cache line: at most two).
}

// stampSlots is the size of Redis.stampIdx: the laneStamps of up to
// stampSlots/2 lanes, each at the first free slot of the stampProbes from
// its strings' hash (open addressing, linear probing), never removed.
const (
	stampSlots  = 512
	stampProbes = 16
)

// stampHash hashes where lane's strings are in memory, not their text: the
// scheduler passes the same strings for a lane every time (its lane's
// project and its class's name), so a look-up hashes two pointers where a
// map hashes both texts.
func stampHash(lane LaneID) uint64 {
	p := uint64(uintptr(unsafe.Pointer(unsafe.StringData(lane.Project))))
	c := uint64(uintptr(unsafe.Pointer(unsafe.StringData(lane.Class))))
	return ((p ^ c<<1) * 0x9e3779b97f4a7c15) >> 32 // its high bits, mixed; stampsOf takes it modulo stampSlots
}

// sameStrings reports whether a and b are held by the same strings.
func sameStrings(a, b LaneID) bool {
	return unsafe.StringData(a.Project) == unsafe.StringData(b.Project) && len(a.Project) == len(b.Project) &&
		unsafe.StringData(a.Class) == unsafe.StringData(b.Class) && len(a.Class) == len(b.Class)
}

// stampsOf returns lane's laneStamps, making it on first use; safe for
// concurrent use. A lane is indexed (stampIdx) by the strings it was first
// given with: given with those again (the scheduler's), it is found
// without a lock, hashing two pointers and reading one cache line; given
// with other strings of the same text, or when the index is half full or
// its probes are, it is found in s.cur, with stampMu, as before the index.
func (s *Redis) stampsOf(lane LaneID) *laneStamps {
	h := stampHash(lane)
	if idx := s.stampIdx; idx != nil {
		for i := range uint64(stampProbes) {
			e := &idx[(h+i)%stampSlots]
			if !e.ready.Load() {
				break
			}
			if sameStrings(e.lane, lane) {
				return e
			}
		}
	}
	s.stampMu.Lock()
	defer s.stampMu.Unlock()
	if ls := s.cur[lane]; ls != nil {
		return ls
	}
	if s.cur == nil {
		s.cur = make(map[LaneID]*laneStamps)
	}
	ls := &laneStamps{lane: lane}
	if idx := s.stampIdx; idx != nil && s.stampIdxN < stampSlots/2 {
		// Inserts are serialized by stampMu; a reader reads lane only
		// once ready.
		for i := range uint64(stampProbes) {
			if e := &idx[(h+i)%stampSlots]; !e.ready.Load() {
				e.lane = lane
				e.ready.Store(true)
				s.stampIdxN++
				ls = e
				break
			}
		}
	}
	s.cur[lane] = ls
	return ls
}

// stampsKept is how many stamps a grant keeps before trimming to its
// Covers latest ones (amortized: a trim sorts).
func (g *laneGrant) stampsKept() int { return 2*g.covers + 8 }

// runSpan is G, in ms: a settlement counts each kept slot less than G
// after its stamp (see keptRuns). 100 ms of a 60 s window: at most 1/600
// (0.17 %) of a lane's RPM at saturation, a sixth of the 1 % the issue's
// >= 99 % of RPM leaves and less than the text class's default margin
// (250 ms) already costs.
const runSpan = 100

// keptRun is a run of a settlement's kept slots: n slots counted at score.
type keptRun struct {
	score int64 // Redis ms
	n     int
}

// keptRuns groups kept scores, latest first, into runs: from the latest
// score not in a run yet, the scores less than span ms before it make one
// run, counted at that latest score. So every slot is counted less than
// span ms after its own score, never earlier, and the runs start more than
// span ms apart: a grant's stamps over its life of L ms make at most
// L/span + 1 runs, however many slots it covers.
func keptRuns(scores []int64, span int64) []keptRun {
	var out []keptRun
	for i := 0; i < len(scores); {
		top, j := scores[i], i+1
		for j < len(scores) && scores[j] > top-span {
			j++
		}
		out = append(out, keptRun{score: top, n: j - i})
		i = j
	}
	return out
}

// settlement returns the runs of slots to keep (Redis ms, latest first; at
// most Covers slots in all) for g's stamps: its Covers latest stamps on
// Redis's clock, each no later than the grant's score, grouped by keptRuns.
func (g *laneGrant) settlement() []keptRun {
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
	return keptRuns(st, runSpan)
}

// keptSlots is the slots of runs.
func keptSlots(runs []keptRun) int {
	n := 0
	for _, r := range runs {
		n += r.n
	}
	return n
}

// settleArgs appends g's settlement to args for settleLua: member prefix
// ("" for none), covers, runs n, then n (score, slots) pairs.
func settleArgs(args []any, g *laneGrant, keep []keptRun) []any {
	if g == nil {
		return append(args, "", 0, 0)
	}
	args = append(args, g.member, g.covers, len(keep))
	for _, r := range keep {
		args = append(args, r.score, r.n)
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
// file redis_giveback.go for why the bound holds). Unless the stamp is
// late (below) it makes no Redis call and takes no lock: the lane's place
// is found by its strings' addresses (stampsOf: with a lock the first
// time, and whenever the lane comes with other strings than the first
// time), and the stamp is written to the grant's room and published with
// one atomic compare-and-swap (stamp), which also orders it against the
// grant's settlement on another goroutine (the heartbeat's): a stamp is in
// the settlement exactly when it came before the grant was taken, as under
// the lock it replaced. It is safe for concurrent use, but every lane must
// be used by one caller at a time (a lane's stamps are attributed to its
// last grant; two callers stamping one lane at once would write the same
// place).
//
// A stamp later than its grant's score on Redis's clock (the dispatcher
// stalled after Reserve handed the record out for longer than handOut's
// lead plus the margin; the scheduler itself stops covering leases with a
// record half a second before its end: bucket's renewLead) is a late
// send: the settlement keeps its slot no later than the score, which would
// leave the shared window before the request leaves the API's minute. So
// such a stamp also adds one slot of its own at the stamp, as a late
// write's Restamped does (stampedLate: one Redis round trip bounded to 2
// s, on the caller; on a lane with TPM, the grant's token budget again at
// the stamp). So does a stamp that finds no grant (the heartbeat settled
// the lane's grant, idle, during the stall; or Settle came first), except
// up to the end of a record granted on the outage share (its slots are
// added when the process reconciles) and while Redis is unreachable
// (nothing is added then). The normal case stays one comparison more: no
// lock, no allocation.
func (s *Redis) Stamped(lane LaneID, at time.Time) {
	ms := ceilMilli(at)
	ls := s.stampsOf(lane)
	for {
		g := ls.g.Load()
		if g == nil {
			if ms > ls.share.Load() {
				s.stampedLate(lane, at, ls.last.Load())
			}
			return
		}
		if g.stamp(ms) {
			if ms+g.offset > g.score {
				// ms + offset bounds the stamp on Redis's clock
				// from above (the offset is never below the true
				// one): past the score, the stamp may be after it.
				s.stampedLate(lane, at, g)
			}
			return
		}
		// g was taken meanwhile (close): the stamp is the lane's grant's
		// after it, as if it came after the take.
	}
}

// stampedLate adds a slot of lane at its stamp at (local clock) to the
// shared window, for a lease stamped past its grant's score or with no
// grant (see Stamped); on a lane with TPM also g's token budget (g: the
// lease's grant, the lane's last one; nil: none known, no tokens) at the
// stamp, in one entry per grant that each of its late stamps moves later
// (every request of the grant is sent no later than its latest stamp).
// Nothing is added in an outage, nor when the call fails: the early slot
// (at the grant's score) alone holds the request then. Its slot at the
// score stays as well (one slot too many until it leaves: the safe side).
func (s *Redis) stampedLate(lane LaneID, at time.Time, g *laneGrant) {
	if s.Unreachable() {
		return
	}
	tokens, field := int64(-1), ""
	if g != nil && g.tokens >= 0 {
		tokens, field = g.tokens, g.member+"late"
	}
	s.addSlot(lane, at, tokens, field)
}

// takeGrant removes lane's last grant from those being stamped and returns
// it (nil when none), its stamps final (close).
func (s *Redis) takeGrant(lane LaneID) *laneGrant {
	ls := s.stampsOf(lane)
	// With stampMu, as restampCur: the floor moves with the take.
	s.stampMu.Lock()
	defer s.stampMu.Unlock()
	g := ls.g.Swap(nil)
	if g != nil {
		g.close()
		s.leftCur(lane, g)
	}
	return g
}

// setGrant makes g lane's last grant, whose leases are stamped from now on:
// a later stamp is of g's record or a newer one, never of a record granted
// on the outage share before (the lane's share end is cleared).
func (s *Redis) setGrant(lane LaneID, g *laneGrant) {
	ls := s.stampsOf(lane)
	ls.share.Store(0)
	ls.last.Store(g)
	ls.g.Store(g)
}

// shareGranted notes that r was granted on the outage share: a stamp of
// its lane with no grant, up to r's end plus the class's margin, is one of
// its leases, whose slots the reconcile adds (see Stamped).
func (s *Redis) shareGranted(r Record, c RedisClass) {
	ls := s.stampsOf(r.Lane)
	end := r.Until.Add(c.Margin).UnixMilli()
	for {
		v := ls.share.Load()
		if v >= end || ls.share.CompareAndSwap(v, end) {
			return
		}
	}
}

// restoreGrant makes g, taken from lane (takeGrant) and not settled, lane's
// last grant again, its stamps kept, unless another was set since.
func (s *Redis) restoreGrant(lane LaneID, g *laneGrant) {
	g.reopen()
	s.stampsOf(lane).g.CompareAndSwap(nil, g)
}

// dropGrants forgets every lane's last grant: they are not settled (their
// slots stay as granted) and the stamps after this have no grant.
func (s *Redis) dropGrants() {
	s.stampMu.Lock()
	defer s.stampMu.Unlock()
	for _, ls := range s.cur {
		if g := ls.g.Swap(nil); g != nil {
			g.close()
		}
	}
}

// settled records that g's settlement keep was applied in Redis, so that a
// re-seed of an empty Redis adds g's kept slots only (as one member at the
// latest of their scores, on the safe side; at the grant's score on a TPM
// lane, where the grant's token budget is re-seeded at that score).
func (s *Redis) settled(lane LaneID, g *laneGrant, keep []keptRun) {
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
			gs[i].covers = keptSlots(keep)
		case len(keep) == 0:
			gs = slices.Delete(gs, i, i+1)
		default:
			gs[i].covers, gs[i].score = keptSlots(keep), keep[0].score
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
	for l, ls := range s.cur {
		if g := ls.g.Load(); g != nil && (all || g.end <= idle) && ls.g.CompareAndSwap(g, nil) {
			g.close()
			ds = append(ds, due{l, g})
			s.leftCur(l, g)
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
	keeps := make([][]keptRun, len(ds))
	for i, d := range ds {
		keeps[i] = d.g.settlement()
		keys = append(keys, s.winKey(d.lane), s.winCountKey(d.lane), s.tokKey(d.lane))
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
// lane's window (opened with win_open, see windowLua): the grant's member
// removed and, in its place, one member per run of kept stamps holding the
// run's slots, at the run's score, never later than the grant's (a grant
// already gone stays gone: its runs are not added). With tk, the lane's
// token window (a lane with TPM; nil for none), it also moves the grant's
// token budget back to its latest kept stamp (see "Token budgets" above;
// it needs tokensLua). It reads ARGV from a (member prefix, "" for none;
// covers; runs n; then n (score, slots) pairs) and returns the index after
// them.
const settleLua = `
local function settle(w, a, tk)
  -- cs is covers' decimal text (settleArgs), as in the grant's member.
  local prefix, cs, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  if prefix == '' then return a end
  local covers = tonumber(cs)
  local sc = win_rem(w, prefix .. 'g*' .. cs, n > 0)
  if sc and n > 0 then
    local left = covers
    for j = 1, n do
      local k = math.min(tonumber(ARGV[a + 2 * j - 1]), left)
      if k > 0 then
        win_add(w, math.min(tonumber(ARGV[a + 2 * j - 2]), sc), prefix .. 'k' .. j .. '*' .. string.format('%d', k), k)
        left = left - k
      end
    end
  end
  -- The first run's score is the latest kept stamp (capped at the
  -- grant's score by settlement).
  if tk and n > 0 then tok_settle(tk, prefix, tonumber(ARGV[a])) end
  return a + 2 * n
end
`

// settleScript settles grants that are over (see settleLua) in the current
// epoch.
//
// KEYS: 1 epoch, then per grant: its lane's window, the window's count, its
// lane's token window (read only when it holds the grant's budget). ARGV: 1
// epoch, then per grant a settlement (settleLua). Reply: 1, or 0 when the
// epoch changed (nothing done).
var settleScript = redis.NewScript(tokensLua + windowLua + settleLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local a = 2
for i = 2, #KEYS, 3 do
  local w = win_open(KEYS[i], KEYS[i + 1])
  a = settle(w, a, KEYS[i + 2])
  win_close(w)
end
return 1
`)

// Late writes.
//
// A request counts in the window from its stamp, the dispatch time plus
// the class's margin, as long as it is written within the first half of
// the margin (bucket.Class.Restamp): its second half covers the time from
// the write until the API has it. A request written later (a loaded
// machine: goroutine scheduling, encoding its body, dialing a connection)
// is told with Restamped: its slot then counts from to, its write plus half
// the margin, later than its stamp, from. Two ways:
//
//   - Its grant is the lane's current one, not settled yet, and to is no
//     later than the grant's score (where its slots are until then): one of
//     the grant's stamps equal to from is replaced by to, so the settlement
//     keeps a slot at to. No Redis call. The lease is known to be of the
//     current grant when from is later than every stamp of the lane's
//     earlier grants (floor): a lane's leases are stamped in order, each
//     after its grant was set, so the stamps of earlier grants are no later
//     than floor, and any stamp of the current grant equal to from is as
//     good as the lease's own (the grant's stamps are counted as a set:
//     the argument above only uses their order statistics, and replacing
//     one by a later value only raises them).
//   - Otherwise (its grant was settled, or another grant is current, or to
//     is beyond the grant's score, or its stamp was trimmed, or it moved
//     before): one slot of its own is added to the lane's window at to on
//     Redis's clock, in one round trip, and its early slot stays. The
//     bound holds: the request has a slot scored no earlier than its
//     arrival, and its early slot is one slot too many, as a stamped lease
//     refunded is. The cost: the early slot stays counted until it leaves
//     the window, one slot of the lane's RPM for up to a minute. On a lane
//     with TPM the same script adds the request's estimated tokens to the
//     lane's token window at to, an entry of their own: its grant's budget
//     may already have been moved back to an earlier kept stamp by the
//     settlement (or will be, to a stamp no later than the grant's score,
//     earlier than to), and would leave the window while the API still
//     counts the request. The budget's copy stays too (counted twice until
//     it leaves: the safe side).

// leftCur notes that g (nil: none) is no longer lane's current grant: no
// lease stamped later than its stamps is of it (see "Late writes"). Call
// it with stampMu held.
func (s *Redis) leftCur(lane LaneID, g *laneGrant) {
	if g == nil || len(g.stamps) == 0 {
		return
	}
	m := slices.Max(g.stamps)
	if s.floor == nil {
		s.floor = make(map[LaneID]int64)
	}
	if m > s.floor[lane] {
		s.floor[lane] = m
	}
}

// restampCur moves a stamp of lane's current grant equal to from (local
// ms) to to, when the lease is of that grant and to is no later than its
// score (see "Late writes"); it reports whether it did.
func (s *Redis) restampCur(lane LaneID, from, to int64) bool {
	ls := s.stampsOf(lane)
	// With stampMu, no grant of the lane is taken (takeGrant,
	// settleGrants, dropGrants) and its floor does not move; a Stamped
	// may still add to g meanwhile (update orders them).
	s.stampMu.Lock()
	defer s.stampMu.Unlock()
	g := ls.g.Load()
	if g == nil || from <= s.floor[lane] || to+g.offset > g.score {
		return false
	}
	found := false
	return g.update(func(st []int64) {
		if i := slices.Index(st, from); i >= 0 {
			st[i] = to
			found = true
		}
	}) && found
}

// Restamped tells the ledger that a stamped lease of lane was written late:
// its request, whose slot counted from from (its stamp, or where an earlier
// Restamped put it), counts from to (later: its write plus half the class's
// margin; see bucket.Class.Restamp). When the lease is of the lane's current
// grant and to is no later than the grant's score, one of the grant's
// stamps equal to from becomes to, so its settlement keeps a slot at to: a
// lock, no Redis call. Otherwise it adds one slot to the lane's shared
// window at to, converted to Redis's clock with the offset measured by this
// call (Redis's now minus the local clock before the call, plus a
// millisecond: never below the true offset, so the slot is never earlier
// than the request's arrival on Redis's clock), in one Redis round trip
// bounded to 2 s, and the slot at from stays (see "Late writes" above);
// on a lane whose class has TPM the same call adds tokens (the request's
// estimated input tokens, bucket.Lease.Tokens; below 0 counts as 0) to the
// lane's token window at to, an entry of their own. The slot and its tokens
// are also kept for a re-seed of an empty Redis, as a grant of one slot. Nothing is added when to is not after from, in an outage (the
// process's grants on its share are added at the latest moment they could
// be sent when it reconciles), or when the call fails or finds another
// epoch: then the early slot alone holds the request (the window may count
// it from before it arrived). Call it for a lease stamped with Stamped,
// while its request is in flight. Safe for concurrent use.
func (s *Redis) Restamped(lane LaneID, from, to time.Time, tokens int64) {
	if !to.After(from) || s.restampCur(lane, ceilMilli(from), ceilMilli(to)) || s.Unreachable() {
		return
	}
	s.addSlot(lane, to, max(tokens, 0), "")
}

// addSlot adds one slot of lane at to (local clock) to its shared window
// in the current epoch, as Restamped's second way (see "Late writes"),
// with tokens in its token window on a lane with TPM (below 0: none) in
// the entry field ("": the slot's own).
func (s *Redis) addSlot(lane LaneID, to time.Time, tokens int64, field string) {
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	member := s.id + ":" + strconv.FormatUint(s.seq.Add(1), 36) + ":w*1"
	tok := int64(-1)
	if s.classes[lane.Class].TPM > 0 && tokens >= 0 {
		tok = tokens
	}
	if field == "" {
		field = member
	}
	before := s.localNow().UnixMilli()
	sc, err := restampScript.Run(ctx, s.rdb, []string{s.epochKey(), s.winKey(lane), s.winCountKey(lane), s.tokKey(lane)},
		epoch, member, ceilMilli(to), before, s.clock(), s.window.Milliseconds(), tok, field).Int64()
	if err != nil || sc <= 0 {
		return
	}
	s.mu.Lock()
	s.grants[lane] = append(pruneGrants(s.grants[lane], s.localNow()), sentGrant{score: sc, member: member, covers: 1, tokens: tok})
	s.mu.Unlock()
}

// restampScript adds a late write's slot to its lane's window (see "Late
// writes" above) in the current epoch.
//
// KEYS: 1 epoch, 2 window, 3 the window's count, 4 the lane's token
// window (written only with tokens >= 0). ARGV: 1 epoch, 2 member (one
// slot), 3 the slot's time on the local clock (ms), 4 the local clock
// before the call (ms), 5 now ms (0: Redis TIME), 6 window ms, 7 the
// request's tokens (-1: a lane without TPM), 8 the token entry's field (set
// at the slot's score, replacing an entry of that field; absent: member).
// Reply: the slot's score (Redis ms), or 0 when the epoch changed (nothing
// done).
var restampScript = redis.NewScript(clockLua + tokensLua + windowLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local now = clock(ARGV[5])
local sc = tonumber(ARGV[3]) + now - tonumber(ARGV[4]) + 1
local w = win_open(KEYS[2], KEYS[3])
win_add(w, sc, ARGV[2], 1)
local keep = math.max(sc - now, 0) + tonumber(ARGV[6]) + 1000
local p = redis.call('PTTL', KEYS[2])
if p < keep then
  redis.call('PEXPIRE', KEYS[2], keep)
  p = keep
end
local tk = tonumber(ARGV[7])
if tk >= 0 then tok_take(KEYS[4], ARGV[8] or ARGV[2], sc, tk, keep) end
return win_close(w, sc, p)
`)
