package bucket

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// never is the readiness time of a lane that cannot serve until something
// outside changes (an operator, a refund).
const never = math.MaxInt64

// Pool holds the lanes of every model class and the keys that serve them.
// It is safe for concurrent use; each class has its own lock, so classes never
// contend with each other. Create one with New; the zero value is not usable.
type Pool struct {
	mu       sync.Mutex // guards keys; taken before a class's lock
	loc      *time.Location
	classes  []*Class
	byName   map[string]*Class
	keys     map[string]*keyState
	keyOrder []string
}

type keyState struct {
	project  string
	disabled string // reason; "" when enabled
}

// New builds a Pool from cfg. Every lane starts ready with empty counters.
func New(cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.withDefaults()
	p := &Pool{
		loc:    cfg.Location,
		byName: make(map[string]*Class, len(cfg.Classes)),
		keys:   make(map[string]*keyState, len(cfg.Keys)),
	}
	for _, k := range cfg.Keys {
		p.keys[k.ID] = &keyState{project: k.Project}
		p.keyOrder = append(p.keyOrder, k.ID)
	}
	for _, cc := range cfg.Classes {
		c := &Class{
			name:      cc.Name,
			limits:    cc.Limits,
			burst:     cc.Burst,
			probe:     cc.Probe,
			loc:       cfg.Location,
			critical:  cfg.Critical,
			maxChunk:  MaxChunk(cc.Limits),
			margin:    int64(cc.WindowMargin),
			byProj:    make(map[string]*lane),
			sharedTPM: cc.SharedTPM && cc.Limits.TPM > 0,
		}
		for _, k := range cfg.Keys {
			l := c.byProj[k.Project]
			if l == nil {
				l = c.newLane(k.Project)
				c.byProj[k.Project] = l
				c.lanes = append(c.lanes, l)
			}
			l.allKeys = append(l.allKeys, k.ID)
			l.keys = append(l.keys, k.ID)
		}
		for _, l := range c.lanes {
			c.pushReady(l)
		}
		p.classes = append(p.classes, c)
		p.byName[cc.Name] = c
	}
	return p, nil
}

// Class returns the named class, or nil.
func (p *Pool) Class(name string) *Class { return p.byName[name] }

// Classes returns every class in configuration order.
func (p *Pool) Classes() []*Class { return append([]*Class(nil), p.classes...) }

// Location returns the time zone of the quota day.
func (p *Pool) Location() *time.Location { return p.loc }

// Disable takes a key out of every class, with a reason (e.g. "invalid",
// "leaked"). A lane whose keys are all disabled stops serving. It reports
// whether the key exists; disabling a disabled key updates the reason.
func (p *Pool) Disable(keyID, reason string) bool {
	if reason == "" {
		reason = "disabled"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.keys[keyID]
	if k == nil {
		return false
	}
	was := k.disabled != ""
	k.disabled = reason
	if !was {
		for _, c := range p.classes {
			c.setKeyEnabled(k.project, keyID, false)
		}
	}
	return true
}

// Enable puts a disabled key back into every class. It reports whether the key exists.
func (p *Pool) Enable(keyID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.keys[keyID]
	if k == nil {
		return false
	}
	if k.disabled != "" {
		k.disabled = ""
		for _, c := range p.classes {
			c.setKeyEnabled(k.project, keyID, true)
		}
	}
	return true
}

// KeyState describes one key.
type KeyState struct {
	ID       string
	Project  string
	Disabled string // reason; "" when enabled
}

// Keys returns every key in configuration order.
func (p *Pool) Keys() []KeyState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]KeyState, 0, len(p.keyOrder))
	for _, id := range p.keyOrder {
		k := p.keys[id]
		out = append(out, KeyState{ID: id, Project: k.project, Disabled: k.disabled})
	}
	return out
}

// KeyProject returns the project of a key.
func (p *Pool) KeyProject(keyID string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.keys[keyID]
	if k == nil {
		return "", false
	}
	return k.project, true
}

// Class is the set of lanes of one model class: one lane per project. It is
// safe for concurrent use.
//
// Ready lanes sit in a ring that Acquire walks round-robin; lanes that cannot
// serve now sit in a min-heap ordered by the time they can, so Acquire never
// scans lanes that are cooling down, exhausted or out of RPM.
type Class struct {
	name     string
	limits   Limits
	burst    int
	probe    bool
	loc      *time.Location
	critical float64
	maxChunk int
	margin   int64 // WindowMargin in nanoseconds
	// sharedTPM: records carry a token budget (ClassConfig.SharedTPM).
	sharedTPM bool

	mu     sync.Mutex
	lanes  []*lane
	byProj map[string]*lane
	// The current quota day of the class and its totals over enabled lanes,
	// kept up to date so Critical costs O(1).
	dayStart, dayEnd int64
	dayUsed          int
	dayLimit         int
	cursor           *lane // next ready lane to try; nil when none is ready
	nready           int
	waiting          []*lane // min-heap by readyAt
	// shared is true once SharedDay was called: Critical then sums each
	// enabled lane's larger of its own use and its shared day count.
	shared bool
	// protUsed is that sum while protOK: take keeps it up to date (a
	// request taken adds one when the lane's use passes its shared count),
	// and so does SharedDay (the lane's term, old and new); every other
	// change of a lane's use, day or keys clears protOK, and the next read
	// sums the lanes again (O(lanes)); so Critical costs O(1) per request
	// on a shared ledger too, a record's SharedDay included.
	protUsed int
	protOK   bool
}

// lane states.
const (
	inNone = iota
	inReady
	inWaiting
)

type lane struct {
	// The fields Acquire reads come first, so that they share cache lines.
	// restUntil is when the lane may serve again after a cooldown or a hold
	// (the later of the two: Acquire reads this one field); coolUntil and
	// holdUntil below say which, for reports.
	restUntil      int64
	exhaustedUntil int64
	keys           []string // enabled keys; none while stopped
	nextKey        int
	project        string
	proven         bool  // a request succeeded (ClassConfig.Probe)
	probing        bool  // an unproven lane's one request is out
	probeEnd       int64 // until then (ProbeRecheck after it left) the probe holds the lane

	pace  *rate.Limiter // RPM pacing; the window enforces the bound
	paced int           // pacing tokens taken from pace and not yet used
	tpm   *rate.Limiter // nil when TPM is not enforced
	win   window
	// pacedAt is when paced was taken (unix nanoseconds); paceBurst and
	// pacePerNano are pace's burst and rate, read without its lock.
	pacedAt     int64
	paceBurst   int
	pacePerNano float64

	dayStart, dayEnd int64 // current Pacific day, unix nanoseconds
	day              string
	used             int // daily units used today
	reserved         int // daily units durably recorded today (>= used)
	// nextDay is the daily units already charged on the Pacific day after
	// the lane's current one (from dayEnd): requests whose slot crossed
	// the midnight (CrossDay), or that day's count restored (Restore).
	// When the lane rolls to that day it starts with them used and
	// reserved; 0 when none.
	nextDay int
	// In flight at midnight (gap 1 of the midnight charge): flight counts
	// the leases of the lane's current day stamped (Stamp), not yet Landed
	// and not charged on the next day (CrossDay); stampedSeq is one more
	// than the seq of the last of them stamped (a lane's leases are
	// stamped in the order they are taken). When the lane rolls to the
	// next day, each of them may still be written after midnight (its
	// write not reported yet), so each holds one provisional unit of the
	// new day: prov of them, used and reserved, the leases of the old day
	// with seq < provSeq. Landed
	// releases one (its request's write time is known and did not cross);
	// CrossDay confirms one (the unit stays, the caller records it).
	flight     int
	stampedSeq uint64
	prov       int
	provSeq    uint64
	// PreCharge, in the day's last WindowMargin, moves the leases in
	// flight to pre (those with seq < preSeq): each has a unit of the next
	// day charged (in nextDay) for the caller to record at once, so that
	// every process sharing the lane counts it from midnight on. nextFree
	// counts those of them that landed before the lane rolled (their unit
	// stays reserved on the new day, not used). After the roll, pre counts
	// those still in flight (used and reserved on the new day).
	pre      int
	preSeq   uint64
	preEnd   int64 // the end of the day of the leases in pre
	nextFree int
	// crossed lists the leases CrossDay charged (seq and Day's end) until
	// they land: Landed then leaves flight and prov alone. Only leases
	// whose slot crossed midnight are in it: empty almost always.
	crossed []crossedLease
	renewAt int64 // a lease acquired from then on records again (ChunkLife/4 before the last record's Until)
	// The last record's number (counting from 1) and how many more leases
	// it covers: a lease with none left records again, so a record never
	// covers more requests sent than its Covers, even when a lease of an
	// earlier record is refunded after it (its unit comes back to the day,
	// not to the record).
	recSeq    uint64
	coverLeft int
	// sched holds, ascending (unix nanoseconds), the times before which
	// the last len(sched) covers of record schedRec may not be taken
	// (Scheduled: a shared window promised those slots as older ones
	// leave it). The next lease takes the record's cover number covers -
	// coverLeft, so it waits for sched[len(sched)-coverLeft] when
	// coverLeft <= len(sched).
	sched    []int64
	schedRec uint64
	// The lane's acquisitions in the second from secStart, and in the
	// second before it (0 when it was not the one just before): chunks are
	// sized from them.
	secStart          int64
	secCount, secPrev int
	// The lane's recent pace, a moving average (weight 1/8) of the time
	// between its acquisitions (each gap at most a minute; 0 until it has
	// two), and its last acquisition's time. A slow lane's records are
	// sized and live by it (RecordLife).
	gap          int64
	lastTake     int64
	recordTokens int64 // estimated tokens acquired since the last record
	// With ClassConfig.SharedTPM: the tokens left of the last record's
	// budget, and the lane's recent estimated tokens per request (a moving
	// average, in 1/16 tokens) that budgets are sized from.
	budget int64
	avgTok int64

	where      int
	prev, next *lane // ready ring
	heapIdx    int
	readyAt    int64 // when waiting

	// The lane's day count as all the processes sharing its quota see it
	// (SharedDay), for sharedDay; ignored on another day.
	sharedCount int
	sharedDay   string

	allKeys  []string
	disabled map[string]bool // disabled key ids
	stopped  string          // why the lane serves nothing (Stop); "" when not stopped

	// coolUntil is the end of the lane's latest cooldown (CoolDown: a 429),
	// holdUntil and holdReason its latest hold (Hold: no 429, e.g. the
	// cluster's shared window full). Reports only: readiness is restUntil.
	coolUntil  int64
	holdUntil  int64
	holdReason string
}

// isPre reports whether lease l is one of the lane's leases PreCharge
// charged on the next day and still in flight.
func (ln *lane) isPre(l Lease) bool {
	return ln.pre > 0 && l.dayEnd == ln.preEnd && l.seq < ln.preSeq && (ln.dayStart == l.dayStart || ln.dayStart == l.dayEnd)
}

// crossedLease is a lease CrossDay charged, until it lands.
type crossedLease struct {
	seq    uint64
	dayEnd int64
}

func (c *Class) newLane(project string) *lane {
	l := &lane{project: project, heapIdx: -1}
	// Pace at exactly RPM per minute with a burst of the whole minute (or
	// the configured burst): the long-run rate can use the whole RPM while
	// the window check keeps every sliding 60 s window at or under it.
	burst := c.burst
	if burst == 0 {
		burst = max(1, c.limits.RPM)
	}
	l.pace = rate.NewLimiter(rate.Limit(float64(c.limits.RPM)/60), burst)
	l.paceBurst, l.pacePerNano = burst, float64(c.limits.RPM)/60/1e9
	if c.limits.TPM > 0 {
		l.tpm = rate.NewLimiter(rate.Limit(float64(c.limits.TPM)/60), c.limits.TPM)
	}
	return l
}

// Name returns the class name.
func (c *Class) Name() string { return c.name }

// Limits returns the per-project limits of the class.
func (c *Class) Limits() Limits { return c.limits }

// A Lease is one acquired request on a lane: the key to send it with, the
// project whose quota it spends, and the Pacific day it counts on.
type Lease struct {
	Class   string
	KeyID   string
	Project string
	// Day is the store.DayFormat date of the Pacific day the request
	// counts on: the day of its acquisition. A request whose window slot
	// moves past that day's end (a late stamp or write) may reach the API
	// on the next day: CrossDay charges it there too.
	Day    string
	Tokens int // estimated input tokens taken from the lane's TPM
	// Record reports that the caller must durably record a reservation of
	// the lane before sending the request (write-ahead): Chunk new daily
	// units for (Day, Project, Class), which may be 0 when the lane only
	// renews units it reserved more than ChunkLife ago. The record covers
	// this request and the lane's next Covers-1 (its reserved units not yet
	// used), all stamped before Until; a lease of the record refunded lets
	// it cover one more, a lease of an earlier record refunded does not (so
	// a record's requests sent never exceed its Covers; with a schedule,
	// see Scheduled, the refunded cover is the next one taken, free at its
	// time or earlier). If recording fails, call ChunkFailed
	// and Refund. Later leases of the lane are covered by this record, so
	// the write-ahead rule holds when one caller per class acquires,
	// records and stamps each lease before its next Acquire (the
	// scheduler's dispatcher does).
	Record bool
	// Chunk is the number of new daily units to record (see Record). It is
	// sized from the lane's use: the requests it acquired in its last whole
	// second (or in the current one, when more) plus this one; on a slow
	// lane (see ChunkLife), at least the requests it may use at its recent
	// pace in a life of SlowCovers paces (at most MaxChunkLife); at most
	// MaxChunk and what is left of RPD and, once SharedDay was called, of
	// the lane's shared day count (at least 1).
	Chunk int
	// Covers is how many requests of the lane the record covers (see Record).
	Covers int
	// PrevTokens is the estimated input tokens acquired on the lane under
	// its previous record: stored with the record, it lets a restart after a
	// crash rebuild the lane's TPM window.
	PrevTokens int64
	// Budget is the input tokens the record reserves for the requests it
	// covers, this one included, when the class shares its TPM
	// (ClassConfig.SharedTPM; 0 otherwise, and when Record is false): this
	// lease's Tokens plus, for each of the other Covers-1 requests (no more
	// than AcquireFor's demand less one: units reserved before may cover
	// more requests than wait, and a budget for them would hold a shared
	// token window unused), the lane's recent tokens per request, at most
	// what the lane's own TPM window has room for at the acquisition (TPM
	// less its live tokens; never below this lease's Tokens): a budget
	// larger than that could not be used before its tokens leave the
	// window. A shared token window may grant less (Budgeted). A later
	// lease whose Tokens do not fit in what its record's budget has left
	// records again (Record with Chunk 0 unless new units are due: a
	// top-up).
	Budget int64
	// PrevUnused is, on a record when the class shares its TPM, the tokens
	// of the lane's previous record's Budget that no lease used (a new
	// record supersedes it): a shared store may give them back from that
	// record's grant. 0 otherwise.
	PrevUnused int64

	lane     *lane
	seq      uint64
	rec      uint64 // the lane's record covering the lease (lane.recSeq)
	dayStart int64
	dayEnd   int64 // the end of Day (the next Pacific midnight), unix nanoseconds
	until    int64 // see Until
}

// Until is when the units of the lease's record stop being usable: the
// acquisition's time plus the record's life, RecordLife of its Covers at the
// lane's recent pace (ChunkLife on a fast lane, at most MaxChunkLife). It is
// the zero Time when Record is false.
func (l Lease) Until() time.Time {
	if !l.Record {
		return time.Time{}
	}
	return time.Unix(0, l.until)
}

// Valid reports whether l came from a successful Acquire.
func (l Lease) Valid() bool { return l.lane != nil }

// Acquire takes one request, with an estimate of its input tokens, on a ready
// lane of the class, rotating over ready lanes and over the enabled keys of
// each lane's project.
//
// When no lane can serve at now, ok is false and next is the earliest time one
// could (RPM or TPM refill, end of a cooldown, next Pacific midnight); next is
// the zero Time when none can until something else changes: every key is
// disabled, or tokens exceed the class's TPM.
func (c *Class) Acquire(now time.Time, tokens int) (lease Lease, ok bool, next time.Time) {
	return c.AcquireFor(now, tokens, 0)
}

// AcquireFor is Acquire for a caller that knows its demand: demand is how
// many requests wait for the class, this one included (0 or less:
// unknown). A slow lane's new chunk then covers no more than demand
// requests beyond what the lane's last second asks for, so that a record
// taken as the work ends does not reserve (and, in a shared store, hold in
// the shared window until it is over) units no request will use.
func (c *Class) AcquireFor(now time.Time, tokens, demand int) (lease Lease, ok bool, next time.Time) {
	n := now.UnixNano()
	tok := int64(max(tokens, 0))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limits.TPM > 0 && tok > int64(c.limits.TPM) {
		return Lease{}, false, time.Time{}
	}
	c.roll(now, n)
	c.promote(n)
	for c.cursor != nil {
		l := c.cursor
		at := c.readyAt(l, now, n, tok)
		if at <= n && l.takePace(now) {
			c.cursor = l.next
			if l.tpm != nil && tok > 0 {
				l.tpm.AllowN(now, int(tok)) // checked in readyAt: cannot fail
			}
			return c.take(l, n, tok, demand), true, time.Time{}
		}
		at = l.withPace(at, now, n)
		c.removeReady(l)
		l.readyAt = at
		c.pushWaiting(l)
	}
	if len(c.waiting) == 0 || c.waiting[0].readyAt == never {
		return Lease{}, false, time.Time{}
	}
	return Lease{}, false, time.Unix(0, c.waiting[0].readyAt).In(now.Location())
}

// Earliest returns when the class could serve a request of tokens without
// taking anything: now when a lane is ready, the zero Time when none can
// until something else changes.
func (c *Class) Earliest(now time.Time, tokens int) time.Time {
	n := now.UnixNano()
	tok := int64(max(tokens, 0))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limits.TPM > 0 && tok > int64(c.limits.TPM) {
		return time.Time{}
	}
	c.roll(now, n)
	c.promote(n)
	best := int64(never)
	if c.cursor != nil {
		l := c.cursor
		for {
			at := l.withPace(c.readyAt(l, now, n, tok), now, n)
			best = min(best, at)
			if best <= n {
				return now
			}
			l = l.next
			if l == c.cursor {
				break
			}
		}
	}
	if len(c.waiting) > 0 {
		best = min(best, c.waiting[0].readyAt)
	}
	if best == never {
		return time.Time{}
	}
	return time.Unix(0, best).In(now.Location())
}

// takePace takes one pacing token. It takes every token the limiter has at
// once and hands them out one by one, so a lane that is not saturated calls
// the limiter once per burst rather than once per request. Tokens taken
// ahead count against the burst: the limiter refills while they wait, so
// those beyond the burst less what it has regained since are dropped (else
// after an idle spell the lane could start the burst and the tokens taken
// ahead at once, up to twice the burst; now at most the burst and one).
func (l *lane) takePace(now time.Time) bool {
	if l.paced > 0 {
		// The whole tokens the limiter has regained since (it may hold
		// a fraction more, left when they were taken): dropping only
		// those beyond the burst never drops a token the lane is owed,
		// and the limiter is full when all are dropped.
		regained := int(float64(now.UnixNano()-l.pacedAt) * l.pacePerNano)
		if room := l.paceBurst - regained; l.paced > room {
			l.paced = max(0, room)
		}
	}
	if l.paced == 0 {
		k := int(l.pace.TokensAt(now))
		if k < 1 || !l.pace.AllowN(now, k) {
			return false
		}
		l.paced, l.pacedAt = k, now.UnixNano()
	}
	l.paced--
	return true
}

// withPace turns at, when the lane is ready but for pacing (readyAt's answer),
// into when it is ready with pacing too: a lane held back by its window or a
// cooldown may still lack a pacing token at that moment.
func (l *lane) withPace(at int64, now time.Time, n int64) int64 {
	switch {
	case at <= n:
		return n + l.paceWait(now)
	case at == never || l.paced > 0:
		return at
	}
	return at + untilTokens(l.pace, time.Unix(0, at), 1)
}

// paceWait returns how long until the lane has a pacing token.
func (l *lane) paceWait(now time.Time) int64 {
	if l.paced > 0 {
		return 0
	}
	return untilTokens(l.pace, now, 1)
}

// untilTokens returns how many nanoseconds after now lim holds need tokens
// (0: it does now). It rounds up and then checks against the limiter itself,
// so that at now plus the result the tokens are there: a caller that sleeps
// that long does not wake a nanosecond early for nothing.
func untilTokens(lim *rate.Limiter, now time.Time, need float64) int64 {
	have := lim.TokensAt(now)
	if have >= need {
		return 0
	}
	d := max(1, int64(math.Ceil((need-have)/float64(lim.Limit())*1e9)))
	for i := 0; i < 64 && lim.TokensAt(now.Add(time.Duration(d))) < need; i++ {
		d++
	}
	return d
}

// promote moves waiting lanes whose time has come into the ready ring.
func (c *Class) promote(n int64) {
	for len(c.waiting) > 0 && c.waiting[0].readyAt <= n {
		l := c.popWaiting()
		c.pushReady(l)
	}
}

// rollDay moves the lane to the Pacific day containing now when its day has ended.
func (c *Class) rollDay(l *lane, now time.Time, n int64) {
	if n >= l.dayStart && n < l.dayEnd {
		return
	}
	start, end := dayBounds(now, c.loc)
	carry, free, prov, pre := 0, 0, 0, 0
	if start.UnixNano() == l.dayEnd {
		// Charged on this day before it began (CrossDay, PreCharge,
		// Restore), free of them reserved but not used (PreCharge's
		// leases landed in time).
		carry, free, pre = l.nextDay, l.nextFree, l.pre
		// The old day's requests in flight whose write is not reported
		// yet and that PreCharge did not charge: each may reach the API
		// on this day (see lane.prov).
		prov = l.flight
		l.provSeq = l.stampedSeq
	}
	l.dayStart, l.dayEnd = start.UnixNano(), end.UnixNano()
	l.day = start.Format("2006-01-02")
	l.used, l.reserved = max(carry-free, 0)+prov, carry+prov
	l.nextDay, l.nextFree = 0, 0
	l.flight, l.prov, l.pre = 0, prov, pre
	if len(l.crossed) > 0 {
		// Leases of days before the one just ended no longer change
		// anything when they land.
		l.crossed = slices.DeleteFunc(l.crossed, func(x crossedLease) bool { return x.dayEnd < l.dayStart })
	}
	c.protOK = false
}

// roll moves every lane to the Pacific day containing now when the class's
// day has ended (once a day, O(lanes)), and recomputes the class totals.
func (c *Class) roll(now time.Time, n int64) {
	if n >= c.dayStart && n < c.dayEnd {
		return
	}
	start, end := dayBounds(now, c.loc)
	c.dayStart, c.dayEnd = start.UnixNano(), end.UnixNano()
	c.dayUsed, c.dayLimit = 0, 0
	c.protOK = false
	for _, l := range c.lanes {
		c.rollDay(l, now, n)
		if len(l.keys) > 0 {
			c.dayUsed += l.used
			c.dayLimit += c.limits.RPD
		}
	}
}

// dayBounds returns the midnights that start and end the day of t in loc.
func dayBounds(t time.Time, loc *time.Location) (time.Time, time.Time) {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// NextMidnight returns the first midnight in loc after t: when a quota day
// that contains t ends.
func NextMidnight(t time.Time, loc *time.Location) time.Time {
	_, end := dayBounds(t, loc)
	return end
}

// Day returns the quota day (store.DayFormat) that contains t in loc.
func Day(t time.Time, loc *time.Location) string {
	start, _ := dayBounds(t, loc)
	return start.Format("2006-01-02")
}

// readyAt returns when l can take a request of tok tokens, not counting
// pacing: n or earlier when it can now.
func (c *Class) readyAt(l *lane, now time.Time, n, tok int64) int64 {
	if l.probing && n < l.probeEnd {
		return l.probeEnd
	}
	if l.exhaustedUntil > n {
		return l.exhaustedUntil
	}
	if l.restUntil > n {
		return l.restUntil
	}
	c.rollDay(l, now, n)
	if l.used >= c.limits.RPD {
		return l.dayEnd
	}
	if n+c.margin >= l.dayEnd {
		// The day's last WindowMargin: a request taken now may reach the
		// API after midnight, which counts it on the next day. Held until
		// midnight instead (at most WindowMargin, once a day), so that it
		// counts on one day; a lease stamped or written late across
		// midnight is charged on both (CrossDay).
		return l.dayEnd
	}
	if at := l.schedAt(n); at > n {
		return at
	}
	l.win.expire(n)
	if l.win.live >= c.limits.RPM {
		at, _ := l.win.oldestLive()
		return at + windowNanos
	}
	if tpm := int64(c.limits.TPM); tpm > 0 {
		if l.win.tokens+tok > tpm {
			return l.win.tokensFreeAt(tok, tpm)
		}
		if d := untilTokens(l.tpm, now, float64(tok)); d > 0 {
			return n + d
		}
	}
	return n
}

func (c *Class) take(l *lane, n, tok int64, demand int) Lease {
	if c.probe && !l.proven {
		l.probing, l.probeEnd = true, n+int64(ProbeRecheck)
	}
	if d := n - l.secStart; d >= int64(time.Second) {
		l.secPrev = 0
		if d < 2*int64(time.Second) {
			l.secPrev = l.secCount
		}
		l.secStart, l.secCount = n, 0
	}
	if l.lastTake != 0 {
		d := min(n-l.lastTake, windowNanos)
		if l.gap == 0 {
			l.gap = max(d, 1)
		} else {
			l.gap += (d - l.gap) / 8
		}
	}
	l.lastTake = n
	// The lane is slow (its records follow its pace) when SlowCovers
	// requests at its recent pace take longer than ChunkLife, unless it
	// took that rate's worth in its last second or this one (a burst).
	var pace time.Duration
	if p := time.Duration(l.gap); slow(p) && max(l.secPrev, l.secCount) < fastPerSecond {
		pace = p
	}
	l.used++
	c.dayUsed++
	if c.protOK && len(l.keys) > 0 && l.used > c.sharedEff(l) {
		c.protUsed++ // max(used, shared) grew by one (see protUsed)
	}
	chunk := 0
	if l.used > l.reserved {
		// The requests of the last second plus this one; on a slow lane,
		// its demand over a longer life at its recent pace.
		want := max(l.secPrev, l.secCount) + 1
		if pace > 0 {
			w := slowWant(pace)
			if demand > 0 {
				w = min(w, demand)
			}
			want = max(want, w)
		}
		chunk = min(want, c.maxChunk, c.limits.RPD-l.reserved)
		if c.shared && l.sharedDay == l.day && c.limits.RPD-l.sharedCount < chunk {
			// No more than the cluster had left at the lane's last
			// count: a grant beyond it is refused whole.
			chunk = max(1, c.limits.RPD-l.sharedCount)
		}
		l.reserved += chunk
	}
	// A lease acquired before renewAt is stamped long before the record's
	// Until: the caller stamps it right after (its record needs no write).
	record := chunk > 0 || n >= l.renewAt || l.coverLeft <= 0
	if c.sharedTPM && tok > l.budget {
		record = true // a top-up: the record's budget has no room for tok
	}
	covers, prevTokens, budget, unused := 0, int64(0), int64(0), int64(0)
	life := int64(ChunkLife)
	if record {
		covers = l.reserved - l.used + 1
		life = int64(RecordLife(covers, pace))
		prevTokens = l.recordTokens
		l.recordTokens = 0
		l.renewAt = n + life - int64(renewLead)
		l.recSeq++
		l.coverLeft = covers
		l.sched = nil
	}
	l.coverLeft--
	if c.sharedTPM {
		if record {
			unused = max(l.budget, 0)
		}
		budget = c.spend(l, tok, record, covers, demand)
	}
	l.recordTokens += tok
	l.secCount++
	seq := l.win.push(n+c.margin, tok)
	if l.nextKey >= len(l.keys) {
		l.nextKey = 0
	}
	key := l.keys[l.nextKey]
	l.nextKey++
	return Lease{
		Class:      c.name,
		KeyID:      key,
		Project:    l.project,
		Day:        l.day,
		Tokens:     int(tok),
		Record:     record,
		Chunk:      chunk,
		Covers:     covers,
		PrevTokens: prevTokens,
		Budget:     budget,
		PrevUnused: unused,
		lane:       l,
		seq:        seq,
		rec:        l.recSeq,
		dayStart:   l.dayStart,
		dayEnd:     l.dayEnd,
		until:      n + life,
	}
}

// Stamp moves the lease's window slot to now plus the class's WindowMargin
// (never earlier than it was): call it after the lease's record is durable,
// as late as possible before the request leaves. It returns the time the
// slot counts from; the request should reach the API before it. Stamped on
// its lane's day, the lease is in flight until Landed (or CrossDay): call
// Landed once its request's write time is known, else it holds a unit of
// the next day from its day's end on (see PreCharge). Once per lease.
func (c *Class) Stamp(l Lease, now time.Time) time.Time {
	at := now.UnixNano() + c.margin
	if l.lane == nil {
		return time.Unix(0, at)
	}
	c.mu.Lock()
	ln := l.lane
	if e := ln.win.find(l.seq); e != nil && !e.dead && at > e.at {
		e.at = at
	}
	if l.dayStart == ln.dayStart && l.seq >= ln.stampedSeq {
		// In flight until it lands (see lane.flight); stamped once.
		ln.flight++
		ln.stampedSeq = l.seq + 1
	}
	c.mu.Unlock()
	return time.Unix(0, at)
}

// Restamp moves a stamped lease's window slot for a request written
// (handed to the network) late: the class's WindowMargin is split in two,
// its first half for the time from the stamp (the dispatch) to the write,
// its second half for the time from the write until the API has the
// request. So a request counts from the later of its stamp (the dispatch
// plus the margin) and its write plus half the margin (WriteMargin):
// Restamp moves the slot to wrote plus WriteMargin when that is later than
// where the slot is, and returns the time the slot counts from then and
// whether it moved. A write within the first half of the margin moves
// nothing. Call it only while the lease's request is in flight, not after
// Refund. A slot that already left the window (written more than 60 s
// after its stamp) is counted again from wrote plus WriteMargin, as a new
// entry at the end of the lane's log (or at its last entry's time, when
// that is later), with the lease's estimated tokens. Its day unit is not
// touched: a slot moved past the end of the lease's Day is charged on the
// next day by CrossDay, which the caller calls. A moved slot may leave the log out of time order: the entries
// behind it then stay counted until it leaves (later, the safe side). The
// cost is a lock; safe for concurrent use.
func (c *Class) Restamp(l Lease, wrote time.Time) (time.Time, bool) {
	at := wrote.UnixNano() + c.margin/2
	if l.lane == nil {
		return time.Unix(0, at), false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ln := l.lane
	e := ln.win.find(l.seq)
	switch {
	case e == nil:
		// Left the window: the API counts it from now on, so must we.
		if k := ln.win.n; k > 0 && ln.win.at(k-1).at > at {
			at = ln.win.at(k - 1).at
		}
		ln.win.push(at, int64(max(l.Tokens, 0)))
		return time.Unix(0, at), true
	case e.dead || at <= e.at:
		return time.Unix(0, e.at), false
	}
	e.at = at
	return time.Unix(0, at), true
}

// dayAfter is the date (store.DayFormat) of the Pacific day after the
// lane's current one.
func (c *Class) dayAfter(l *lane) string {
	return time.Unix(0, l.dayEnd).In(c.loc).Format("2006-01-02")
}

// CrossDay charges a lease whose window slot moved across the end of its
// Day: from (where the slot was; the zero Time for the acquisition's slot,
// which Acquire keeps before the day's end) is before the next Pacific
// midnight, to (where Stamp or Restamp moved it) at or after it. The
// request may then reach the API on either day, and the API counts it on
// the day it arrives, so it counts on both: the lease's unit of Day stays
// (the safe side) and one daily unit of the next day is taken, at once
// when the lane has rolled to that day (used and reserved), else kept
// until it does (the lane starts that day with it used and reserved). The
// caller records that unit durably (a store's day count of the day
// returned; reserved says it is recorded), at most once per lease: call it
// with every move of the slot (from the slot before the move), so only the
// move that crosses charges. A lease refunded afterwards gives back its
// unit of Day, not this one. It returns the next day's date
// (store.DayFormat) and true when it charged; "" and false when the slot
// did not cross, for a Lease not from Acquire, when the lane is already
// past that day, or when PreCharge charged the lease's unit of that day
// already (recorded by the caller then: nothing more to record). Daylight-saving days (23 h, 25 h) end at their own
// midnight. Safe for concurrent use.
func (c *Class) CrossDay(l Lease, from, to time.Time) (string, bool) {
	if l.lane == nil || to.UnixNano() < l.dayEnd || (!from.IsZero() && from.UnixNano() >= l.dayEnd) {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ln := l.lane
	switch {
	case ln.isPre(l):
		// PreCharge charged its unit of the next day (used there once
		// the lane rolls), and the caller recorded it: nothing more.
		ln.pre--
		ln.crossed = append(ln.crossed, crossedLease{seq: l.seq, dayEnd: l.dayEnd})
		return "", false
	case ln.dayStart == l.dayStart:
		ln.nextDay++
		if ln.flight > 0 && l.seq < ln.stampedSeq {
			ln.flight-- // charged: it holds no provisional unit at midnight
		}
	case ln.dayStart == l.dayEnd && ln.prov > 0 && l.seq < ln.provSeq:
		// In flight when the lane rolled: its provisional unit of this
		// day is confirmed (already used and reserved here).
		ln.prov--
	case ln.dayStart == l.dayEnd:
		ln.used++
		ln.reserved++
		c.protOK = false
		if ln.dayStart == c.dayStart && len(ln.keys) > 0 {
			c.dayUsed++
		}
		if ln.where == inReady && ln.used >= c.limits.RPD {
			c.park(ln, ln.dayEnd)
		}
	default:
		return "", false
	}
	ln.crossed = append(ln.crossed, crossedLease{seq: l.seq, dayEnd: l.dayEnd})
	return time.Unix(0, l.dayEnd).In(c.loc).Format("2006-01-02"), true
}

// Landed reports that the write time of the lease's request is known (the
// caller's work returned: every write of the request was reported, with
// Restamp and CrossDay, or the request never left): it is no longer in
// flight. A stamped lease of the lane's current day leaves the count of
// requests in flight; one of the day before, in flight when the lane
// rolled to its day (see Provisional) and not charged on it by CrossDay,
// gives its provisional unit of the day back: the lane may take it again.
// One PreCharge charged on the next day leaves that unit reserved there,
// not used: the lane takes it with its next request of that day.
// Call it once per stamped lease, after its last Restamp and CrossDay;
// nothing else changes (its old day's unit, its window slot). A lease not
// from Acquire, not stamped, or of an earlier day does nothing. Safe for
// concurrent use.
func (c *Class) Landed(l Lease) {
	if l.lane == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ln := l.lane
	if len(ln.crossed) > 0 {
		if i := slices.IndexFunc(ln.crossed, func(x crossedLease) bool { return x.seq == l.seq && x.dayEnd == l.dayEnd }); i >= 0 {
			ln.crossed = slices.Delete(ln.crossed, i, i+1)
			return // charged on the next day: counted neither in flight nor provisional
		}
	}
	switch {
	case ln.dayStart == l.dayStart && ln.isPre(l):
		// Its unit of the next day (PreCharge) stays reserved there,
		// not used: the lane takes it on that day.
		ln.pre--
		ln.nextFree++
	case ln.dayStart == l.dayStart:
		if ln.flight > 0 && l.seq < ln.stampedSeq {
			ln.flight--
		}
	case ln.dayStart == l.dayEnd && ln.isPre(l):
		// The same after the roll: used no more, still reserved.
		ln.pre--
		ln.used = max(ln.used-1, 0)
		c.protOK = false
		if ln.dayStart == c.dayStart && len(ln.keys) > 0 {
			c.dayUsed--
		}
		if ln.where == inWaiting {
			c.removeWaiting(ln)
			c.pushReady(ln)
		}
	case ln.dayStart == l.dayEnd && ln.prov > 0 && l.seq < ln.provSeq:
		ln.prov--
		ln.used = max(ln.used-1, 0)
		ln.reserved = max(ln.reserved-1, ln.used)
		c.protOK = false
		if ln.dayStart == c.dayStart && len(ln.keys) > 0 {
			c.dayUsed--
		}
		if ln.where == inWaiting {
			c.removeWaiting(ln)
			c.pushReady(ln)
		}
	}
}

// DayUnits is a number of daily units of a lane on a Pacific day
// (PreCharge).
type DayUnits struct {
	Project string
	Day     string // store.DayFormat
	Units   int
}

// PreCharge, called in the last WindowMargin of the lanes' day (from
// midnight less the margin, or less 1 ms when the margin is smaller, until
// midnight: the lanes take nothing then), charges the next Pacific day one
// unit per request of each lane still in flight (stamped, not Landed, not
// charged by CrossDay): its write not reported yet, it may reach the API
// after midnight. It returns those units per lane for the caller to record
// at once (a store's count of Day; a shared store's too, so that every
// process sharing the lane counts them from midnight on, not only this one:
// a provisional unit taken when the lane rolls is in its memory only). The
// lane starts the new day with them used and reserved. A lease of them that
// lands without crossing midnight (Landed) leaves its unit reserved but not
// used (the lane takes it on the new day); one that crosses (CrossDay)
// charges nothing more. Lanes whose day does not end within that time, or
// with nothing in flight, return nothing. Safe for concurrent use.
func (c *Class) PreCharge(now time.Time) []DayUnits {
	n := now.UnixNano()
	lead := max(c.margin, int64(time.Millisecond))
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []DayUnits
	for _, l := range c.lanes {
		if l.flight == 0 || n >= l.dayEnd || n+lead < l.dayEnd {
			continue
		}
		l.pre += l.flight
		l.preSeq, l.preEnd = l.stampedSeq, l.dayEnd
		l.nextDay += l.flight
		out = append(out, DayUnits{Project: l.project, Day: c.dayAfter(l), Units: l.flight})
		l.flight = 0
	}
	return out
}

// Provisional returns how many provisional units of its current day the
// project's lane holds at now: requests of the day before that were in
// flight, their write time not yet reported, when the lane rolled to it
// (see Landed, CrossDay). They count as used and reserved on the day until
// they land; 0 for no such lane.
func (c *Class) Provisional(project string, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return 0
	}
	c.roll(now, now.UnixNano())
	if l.dayStart == l.preEnd {
		return l.prov + l.pre
	}
	return l.prov
}

// WriteMargin is the part of the class's WindowMargin left for the time
// from a request's write until the API has it: half of it (see Restamp).
func (c *Class) WriteMargin() time.Duration { return time.Duration(c.margin / 2) }

// Release ends a lease whose request was sent, with the actual input tokens
// the answer reported (negative: unknown, keep the estimate). The lane's TPM
// accounting is reconciled to the actual count.
func (c *Class) Release(l Lease, now time.Time, actualTokens int) {
	if l.lane == nil || actualTokens < 0 || actualTokens == l.Tokens {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ln := l.lane
	diff := int64(actualTokens - l.Tokens)
	if e := ln.win.find(l.seq); e != nil && !e.dead {
		e.tok += diff
		ln.win.tokens += diff
	}
	if ln.tpm != nil && diff > 0 {
		// Put the limiter in debt for the tokens spent beyond the estimate.
		ln.tpm.ReserveN(now, int(min(diff, int64(c.limits.TPM))))
	}
}

// Refund returns a lease whose request never left the process: its RPM and
// TPM window slots, its tokens of the lane's TPM pacing and its daily unit
// come back. (The pacing token is not
// returned: pacing smooths, the window bounds.)
func (c *Class) Refund(l Lease, now time.Time) {
	if l.lane == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ln := l.lane
	if e := ln.win.find(l.seq); e != nil && !e.dead {
		e.dead = true
		ln.win.live--
		ln.win.tokens -= e.tok
	}
	if ln.tpm != nil && l.Tokens > 0 {
		// Its tokens back to the TPM limiter too: a lane whose grants a
		// shared token window refused (each lease refunded) would
		// otherwise drain it, and then wait for it to refill (about 15 s
		// for a quarter of TPM) once the window had room. A negative n
		// adds to the limiter's tokens; the next read caps them at its
		// burst, TPM.
		ln.tpm.AllowN(now, -l.Tokens)
	}
	if l.rec == ln.recSeq {
		ln.coverLeft++ // its record covers another request instead
	}
	if l.dayStart == ln.dayStart && ln.used > 0 {
		ln.used--
		c.protOK = false
		if l.dayStart == c.dayStart && len(ln.keys) > 0 {
			c.dayUsed--
		}
	}
	if ln.where == inWaiting {
		c.removeWaiting(ln)
		c.pushReady(ln)
	}
}

// ChunkFailed undoes the reservation of a lease's Chunk after the caller
// failed to record it durably. Call Refund as well.
func (c *Class) ChunkFailed(l Lease) {
	if l.lane == nil || !l.Record {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.dayStart == l.lane.dayStart {
		l.lane.reserved = max(l.lane.reserved-l.Chunk, l.lane.used-1)
	}
	l.lane.renewAt = 0 // the next lease records again
	l.lane.recordTokens += l.PrevTokens
	l.lane.budget = 0
}

// spend takes tok from the lane's record budget (ClassConfig.SharedTPM);
// for a new record of covers requests it sizes the budget first, for no
// more of them than demand (when > 0), and returns it (see Lease.Budget),
// else it returns 0.
func (c *Class) spend(l *lane, tok int64, record bool, covers, demand int) int64 {
	// The moving average of the tokens per request, in 1/16 tokens,
	// starting at the first request's.
	if l.avgTok == 0 {
		l.avgTok = tok << 4
	} else {
		l.avgTok += tok - l.avgTok>>4
	}
	if !record {
		l.budget -= tok
		return 0
	}
	per := (l.avgTok + 15) >> 4
	if demand > 0 {
		// Units reserved before may cover more requests than wait: a
		// budget for them would hold the shared token window, unused,
		// until its minute passes (no record after it gives it back).
		// More work later tops the budget up.
		covers = min(covers, demand)
	}
	// At most the room the lane's own TPM window has left (readyAt checked
	// that tok fits): a budget no lease could use until the window frees
	// would only be refused whole by a shared window that has room for
	// part of it (see Lease.Budget).
	b := max(tok, min(int64(c.limits.TPM)-l.win.tokens, tok+int64(covers-1)*per))
	l.budget = b - tok
	return b
}

// Budgeted records that the lease's record was granted a token budget of
// budget (a shared token window had room for part of the lease's Budget:
// store.Redis.ReserveFit): the lane's next leases under the record spend
// from what is left of budget, and one whose Tokens do not fit records
// again (a top-up). budget is at least the lease's Tokens and at most its
// Budget; a larger one changes nothing. Call it, from the caller that
// acquired the lease, before the lane's next Acquire (with Scheduled, for
// the Covers granted); it does nothing for a lease that took no record or
// whose record is no longer the lane's last.
func (c *Class) Budgeted(l Lease, budget int64) {
	if l.lane == nil || !l.Record || budget >= l.Budget {
		return
	}
	c.mu.Lock()
	if l.rec == l.lane.recSeq {
		l.lane.budget = max(0, l.lane.budget-(l.Budget-budget))
	}
	c.mu.Unlock()
}

// CoverOne records that the lease's record was granted for the lease alone
// (a shared ledger had room for one request, not Covers): the lane's next
// lease records again. Call it, from the caller that acquired the lease,
// before the lane's next Acquire.
func (c *Class) CoverOne(l Lease) {
	if l.lane == nil || !l.Record {
		return
	}
	c.mu.Lock()
	if l.rec == l.lane.recSeq {
		l.lane.coverLeft = 0
	}
	c.mu.Unlock()
}

// Scheduled records that the lease's record was granted covers requests
// (at most its Covers; fewer: the lane records again sooner) of which the
// last len(schedule) may not be taken before their times, ascending (a
// shared ledger's window promised them as older slots leave it:
// store.Redis.ReserveUpTo). Until then the lane is not ready: Acquire
// returns the next time as next, unless the lane would record again first
// (its record's renewal time passed). A refunded lease of the record gives
// its cover back as the next one to take, so the next lease waits for the
// time of the refunded cover or an earlier one. Call it, from the caller
// that acquired the lease, before the lane's next Acquire; it does nothing
// for a lease that took no record or whose record is no longer the lane's
// last. Times are compared with Acquire's now.
func (c *Class) Scheduled(l Lease, covers int, schedule []time.Time) {
	if l.lane == nil || !l.Record {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ln := l.lane
	if l.rec != ln.recSeq {
		return
	}
	if less := l.Covers - max(covers, 1); less > 0 {
		ln.coverLeft = max(0, ln.coverLeft-less)
	}
	ln.sched = ln.sched[:0]
	for _, t := range schedule {
		ln.sched = append(ln.sched, t.UnixNano())
	}
	ln.schedRec = ln.recSeq
}

// schedAt returns when the lane's next lease may be taken by its record's
// schedule (see Scheduled): 0 when it has none for that lease, or the lane
// records again at n; never after the record's renewal time, when the
// lane records again instead.
func (l *lane) schedAt(n int64) int64 {
	k := len(l.sched)
	if k == 0 || l.schedRec != l.recSeq || l.coverLeft <= 0 || l.coverLeft > k || n >= l.renewAt {
		return 0
	}
	return min(l.sched[k-l.coverLeft], l.renewAt)
}

// CoolDown keeps the project's lane of this class from serving until until (a
// per-minute 429). The same project's lanes of other classes are untouched.
// It reports whether the project has a lane here.
func (c *Class) CoolDown(project string, until time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return false
	}
	if u := until.UnixNano(); u > l.coolUntil {
		l.coolUntil = u
		c.rest(l, u)
	}
	return true
}

// Hold keeps the project's lane of this class from serving until until for
// a reason that is not a 429 (e.g. a shared ledger refused a grant: the
// cluster's window is full), in words for reports (LaneUsage.HeldReason).
// It blocks like CoolDown and costs Acquire nothing more, but Usage
// reports it as HeldUntil, not CoolUntil. A hold ending later than the
// lane's current one replaces it (end and reason); one ending earlier
// changes nothing. It reports whether the project has a lane here.
func (c *Class) Hold(project string, until time.Time, reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return false
	}
	if u := until.UnixNano(); u > l.holdUntil {
		l.holdUntil, l.holdReason = u, reason
		c.rest(l, u)
	}
	return true
}

// Unhold ends the project's lane's hold (Hold) at now when the hold has not
// ended and is for reason: what it waited for may be there sooner (a shared
// ledger's day count that other processes brought back under RPD by giving
// unused units back). The lane serves again unless a cooldown, exhaustion,
// its day or its window keeps it (Acquire checks them as always). A hold
// for another reason, or none, is left alone. It reports whether a hold
// ended. Safe for concurrent use, like every method of Class.
func (c *Class) Unhold(project, reason string, now time.Time) bool {
	n := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil || l.holdReason != reason || l.holdUntil <= n {
		return false
	}
	l.holdUntil, l.holdReason = 0, ""
	// restUntil is the later of the cooldown and the hold (rest).
	l.restUntil = l.coolUntil
	if l.where == inWaiting {
		// Ready again: Acquire parks it anew if something else keeps it.
		c.removeWaiting(l)
		c.pushReady(l)
	}
	return true
}

// rest keeps l from serving until u (CoolDown, Hold).
func (c *Class) rest(l *lane, u int64) {
	if u > l.restUntil {
		l.restUntil = u
		c.park(l, u)
	}
}

// Exhaust marks the project's lane of this class out for the day that
// contains now (a per-day 429): it serves nothing until the next Pacific
// midnight, which it returns.
func (c *Class) Exhaust(project string, now time.Time) time.Time {
	until := NextMidnight(now, c.loc)
	c.ExhaustUntil(project, until)
	return until
}

// ExhaustUntil marks the project's lane out until until (used to restore a
// persisted state). It reports whether the project has a lane here.
func (c *Class) ExhaustUntil(project string, until time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return false
	}
	if u := until.UnixNano(); u > l.exhaustedUntil {
		l.exhaustedUntil = u
		c.park(l, u)
	}
	return true
}

// Restore sets the project's daily count for day (store.DayFormat) from
// durable storage: used and reserved both become count, so the lane never
// serves more than RPD - count more that day. A count of the day after the
// one containing now (units charged on it before it began: CrossDay) is
// kept until the lane rolls to that day, which then starts with them used
// and reserved. A count never lowers what the lane has. Counts of other
// days are ignored. It reports whether the count was applied or kept.
func (c *Class) Restore(project, day string, count int, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return false
	}
	c.roll(now, now.UnixNano())
	if l.day != day {
		if day != c.dayAfter(l) {
			return false
		}
		l.nextDay = max(l.nextDay, count)
		return true
	}
	if count > l.used {
		if len(l.keys) > 0 {
			c.dayUsed += count - l.used
		}
		l.used = count
		c.protOK = false
	}
	l.reserved = max(l.reserved, l.used)
	return true
}

// RestoreWindow puts one request of the project's lane back into its window
// after a restart: at is the time it counts from (its stamp plus the margin,
// as Ledger returned it or as rebuilt on the safe side after a crash). Call
// it before any Acquire, in time order per lane. It reports whether the
// project has a lane here.
func (c *Class) RestoreWindow(project string, at time.Time, tokens int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return false
	}
	n := at.UnixNano()
	if k := l.win.n; k > 0 && l.win.at(k-1).at > n {
		n = l.win.at(k - 1).at // keep the log ordered: later is the safe side
	}
	l.win.push(n, int64(max(tokens, 0)))
	if l.where == inWaiting {
		c.removeWaiting(l)
		c.pushReady(l)
	}
	return true
}

// SlotFreesAt returns when the project's lane next has a window slot by its
// own log: when its oldest request still in the window leaves it (the
// request's stamp plus WindowMargin plus 60 s). It is the zero Time when the
// window holds nothing.
func (c *Class) SlotFreesAt(project string, now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return time.Time{}
	}
	l.win.expire(now.UnixNano())
	at, ok := l.win.oldestLive()
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, at+windowNanos).In(now.Location())
}

// Sent is one request in a lane's window: the time it counts from and its
// estimated (or reported) input tokens.
type Sent struct {
	At     time.Time
	Tokens int
}

// LaneLedger is what a lane's durable records should say at a clean stop.
type LaneLedger struct {
	Project  string
	Day      string // the Pacific day Used and Reserved are for
	Used     int    // daily units used on Day
	Reserved int    // daily units recorded on Day; Reserved - Used were never used
	Window   []Sent // the requests still in the window at now, oldest first
	// UnusedTokens is, with ClassConfig.SharedTPM, what the lane's last
	// record's Budget has left: no lease used it (0 otherwise).
	UnusedTokens int64
}

// Ledger returns, for every lane of the class, its day's used and reserved
// units and the requests in its window at now, for the caller to store at a
// clean stop (give back Reserved - Used; keep Window so the next process
// counts it). It changes nothing.
func (c *Class) Ledger(now time.Time) []LaneLedger {
	n := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roll(now, n)
	out := make([]LaneLedger, 0, len(c.lanes))
	for _, l := range c.lanes {
		c.rollDay(l, now, n)
		l.win.expire(n)
		ll := LaneLedger{Project: l.project, Day: l.day, Used: l.used, Reserved: l.reserved}
		if c.sharedTPM {
			ll.UnusedTokens = max(l.budget, 0)
		}
		for i := 0; i < l.win.n; i++ {
			if e := l.win.at(i); !e.dead {
				ll.Window = append(ll.Window, Sent{At: time.Unix(0, e.at).In(now.Location()), Tokens: int(e.tok)})
			}
		}
		out = append(out, ll)
	}
	return out
}

// park moves a lane that is ready into the waiting heap until at, or moves it
// later in the heap.
func (c *Class) park(l *lane, at int64) {
	switch l.where {
	case inReady:
		c.removeReady(l)
		l.readyAt = at
		c.pushWaiting(l)
	case inWaiting:
		if at > l.readyAt {
			l.readyAt = at
			c.fixWaiting(l)
		}
	}
}

func (c *Class) setKeyEnabled(project, keyID string, enabled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return
	}
	if l.disabled == nil {
		l.disabled = make(map[string]bool)
	}
	if enabled {
		delete(l.disabled, keyID)
	} else {
		l.disabled[keyID] = true
	}
	c.refreshKeys(l)
}

// refreshKeys recomputes the lane's usable keys after a key or the lane
// itself was enabled or disabled, and moves the lane in or out of service.
func (c *Class) refreshKeys(l *lane) {
	wasEnabled := len(l.keys) > 0
	c.protOK = false
	l.keys = l.keys[:0]
	for _, id := range l.allKeys {
		if !l.disabled[id] && l.stopped == "" {
			l.keys = append(l.keys, id)
		}
	}
	if isEnabled := len(l.keys) > 0; isEnabled != wasEnabled && l.dayStart == c.dayStart {
		sign := 1
		if !isEnabled {
			sign = -1
		}
		c.dayUsed += sign * l.used
		c.dayLimit += sign * c.limits.RPD
	}
	switch {
	case len(l.keys) == 0 && l.where == inReady:
		c.removeReady(l)
	case len(l.keys) == 0 && l.where == inWaiting:
		c.removeWaiting(l)
	case len(l.keys) > 0 && l.where == inNone:
		c.pushReady(l)
	}
}

// Settled reports that the request of lease l got its answer (or was never
// sent) and that its outcome has been applied (a cooldown, a stop, a
// disabled key): with ClassConfig.Probe, a lane whose probe it was may
// send again, and one whose request succeeded (ok) is proven and no longer
// probes. Without Probe it does nothing. Call it once per lease, after
// Release or Refund, with the current time.
func (c *Class) Settled(l Lease, ok bool, now time.Time) {
	if !c.probe || l.lane == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ln := l.lane
	if ok {
		ln.proven = true
	}
	if !ln.probing {
		return
	}
	ln.probing = false
	if ln.where == inWaiting {
		// Look at it again now: promote moves it to the ready ring when
		// nothing else holds it.
		ln.readyAt = min(ln.readyAt, now.UnixNano())
		c.fixWaiting(ln)
	}
}

// Stop takes the project's lane of this class out of service with a reason
// (e.g. the project has no quota on the class's model): it serves nothing,
// and counts in no class total, until Resume. Its keys stay enabled on the
// other classes. Stopping a stopped lane updates the reason; an empty reason
// reads "stopped". It reports whether the project has a lane here.
func (c *Class) Stop(project, reason string) bool {
	if reason == "" {
		reason = "stopped"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return false
	}
	l.stopped = reason
	c.refreshKeys(l)
	return true
}

// Resume puts a stopped lane back into service (with the keys that are
// enabled). It reports whether the project has a lane here.
func (c *Class) Resume(project string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return false
	}
	if l.stopped != "" {
		l.stopped = ""
		c.refreshKeys(l)
	}
	return true
}

// ClassUsage is a snapshot of a class's quota use.
type ClassUsage struct {
	Class  string
	Limits Limits // per project
	Day    string // the Pacific day the counts are for
	Used   int    // daily units used today over enabled lanes
	Limit  int    // summed RPD of enabled lanes
	// Remaining is what the class can still send today: over its enabled
	// lanes not exhausted (ExhaustUntil) at now, each lane's RPD less its
	// day used, never negative; once SharedDay was called, less the
	// larger of its own use and its shared day count of today (the
	// cluster's remaining, as SharedUsed counts it).
	Remaining int
	RPMLimit  int  // summed RPM of enabled lanes
	Critical  bool // SharedUsed >= Critical fraction of Limit
	// SharedUsed is the day use daily protection counts: Used, or, once
	// SharedDay was called, the sum over enabled lanes of the larger of
	// each one's own use and its shared day count.
	SharedUsed int
	Lanes      []LaneUsage
}

// LaneUsage is a snapshot of one lane.
type LaneUsage struct {
	Project      string
	Keys         []string // enabled key ids
	DisabledKeys []string
	Stopped      string // why the lane is stopped (Stop); "" when not
	Enabled      bool   // not stopped and some key of the project is enabled
	RPMUsed      int    // acquisitions in the last 60 s
	TPMUsed      int    // estimated (reconciled) tokens in the last 60 s
	DayUsed      int
	Reserved     int       // daily units durably recorded
	CoolUntil    time.Time // cooling down after a 429 (CoolDown) until then; zero when not
	// HeldUntil is when a lane held for a reason that is not a 429 (Hold)
	// may serve again, HeldReason that reason; zero and "" when not held.
	HeldUntil      time.Time
	HeldReason     string
	ExhaustedUntil time.Time

	// SharedUsed is the lane's day use as daily protection counts it:
	// DayUsed, or, once SharedDay was called, the larger of DayUsed and
	// the lane's shared day count of today (all the processes' use).
	SharedUsed int
}

// Usage returns the class's use at now.
func (c *Class) Usage(now time.Time) ClassUsage {
	n := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	u := ClassUsage{Class: c.name, Limits: c.limits, Day: Day(now, c.loc)}
	c.roll(now, n)
	for _, l := range c.lanes {
		l.win.expire(n)
		lu := LaneUsage{
			Project:  l.project,
			Stopped:  l.stopped,
			Enabled:  len(l.keys) > 0,
			RPMUsed:  l.win.live,
			TPMUsed:  int(l.win.tokens),
			DayUsed:  l.used,
			Reserved: l.reserved,
		}
		lu.SharedUsed = c.protectedLaneUsed(l)
		for _, id := range l.allKeys {
			if l.disabled[id] {
				lu.DisabledKeys = append(lu.DisabledKeys, id)
			} else {
				lu.Keys = append(lu.Keys, id)
			}
		}
		if l.coolUntil > n {
			lu.CoolUntil = time.Unix(0, l.coolUntil).In(now.Location())
		}
		if l.holdUntil > n {
			lu.HeldUntil, lu.HeldReason = time.Unix(0, l.holdUntil).In(now.Location()), l.holdReason
		}
		if l.exhaustedUntil > n {
			lu.ExhaustedUntil = time.Unix(0, l.exhaustedUntil).In(now.Location())
		}
		if lu.Enabled {
			u.Used += l.used
			u.Limit += c.limits.RPD
			u.RPMLimit += c.limits.RPM
			if l.exhaustedUntil <= n {
				u.Remaining += max(0, c.limits.RPD-c.protectedLaneUsed(l))
			}
		}
		u.Lanes = append(u.Lanes, lu)
	}
	sort.Slice(u.Lanes, func(i, j int) bool { return u.Lanes[i].Project < u.Lanes[j].Project })
	u.SharedUsed = c.protectedUsedLocked()
	u.Critical = c.criticalLocked()
	return u
}

// RPMLimit returns the summed RPM of the class's enabled lanes.
func (c *Class) RPMLimit(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roll(now, now.UnixNano())
	return c.dayLimit / c.limits.RPD * c.limits.RPM
}

// Critical reports whether the class has used at least the configured
// fraction (default 90 %) of its enabled lanes' summed daily limits: its
// own use, or with SharedDay the use of all the processes sharing them.
func (c *Class) Critical(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roll(now, now.UnixNano())
	return c.criticalLocked()
}

func (c *Class) criticalLocked() bool {
	return c.dayLimit > 0 && float64(c.protectedUsedLocked()) >= c.critical*float64(c.dayLimit)
}

// protectedUsedLocked is the day use daily protection counts: the class's
// own (O(1)), or, once SharedDay was called, the sum over enabled lanes of
// the larger of each lane's own use and its shared day count of today
// (O(lanes)).
func (c *Class) protectedUsedLocked() int {
	if !c.shared {
		return c.dayUsed
	}
	if c.protOK {
		return c.protUsed
	}
	n := 0
	for _, l := range c.lanes {
		if len(l.keys) == 0 {
			continue
		}
		n += c.protectedLaneUsed(l)
	}
	c.protUsed, c.protOK = n, true
	return n
}

// sharedEff is the lane's shared day count that protectedLaneUsed counts:
// 0 unless SharedDay gave one for the lane's current day.
func (c *Class) sharedEff(l *lane) int {
	if c.shared && l.sharedDay == l.day {
		return l.sharedCount
	}
	return 0
}

// protectedLaneUsed is the lane's day use daily protection counts: its own,
// or once SharedDay was called the larger of its own and its shared count
// of today.
func (c *Class) protectedLaneUsed(l *lane) int {
	u := l.used
	if c.shared && l.sharedDay == l.day && l.sharedCount > u {
		u = l.sharedCount
	}
	return u
}

// SharedDay records the day count of the project's lane for day as every
// process sharing the lane's quota sees it (a shared ledger's grant or
// read: package store's Redis). From then on daily protection (Critical,
// and ClassUsage's Critical and SharedUsed) counts, for each enabled lane,
// the larger of its own use and its shared count of the current day. The
// latest count wins, lower or higher (other processes give unused units
// back); a count of another day than the lane's current one is kept only
// if that day comes. It reports whether the project has a lane here.
func (c *Class) SharedDay(project, day string, count int, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byProj[project]
	if l == nil {
		return false
	}
	c.sharedDayLocked(l, day, count, now)
	return true
}

// SharedDayOf is SharedDay for the lane of l, a lease of this class (its
// record's grant returns the count): the same, without finding the lane by
// its project. A zero Lease is ignored. Safe for concurrent use.
func (c *Class) SharedDayOf(l Lease, day string, count int, now time.Time) {
	if l.lane == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sharedDayLocked(l.lane, day, count, now)
}

// sharedDayLocked is SharedDay for lane l. Call it with c.mu held.
func (c *Class) sharedDayLocked(l *lane, day string, count int, now time.Time) {
	c.roll(now, now.UnixNano())
	if day < l.day {
		return // an older day's count: nothing to protect any more
	}
	if !c.shared {
		c.shared, c.protOK = true, false // protUsed was not kept: sum once
	}
	// Only this lane's term of daily protection's sum changes: keep the
	// sum up to date instead of summing every lane again at the next read
	// (a shared ledger calls this after each record).
	before := c.protectedLaneUsed(l)
	l.sharedCount, l.sharedDay = max(count, 0), day
	if c.protOK && len(l.keys) > 0 {
		c.protUsed += c.protectedLaneUsed(l) - before
	}
}

func (c *Class) String() string { return fmt.Sprintf("bucket.Class(%s)", c.name) }
