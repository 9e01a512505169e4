package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClass is the per-project limits of one model class as the Redis
// ledger enforces them across processes.
type RedisClass struct {
	Name string
	RPM  int // requests per sliding 60 s window, all processes together
	RPD  int // requests per Pacific day, all processes together
	// TPM is the input tokens per sliding 60 s window, all processes
	// together, by the grants' token budgets (Record.Tokens) and the
	// overruns reported (Overran); 0: not enforced.
	TPM int
	// Margin is the class's window margin (scheduler.ClassConfig's
	// WindowMargin): a slot counts in the shared window from the grant's
	// expiry plus Margin.
	Margin time.Duration
}

// RedisOptions configure a Redis ledger.
type RedisOptions struct {
	// Client is the connection to Redis (required). The caller closes it
	// after the ledger.
	Client *redis.Client
	// ViewClient, when set, is the client Usage reads the cluster's view
	// through; default Client. The caller closes it after the ledger. One
	// that does not retry (MaxRetries -1, DialerRetries 1) makes the view of
	// a Redis refusing connections fail at once, where go-redis's defaults
	// (each dial tried 5 times 100 ms apart, the command 4 times) take about
	// 1.6 s, past scheduler.ClusterTimeout.
	ViewClient *redis.Client
	// Cluster prefixes every Redis key (required): processes with the same
	// Cluster on the same Redis share their quota.
	Cluster string
	// Process names this process in the cluster's usage (Usage, the use
	// per process), limit conflicts and charges. Default: host name, pid
	// and a random suffix. A stable name (a host name) may be given again
	// to each life of the process: in Redis, every life's heartbeat,
	// limits registration and grants are named after Process plus a
	// random suffix drawn at each OpenRedis, so a process restarted under
	// the name of a killed one overwrites none of that one's grants still
	// in the shared window, and the killed life is counted alive until its
	// heartbeat expires (and presumed dead after an outage) as any other.
	// Give each running process its own name: the per-process use of two
	// processes of one name is shown as one.
	Process string
	// Classes are the model classes and their limits (at least one).
	Classes []RedisClass
	// Projects are the projects whose lanes this process uses: their limits
	// are registered (see ErrLimitsConflict) and their state read at start.
	Projects []string
	// HeartbeatTTL is how long a heartbeat keeps this process counted
	// alive. Default 15s; call Heartbeat more often (every TTL/3).
	HeartbeatTTL time.Duration
	// Location is the time zone of the quota day. Default America/Los_Angeles.
	Location *time.Location
	// Now, when set, is the clock sent to the scripts instead of Redis's
	// TIME (tests drive a virtual clock with it). Default nil: Redis's clock,
	// so the processes' clocks need not agree.
	Now func() time.Time
}

// Local is what a Redis ledger keeps in the process's own durable store: the
// jobs, and its own write-ahead records and counts (Bolt and Memory).
type Local interface {
	Store
	Ledger
}

// Sentinel errors of the Redis ledger.
var (
	// ErrNoGrant: Redis refused a grant; the error is a *GrantError saying
	// why and until when.
	ErrNoGrant = errors.New("store: redis: no grant")
	// ErrUnavailable: Redis could not be reached or answered with an error.
	ErrUnavailable = errors.New("store: redis: unavailable")
	// ErrLimitsConflict: another live process of the cluster uses other
	// limits for a lane.
	ErrLimitsConflict = errors.New("store: redis: limits differ between processes")
)

// GrantError is a refused grant. Until is when to ask again, on this
// process's clock: when the lane may be granted again, or, for Reason
// "window", earlier when another process's grant may give slots back
// before then (see Stamped); the zero Time for Reason "day" (the next
// Pacific midnight, which the caller knows).
type GrantError struct {
	Lane   LaneID
	Reason string // "window" (the shared window is full), "tpm" (the shared TPM window has no room for Record.Tokens), "day" (RPD reached), "cool", "exhausted", "share" (Redis unreachable, or recovering after it answers again: this process's share is used, or it has none: NoShare; see Unreachable)
	Until  time.Time
	Day    int // the lane's shared day count (Reason "day")
	// Confirming (Reason "share"): Redis did not answer a call less than
	// the grace ago (a heartbeat interval and a second): this process
	// tries it again and takes no share yet (see Unreachable).
	Confirming bool
	// Joining (Reason "share"): the refusal is the hold of a process that
	// joined the cluster (see Redis.Joining), and Until is the hold's end,
	// as the store saw it when it refused; the hold may have been released
	// since (Joining then reads false).
	Joining bool
	// NoShare (Reason "share"): this process has taken nothing of the
	// refused share on the lane (no window slot, or for a day refusal no
	// day unit, since the outage began): it has no share before Until,
	// not a share it used. While recovering after Redis answers again,
	// Until is then the recovery's end or the earlier time the share
	// grows (a slot of the last view leaves the window).
	NoShare bool
}

func (e *GrantError) Error() string {
	if e.Reason == "day" {
		return fmt.Sprintf("store: redis: no grant on lane %s: day count %d at its limit", e.Lane, e.Day)
	}
	if e.Confirming {
		return fmt.Sprintf("store: redis: no grant on lane %s: share (Redis unreachable: confirming) until %s", e.Lane, e.Until.Format(time.RFC3339Nano))
	}
	return fmt.Sprintf("store: redis: no grant on lane %s: %s until %s", e.Lane, e.Reason, e.Until.Format(time.RFC3339Nano))
}

func (e *GrantError) Unwrap() error { return ErrNoGrant }

// SharedEvent is what one process tells the others through Redis's pub/sub:
// a lane cooling down or exhausted, stopped (its project has no quota on
// the class's model: Reason and Config as in LaneState) or resumed by an
// operator, a key disabled or enabled again. A receiver ignores the kinds
// it does not know (processes of an older version ignore "stopped" and
// "resumed").
type SharedEvent struct {
	Process string    `json:"process"`
	Kind    string    `json:"kind"` // "cool", "exhausted", "stopped", "resumed", "disabled", "enabled"
	Lane    LaneID    `json:"lane,omitzero"`
	KeyID   string    `json:"key,omitempty"`
	Until   time.Time `json:"until,omitzero"`
	Reason  string    `json:"reason,omitempty"`
	Config  string    `json:"config,omitempty"` // "stopped": the configuration the lane was stopped under
	// At is when the change was made, on its author's clock ("disabled",
	// "enabled", "stopped", "resumed"; a re-read "disabled": the key's
	// disabled time); zero when unknown (older processes, other kinds).
	At time.Time `json:"at,omitzero"`
	// LocalErr is the error of writing the change to this process's Local
	// store (Watch does before it reports it); nil when written. Not sent.
	LocalErr error `json:"-"`
}

// Redis is the shared quota ledger: a Local store (the process's own jobs,
// records and counts) plus the quota state every process of a cluster
// shares through one Redis: each lane's window of grants, its day count per
// Pacific day, cooldowns, exhaustion, stops (LaneState.Stopped, until
// ResumeLane) and disabled keys.
//
// # Grants
//
// Reserve is a grant, as in YouTube's Doorman: one atomic script takes the
// record's Covers window slots and Units day units of the lane, or refuses
// with a *GrantError (the shared window full until some time, the day at
// RPD, the lane cooling or exhausted). A granted slot is stored in the
// shared window as sent at the latest moment it may be sent, the grant's
// expiry (Record.Until - Record.At after Redis's now) plus the class's
// margin; so, whatever the processes do with their grants, no interval of
// 60 s plus the margin holds more sends than RPM, and no Pacific day more
// than RPD. The grant is then recorded in the Local store (write-ahead).
// ReserveUpTo may grant a record fewer Covers, or some of them scheduled
// (not sent before slots of the window leave it), when the window has room
// for some requests but not for its Covers (see redis_giveback.go,
// "Scheduled slots").
//
// On a fast lane (one that records again within its records' life, at most
// 2 s, in a class without TPM) the ledger takes the lane's next grant in
// the background once a record is granted, and serves the lane's next
// record from it without a round trip; one that does not fit is given back
// (see the file redis_prefetch.go). So a process killed with grants in hand
// over-counts the day by at most two grants per fast lane (the unused
// units of the grant in use and the units taken ahead; each at most
// bucket.MaxChunk units with bucket's records) and one grant (its Units)
// per other lane; its unused slots free themselves once their minute
// passes.
//
// Once a grant is over (its lane's next grant, its lane idle, or Settle),
// the slots it covered and the process did not use leave the shared window
// and the used ones move to when they were stamped: the caller tells the
// ledger of every lease it stamps (Stamped). See Stamped and the file
// redis_giveback.go for why the bound still holds.
//
// With TPM (RedisClass.TPM > 0) the same script also takes the record's
// token budget (Record.Tokens) from the lane's shared TPM window, scored as
// its slots, or refuses the grant whole with Reason "tpm"; actual counts
// above the estimates, reported with Overran, are added to this process's
// latest grant there by its next grant (see redis_tokens.go).
//
// # Redis restarted empty
//
// Every script checks the cluster's epoch, a random value Redis holds. When
// Redis lost it, the next call that notices (a grant or a Heartbeat, whose
// script checks it: within one heartbeat) re-seeds: the first process to notice
// creates a new epoch, and each live process adds its own Local day counts
// of today (never below what it sent) and the window slots of its grants
// of the last two minutes, with each process's part of the day as its
// last view read it (alive or not) and the last shared count it saw (from
// its grants and its views); per lane the count is the sum of the
// processes' parts (each the larger of its own count and its part in the
// views), or the last count seen when larger (see seedScript). It also
// puts back the
// disabled keys and lane stops it last saw (seedView), and its next
// Heartbeat registers its limits again. Then its grants stay within its
// share of its last view, as after an outage, until every slot granted
// before may have left the window (see newEpoch and recoveryEnd): the view
// holds the slots of processes no longer alive, which no re-seed puts
// back; a process that joins meanwhile takes no grant until then
// (joinRecovery). A process not running at that moment adds its Local day
// counts and window slots when it starts (see seedScript and startSlots):
// its Local store records the epoch its counts were last added to
// (Bolt.SharedEpoch), so it adds nothing when Redis kept its state, and
// one that finds Redis empty with such a record begins the recovery
// itself. The use of a process that does not start again is lost beyond
// its part in the others' views: run Redis with persistence (see the
// README).
//
// # Redis unreachable
//
// When a call to Redis fails, Reserve grants nothing for a grace (a
// heartbeat interval and a second: Redis may still answer the other
// processes), refusing with a *GrantError of Reason "share" and
// Confirming, and tries Redis again at most once a second; when Redis
// still does not answer, Reserve grants from this process's safe share
// of each lane, computed from the view of the cluster its last Heartbeat
// read (the live processes, each lane's day count and when its window's
// slots leave it), and refuses with a *GrantError of Reason "share" beyond
// it; no call waits on Redis meanwhile but those retries (each bounded to
// a second). The next Heartbeat that reaches
// Redis adds those grants to the shared state (or re-seeds it), and for one
// HeartbeatTTL grants still stay within the share. Health and Unreachable
// report the outage, Outages counts them. The bound holds when Redis is
// unreachable for every process alike; see the README for the details.
// A process that joins while another may still be about to reach Redis
// from an outage (its heartbeat overdue) or recovers from one takes no
// grant until their share's grants may be in Redis (Joining;
// redis_join.go).
// Keys disabled or enabled and lanes stopped or resumed meanwhile are
// stored in the Local store and kept pending (ErrPending), then pushed to
// Redis in order by that Heartbeat, the last change by time winning a
// conflict (see Pending and redis_pending.go).
//
// A Redis is safe for concurrent use. Its zero value is not usable: build it
// with OpenRedis.
type Redis struct {
	Local
	rdb     *redis.Client
	view    *redis.Client // Usage's client: RedisOptions.ViewClient, else rdb
	prefix  string
	process string // RedisOptions.Process: the name shown (usage, logs)
	// id names this life of the process in Redis: process, "~" and a
	// random suffix drawn at each OpenRedis (lifeID). Its heartbeat, limits
	// registration, reconciled and charge marks, and every window member
	// and token entry it writes are named after it, so a process restarted
	// under the name of a killed one writes nothing over the killed life's
	// grants, nor passes for it (see displayName).
	id      string
	classes map[string]RedisClass
	lanes   []LaneID
	ttl     time.Duration
	window  time.Duration // 60 s; shorter in this package's tests
	loc     *time.Location
	now     func() time.Time

	seq      atomic.Uint64
	live     atomic.Int64
	reserved atomic.Bool // a Reserve or ReserveUpTo was called (see Abandon)

	cluster string     // RedisOptions.Cluster
	joinMu  sync.Mutex // serializes join
	// flightMu: a grant script call holds it for reading from before it
	// is sent until its reply is noted (the count seen, the grant among
	// grants), join for writing before it reads them: a grant Redis made
	// just before it lost its state, whose reply was still on its way as
	// a heartbeat found the epoch gone, is in the re-seed.
	flightMu sync.RWMutex
	// joinHook, when set (tests), is called as join is about to wait for
	// the grants in flight (flightMu).
	joinHook func()

	mu     sync.Mutex
	epoch  string
	seen   map[dayLane]int        // last shared count seen per lane and day (noteSeen)
	grants map[LaneID][]sentGrant // own grants, for re-seeding the window
	tok    map[LaneID]*laneTokens // own part of the TPM windows (redis_tokens.go)

	// seenAt is when Redis held each count of seen (its clock, ms).
	seenAt map[dayLane]int64
	// prevNames are the names of the lives before this one on the Local
	// store (lifeRecorder; SharedLife.Prev), newest first, this process's
	// own excluded: their units are in the own counts a re-seed adds
	// (seedScript). Set as it joins at start.
	prevNames []string

	// localMu serializes the Local lane state's writes: SetLaneState's
	// and those of the changes the cluster made (keepLocal, agreeLocal).
	localMu sync.Mutex

	stampMu   sync.Mutex
	cur       map[LaneID]*laneStamps  // each lane's place for its last grant from Redis and its stamps (see Stamped)
	stampIdx  *[stampSlots]laneStamps // most of cur's entries, by their strings (stampsOf)
	stampIdxN int                     // entries in stampIdx, with stampMu
	floor     map[LaneID]int64        // each lane's latest stamp of a grant no longer in cur (local ms; see Restamped)

	keysMu sync.Mutex
	gkeys  map[LaneID]*grantKeys // the grant script's keys per lane (see grantKeysOf)

	f    faultState // Redis unreachable: see redis_fault.go
	pf   aheadState // grants taken ahead: see redis_prefetch.go
	beat beatState  // heartbeats carried by grants: see redis_beat.go
}

type dayLane struct {
	day  string
	lane LaneID
}

type sentGrant struct {
	score  int64 // Redis ms
	member string
	covers int
	tokens int64 // its entry in the TPM window; -1: none (a class without TPM)
}

// OpenRedis joins the cluster: the limits of every lane checked (refused
// with ErrLimitsConflict while a live process uses others, before this
// process's first heartbeat: a refused process is never counted alive), a
// heartbeat, the limits registered (checked again: two processes starting
// at once), the
// epoch (re-seeding an empty Redis), and the keys disabled and lanes stopped
// in the Local store only (see publishLocal); then it writes to the Local
// store what the cluster changed meanwhile (agreeLocal: keys enabled or
// disabled, lanes resumed or stopped, cooldowns and exhaustion, so that
// a later join does not share again what the cluster superseded). The
// returned ledger uses local for
// everything that is not shared; closing it closes local. When it fails
// after its heartbeat, it removes this process from the live processes
// and its limits registration first (Abandon; best-effort, within a
// second), so a start that failed leaves nothing counted.
func OpenRedis(ctx context.Context, local Local, o RedisOptions) (*Redis, error) {
	if o.Client == nil {
		return nil, fmt.Errorf("%w: RedisOptions.Client: nil", ErrInvalid)
	}
	if err := checkID("RedisOptions.Cluster", o.Cluster); err != nil {
		return nil, err
	}
	if len(o.Classes) == 0 {
		return nil, fmt.Errorf("%w: RedisOptions.Classes: none", ErrInvalid)
	}
	s := &Redis{Local: local, rdb: o.Client, prefix: o.Cluster + ":", cluster: o.Cluster, process: o.Process,
		classes: make(map[string]RedisClass), ttl: o.HeartbeatTTL, window: time.Minute, loc: o.Location, now: o.Now,
		seen: make(map[dayLane]int), grants: make(map[LaneID][]sentGrant), cur: make(map[LaneID]*laneStamps), stampIdx: new([stampSlots]laneStamps),
		gkeys: make(map[LaneID]*grantKeys), view: o.ViewClient}
	if s.view == nil {
		s.view = o.Client
	}
	for i, c := range o.Classes {
		if err := checkID(fmt.Sprintf("RedisOptions.Classes[%d].Name", i), c.Name); err != nil {
			return nil, err
		}
		if c.RPM <= 0 || c.RPD <= 0 || c.Margin < 0 || c.TPM < 0 {
			return nil, fmt.Errorf("%w: RedisOptions.Classes[%d] (%s): rpm %d, rpd %d, tpm %d, margin %v: want rpm, rpd > 0, tpm >= 0 and margin >= 0", ErrInvalid, i, c.Name, c.RPM, c.RPD, c.TPM, c.Margin)
		}
		s.classes[c.Name] = c
	}
	for _, p := range o.Projects {
		for _, c := range o.Classes {
			l := LaneID{Project: p, Class: c.Name}
			if err := checkLane(l); err != nil {
				return nil, err
			}
			s.lanes = append(s.lanes, l)
		}
	}
	if s.ttl <= 0 {
		s.ttl = 15 * time.Second
	}
	if s.loc == nil {
		s.loc = pacific
		if s.loc == nil {
			return nil, fmt.Errorf("%w: RedisOptions.Location: America/Los_Angeles not found (import time/tzdata)", ErrInvalid)
		}
	}
	if s.process == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		s.process = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	s.id = lifeID(s.process)
	s.f.resync = make(chan struct{}, 1)
	s.f.minLife, s.f.gran, s.f.opTimeout = maxGrantLife, 1000, opTimeout
	s.pf.init()
	opened, beaten := false, false
	defer func() {
		if !opened {
			s.pf.cancel()
		}
		if !opened && beaten {
			// A start that failed leaves nothing counted alive
			// (redis_abandon.go).
			s.abandon(ctx)
		}
	}()
	// A conflict refuses before the heartbeat: the refused process is
	// never in the live processes, nor in any view. register checks again
	// after it, for two processes starting at once.
	if err := s.register(ctx, true); err != nil {
		return nil, err
	}
	// Before the first heartbeat, which prunes the expired ones: a
	// process that missed a beat may be about to reach Redis from an
	// outage; the recovering key holds the processes joining after this
	// heartbeat, also when this start fails (redis_join.go).
	overdue, err := s.overdueBeats(ctx)
	if err != nil {
		return nil, err
	}
	var holdEnd int64
	if len(overdue) > 0 {
		if holdEnd, err = s.holdJoinersEnd(ctx, s.joinWait()); err != nil {
			return nil, err
		}
	}
	// Set before the call: a heartbeat whose script ran but whose reply
	// was lost (a timeout, a dropped connection) counts this process
	// alive all the same, so a failure removes it too.
	beaten = true
	if _, err := s.Heartbeat(ctx); err != nil {
		return nil, err
	}
	if err := s.register(ctx, false); err != nil {
		return nil, err
	}
	if err := s.join(ctx); err != nil {
		return nil, err
	}
	// The previous life on this data directory's dead charge, replaced by
	// what it took (redis_dead.go).
	if err := s.fixDead(ctx); err != nil {
		return nil, err
	}
	s.f.mu.Lock()
	s.f.joined, s.f.rejoin = s.localNow(), false
	s.f.mu.Unlock()
	if err := s.joinRecovery(ctx); err != nil {
		return nil, err
	}
	s.joinOverdue(overdue, holdEnd)
	if err := s.publishLocal(ctx); err != nil {
		return nil, err
	}
	if err := s.publishKept(ctx); err != nil {
		return nil, err
	}
	if err := s.agreeLocal(ctx); err != nil {
		return nil, err
	}
	if err := s.readView(ctx); err != nil {
		return nil, err
	}
	opened = true
	return s, nil
}

var pacific, _ = time.LoadLocation("America/Los_Angeles")

// Process returns the name of this process in the cluster
// (RedisOptions.Process, or the default), as usage and logs show it.
func (s *Redis) Process() string { return s.process }

// lifeSep separates a process's name from its life's suffix in Redis.
const lifeSep = '~'

// lifeID returns the name of a new life of process in Redis: process,
// lifeSep and 8 random hex digits.
func lifeID(process string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return process + string(lifeSep) + hex.EncodeToString(b[:])
}

// displayName returns the process name of id, a life's name in Redis
// (lifeID), for usage and logs: id without its life's suffix; id itself
// when it has none (written by an older slideshowd, or by a test).
func displayName(id string) string {
	i := strings.LastIndexByte(id, lifeSep)
	if i < 0 || len(id)-i != 9 {
		return id
	}
	for _, c := range id[i+1:] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return id
		}
	}
	return id[:i]
}

// Live returns how many processes were alive at the last heartbeat (this
// one included; at least 1).
func (s *Redis) Live() int { return max(1, int(s.live.Load())) }

func (s *Redis) key(parts ...string) string {
	k := s.prefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

// redisLane spells a lane unambiguously (ids may hold ':').
func redisLane(l LaneID) string {
	return strconv.Itoa(len(l.Project)) + ":" + l.Project + "/" + l.Class
}

// grantKeys is the grant script's KEYS for a lane on a Pacific day.
type grantKeys struct {
	day  string
	keys []string
}

// grantKeysOf returns the grant script's KEYS for lane on day, built once
// per lane and day (the grant path's names are the same for every grant of
// a lane: building them is most of a grant's allocations). The slice is
// shared: callers only read it.
func (s *Redis) grantKeysOf(lane LaneID, day string) []string {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if k := s.gkeys[lane]; k != nil && k.day == day {
		return k.keys
	}
	k := &grantKeys{day: day, keys: []string{s.epochKey(), s.winKey(lane), s.dayKey(day, lane), s.stateKey(lane), s.useKey(day, lane),
		s.procsKey(), s.keysVersionKey(), s.tokKey(lane), s.winCountKey(lane)}}
	s.gkeys[lane] = k
	return k.keys
}

func (s *Redis) epochKey() string         { return s.key("epoch") }
func (s *Redis) procsKey() string         { return s.key("procs") }
func (s *Redis) winKey(l LaneID) string   { return s.key("win", redisLane(l)) }
func (s *Redis) stateKey(l LaneID) string { return s.key("lane", redisLane(l)) }
func (s *Redis) dayKey(d string, l LaneID) string {
	return s.key("day", d, redisLane(l))
}
func (s *Redis) useKey(d string, l LaneID) string {
	return s.key("use", d, redisLane(l))
}
func (s *Redis) disabledKey() string { return s.key("disabled") }
func (s *Redis) channel() string     { return s.key("events") }

// keysVersionKey counts the changes of disabledKey: a grant returns it, so
// a process that missed an event re-reads the disabled keys.
func (s *Redis) keysVersionKey() string { return s.key("disabledv") }

const dayKeyTTL = 3 * 24 * 3600 // seconds: a Pacific day plus history for usage

func (s *Redis) clock() int64 {
	if s.now == nil {
		return 0
	}
	return s.now().UnixMilli()
}

// sentClock returns t0, the local time a call is made at, on the scripts'
// clock and as early as it may be there: t0 itself with RedisOptions.Now,
// else t0 less the largest offset of the last view (local minus Redis's
// TIME); 0 (none: the script takes its now) before the first view. A
// script that counts liveness from it (the heartbeat's, the reconciled
// mark's) counts nothing later than the call was made, whenever Redis
// runs it: one written to the socket before this process took it for
// failed (and went down) and delivered after a partition heals cannot
// count the process alive after it went down (redis_join.go).
func (s *Redis) sentClock(t0 time.Time) int64 {
	if s.now != nil {
		return t0.UnixMilli()
	}
	s.f.mu.Lock()
	v := s.f.view
	s.f.mu.Unlock()
	if v == nil {
		return 0
	}
	return t0.UnixMilli() - v.offMax
}

func unavailable(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		return err // already said (not "unavailable: unavailable: ...")
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// Heartbeat records this process alive for HeartbeatTTL and returns how many
// processes of the cluster are alive. It also keeps the view of the cluster
// that the safe share of an outage comes from, with the lanes' shared day
// counts (ViewedDaily); it marks Redis unreachable when it does not answer,
// and reconciles when it answers again (see Health). It renews this
// process's limits registration (see LimitsConflict), and re-seeds when
// Redis lost the cluster's epoch (see Redis, "Redis restarted empty").
//
// While Redis answers and kept its state, a Heartbeat is one round trip
// (one script does all of the above), plus one per lane whose token
// overruns are not in Redis yet and one for the lanes whose last grant has
// been over for HeartbeatTTL/3 (their unused slots given back), when there
// are such lanes. See Beat for a heartbeat that grants carry.
func (s *Redis) Heartbeat(ctx context.Context) (int, error) {
	return s.heartbeat(ctx, 0)
}

// heartbeat is Heartbeat; with fresh > 0 it skips the script when a grant
// carried one within fresh and Redis is not unreachable (see Beat).
func (s *Redis) heartbeat(ctx context.Context, fresh time.Duration) (int, error) {
	var n int
	var err error
	if fresh > 0 && !s.Unreachable() && s.rode(fresh) {
		n = s.Live()
	} else {
		var opening bool
		if s.Unreachable() {
			// Before the script prunes the others' overdue heartbeats,
			// which would let a process joining take grants before this
			// one reconciled (redis_join.go).
			err = s.markBack(ctx)
		}
		if err == nil {
			n, opening, err = s.beatScript(ctx)
			if opening {
				return n, unavailable(err)
			}
		}
	}
	if err == nil {
		// Overruns reach the shared TPM window within a heartbeat,
		// also on a lane that makes no grant; a failure keeps them
		// for the next grant or heartbeat.
		_ = s.flushTokens(ctx)
		// Grants over with no grant after them (idle lanes): their
		// unused slots are given back (a failure only keeps them).
		_ = s.settleGrants(ctx, s.localNow(), false)
		// Grants taken ahead of idle lanes, or of another day or
		// epoch, are given back (redis_prefetch.go).
		s.dropIdle(s.localNow())
		_ = s.flushBack(ctx)
		// Processes presumed dead after an outage, at the recovery's
		// end (redis_dead.go).
		err = s.chargeDead(ctx)
		if err == nil {
			// Held as it joined: released early once the overdue
			// heartbeats beat again (redis_join.go).
			err = s.releaseJoin(ctx)
		}
	}
	if err != nil {
		err = unavailable(err)
		// A heartbeat bounded by a deadline that passed is a Redis that
		// did not answer in time; a canceled one is the process stopping.
		if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			s.markDown(err)
		}
		return 0, err
	}
	return n, nil
}

// beatScript runs the heartbeat's script and what its reply asks for (a
// re-seed, a reconnect, the view read again), and returns the live
// processes, whether OpenRedis's heartbeat it was (before the view), and
// an error.
func (s *Redis) beatScript(ctx context.Context) (int, bool, error) {
	s.f.mu.Lock()
	opening := s.f.joined.IsZero() // OpenRedis reads the view once it has joined
	s.f.mu.Unlock()
	b := s.beatCall(opening)
	res, err := heartbeatScript.Run(ctx, s.rdb, b.keys, b.args...).Slice()
	t1 := s.localNow()
	if err == nil && len(res) < 6 {
		err = fmt.Errorf("%w: heartbeat: unexpected reply %v", ErrUnavailable, res)
	}
	if err != nil {
		return 0, opening, err
	}
	n, ep, down := s.noteBeat(res, opening)
	if opening {
		return n, true, nil
	}
	s.mu.Lock()
	changed := ep != s.epoch
	s.mu.Unlock()
	switch {
	case changed && !down:
		// Redis lost its state while this process could reach it:
		// re-seed now, even when no lane asks for a grant; then it
		// has joined again.
		if err = s.newEpoch(ctx); err == nil {
			s.f.mu.Lock()
			s.f.joined, s.f.rejoin = s.localNow(), false
			s.f.mu.Unlock()
			err = s.readView(ctx)
		}
	case down:
		// The view must hold what this process granted itself
		// meanwhile: read it again once reconciled.
		if err = s.reconnect(ctx); err == nil {
			err = s.readView(ctx)
			if errors.Is(err, errEpoch) && !s.Unreachable() {
				// Lost between the reconnect and the view.
				if err = s.newEpoch(ctx); err == nil {
					err = s.readView(ctx)
				}
			}
		}
	case len(res) > 6 && ep == b.joined:
		// The heartbeat's own view, of the epoch joined.
		var v *clusterView
		if v, err = s.viewFrom(res[6:], b.t0, t1, b.day); err == nil {
			s.setView(v)
		}
	default:
		// The epoch joined changed during the call (a grant
		// re-seeded): no view in the reply.
		err = s.readView(ctx)
	}
	if err == nil {
		s.beaten(false)
	}
	return n, false, err
}

// beatArgs is one call of the heartbeat's script: its keys and arguments,
// the epoch joined, the day of its view and when it was made (local clock).
type beatArgs struct {
	keys   []string
	args   []any
	joined string
	day    string
	t0     time.Time
}

// beatCall makes a call of the heartbeat's script; opening: OpenRedis's
// first (no view, no limits: they come after).
func (s *Redis) beatCall(opening bool) beatArgs {
	s.mu.Lock()
	b := beatArgs{joined: s.epoch, t0: s.localNow()}
	s.mu.Unlock()
	b.day = b.t0.In(s.loc).Format(DayFormat)
	b.keys = []string{s.procsKey(), s.epochKey(), s.fixKey(s.id)}
	b.args = []any{s.id, s.ttl.Milliseconds(), s.clock(), "", s.window.Milliseconds(), s.f.gran, 0, s.sentClock(b.t0)}
	if !opening {
		b.keys = s.viewKeys(b.keys, b.day)
		b.args[3], b.args[6] = b.joined, len(s.lanes)
	}
	if !opening && len(s.lanes) > 0 {
		b.args = s.limitsArgs(b.args)
	} else {
		b.args = append(b.args, "")
	}
	return b
}

// noteBeat records the live processes, a new join and the limits conflict
// of the heartbeat's reply res (at least 6 values), and returns the live
// processes, the reply's epoch and whether Redis is unreachable for this
// process (since another call failed).
func (s *Redis) noteBeat(res []any, opening bool) (int, string, bool) {
	live, _ := res[0].(int64)
	added, _ := res[1].(int64)
	ep, _ := res[2].(string)
	s.live.Store(live)
	s.mu.Lock()
	changed := ep != s.epoch
	s.mu.Unlock()
	s.f.mu.Lock()
	down := s.f.down
	// Counted alive again after its heartbeat expired or Redis lost
	// it (or a new epoch): the others may not count this process in
	// their views yet, so it joins again (see markDown). Not before
	// newEpoch when Redis lost its state while it answered: the
	// recovery's share comes from the view read before (see beatScript).
	if (s.f.rejoin || (added == 1 && !opening)) && (down || !changed) {
		s.f.joined, s.f.rejoin = s.localNow(), false
	}
	s.f.mu.Unlock()
	if !opening {
		s.noteConflict(res[3:6])
	}
	return int(live), ep, down
}

func limitsValue(c RedisClass) string {
	if c.TPM > 0 {
		return fmt.Sprintf("rpm %d, rpd %d, tpm %d, window margin %v", c.RPM, c.RPD, c.TPM, c.Margin)
	}
	return fmt.Sprintf("rpm %d, rpd %d, window margin %v", c.RPM, c.RPD, c.Margin)
}

// limitsArgs appends the limits prefix and this process's (lane, limits)
// pairs to args.
func (s *Redis) limitsArgs(args []any) []any {
	args = append(args, s.key("limits")+":")
	for _, l := range s.lanes {
		args = append(args, l.String(), limitsValue(s.classes[l.Class])+windowFormat)
	}
	return args
}

// conflictText names the lane and both limits of a conflict (the window
// format only when it differs: theirs is a registration).
func (s *Redis) conflictText(lane, theirs, proc string) string {
	mine := ""
	for _, l := range s.lanes {
		if l.String() == lane {
			mine = limitsValue(s.classes[l.Class])
		}
	}
	theirs, mine = formatText(theirs, mine)
	return fmt.Sprintf("lane %s: %s here, %s in process %s", lane, mine, theirs, displayName(proc))
}

// noteConflict records the limits conflict of a heartbeat's reply: c is
// its (lane, theirs, process), lane "" for none.
func (s *Redis) noteConflict(c []any) {
	conflict := ""
	if lane, _ := c[0].(string); lane != "" {
		theirs, _ := c[1].(string)
		proc, _ := c[2].(string)
		conflict = s.conflictText(lane, theirs, proc)
	}
	s.f.mu.Lock()
	s.f.conflict = conflict
	s.f.mu.Unlock()
}

// renewLimits writes this process's limits registration again at once
// (after Redis lost it), recording a conflict as Heartbeat does; the next
// Heartbeat does it anyway, so a failure is only returned.
func (s *Redis) renewLimits(ctx context.Context) error {
	if len(s.lanes) == 0 {
		return nil
	}
	args := s.limitsArgs([]any{s.id, s.ttl.Milliseconds(), s.clock(), "", s.window.Milliseconds(), s.f.gran, 0,
		s.sentClock(s.localNow())})
	res, err := heartbeatScript.Run(ctx, s.rdb, []string{s.procsKey(), s.epochKey(), s.fixKey(s.id)}, args...).Slice()
	if err == nil && len(res) < 6 {
		err = fmt.Errorf("%w: heartbeat: unexpected reply %v", ErrUnavailable, res)
	}
	if err != nil {
		return unavailable(err)
	}
	s.noteConflict(res[3:6])
	return nil
}

// register registers this process's limits of every lane for two
// HeartbeatTTLs (each Heartbeat renews them), or refuses with
// ErrLimitsConflict while a live process registered others; with check,
// it only refuses (writes nothing: see OpenRedis).
func (s *Redis) register(ctx context.Context, check bool) error {
	if len(s.lanes) == 0 {
		return nil
	}
	args := s.limitsArgs([]any{s.id, s.clock()})
	expiry := 2 * s.ttl.Milliseconds()
	if check {
		expiry = 0
	}
	// The expiry goes before the pairs.
	args = append(args[:3], append([]any{expiry}, args[3:]...)...)
	res, err := limitsScript.Run(ctx, s.rdb, []string{s.procsKey()}, args...).StringSlice()
	if err != nil {
		return unavailable(err)
	}
	if len(res) == 3 {
		return fmt.Errorf("%w: %s", ErrLimitsConflict, s.conflictText(res[0], res[1], res[2]))
	}
	return nil
}

// epochRecorder is a Local store that records which epoch of the shared
// state its day counts were last added to (Bolt: SharedEpoch). With one, a
// process starting adds its Local day counts to the shared ones only when
// Redis lost them (another epoch); without one (Memory, empty at each
// start) it adds them at each start.
type epochRecorder interface {
	SharedEpoch(ctx context.Context, cluster string) (string, error)
	SetSharedEpoch(ctx context.Context, cluster, epoch string) error
}

// join joins the cluster's epoch, re-seeding Redis when it lost its state
// (see seedScript), and records the epoch in the Local store. Joins are
// serialized: one that finds the epoch the last one joined adds nothing.
func (s *Redis) join(ctx context.Context) error {
	s.joinMu.Lock()
	defer s.joinMu.Unlock()
	if h := s.joinHook; h != nil {
		h()
	}
	// The grants whose replies are on their way are in the counts seen
	// and the grants re-seeded below (flightMu: held until they are
	// read); their Local records may come later: the count seen holds
	// their units.
	s.flightMu.Lock()
	read := sync.OnceFunc(s.flightMu.Unlock)
	defer read()
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	// Today's counts, and tomorrow's: units charged on the next Pacific
	// day before it began (ChargeDay: a request whose slot crossed
	// midnight), which a Redis restarted empty before midnight lost too.
	day := now.In(s.loc).Format(DayFormat)
	days := []string{day, nextDay(now, s.loc)}
	var own []DailyCount
	for _, d := range days {
		dc, err := s.Local.Daily(ctx, d)
		if err != nil {
			return err
		}
		own = append(own, dc...)
	}
	er, durable := s.Local.(epochRecorder)
	s.mu.Lock()
	known := s.epoch
	s.mu.Unlock()
	added := known // the epoch the own counts were last added to
	if known == "" && durable {
		// Starting: the epoch this data directory's counts were last
		// added to, whatever this process's name was then.
		var err error
		if added, err = er.SharedEpoch(ctx, s.cluster); err != nil {
			return err
		}
	}
	if known == "" {
		if err := s.startSlots(ctx, now); err != nil {
			return err
		}
		if err := s.notePrevLife(ctx); err != nil {
			return err
		}
	}
	s.f.mu.Lock()
	view := s.f.view // the processes' parts of the day (seedScript)
	s.f.mu.Unlock()
	s.mu.Lock()
	counts := make(map[dayLane][2]int)
	for _, dc := range own {
		if _, ok := s.classes[dc.Lane.Class]; ok {
			counts[dayLane{dc.Day, dc.Lane}] = [2]int{dc.Count, 0}
		}
	}
	for dl, n := range s.seen {
		if slices.Contains(days, dl.day) {
			c := counts[dl]
			c[1] = n
			counts[dl] = c
		}
	}
	parts := viewParts(view, days)
	for dl := range parts {
		if _, ok := counts[dl]; !ok {
			counts[dl] = [2]int{}
		}
	}
	lanes := make([]dayLane, 0, len(counts))
	for dl := range counts {
		lanes = append(lanes, dl)
	}
	slices.SortFunc(lanes, func(a, b dayLane) int {
		if c := strings.Compare(a.day, b.day); c != 0 {
			return c
		}
		return compareLane(a.lane, b.lane)
	})
	keys := []string{s.epochKey()}
	var b [8]byte
	_, _ = rand.Read(b[:])
	args := []any{added, hex.EncodeToString(b[:]), s.process, dayKeyTTL, len(lanes), len(s.prevNames)}
	for _, p := range s.prevNames {
		args = append(args, p)
	}
	for _, dl := range lanes {
		keys = append(keys, s.dayKey(dl.day, dl.lane), s.useKey(dl.day, dl.lane), s.key("seed", dl.day, redisLane(dl.lane)))
		args = appendParts(append(args, counts[dl][0], counts[dl][1]), parts[dl])
	}
	cutoff := now.Add(-2 * time.Minute).UnixMilli()
	for l, gs := range s.grants {
		gs = slices.DeleteFunc(gs, func(g sentGrant) bool { return g.score < cutoff })
		s.grants[l] = gs
		if len(gs) == 0 {
			delete(s.grants, l)
			continue
		}
		keys = append(keys, s.winKey(l), s.winCountKey(l), s.tokKey(l))
		args = append(args, len(gs))
		for _, g := range gs {
			args = append(args, g.score, grantMember(g.member, g.covers))
		}
		args = appendTokenSeed(args, gs)
	}
	s.mu.Unlock()
	read()
	res, err := seedScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return unavailable(err)
	}
	if len(res) != 3 {
		return fmt.Errorf("%w: seed: unexpected reply %v", ErrUnavailable, res)
	}
	ep, _ := res[0].(string)
	if durable && ep != added {
		// The own counts are in ep now (added, or found there): a start
		// after a restart of Redis that kept its state adds nothing. A
		// crash before this write adds them again at the next start:
		// counted twice, never lost.
		if err := er.SetSharedEpoch(ctx, s.cluster, ep); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.epoch = ep
	s.mu.Unlock()
	if c, _ := res[1].(int64); c == 1 {
		// A new epoch: Redis lost its heartbeats too, so this process
		// joins again at its next heartbeat (see markDown).
		s.f.mu.Lock()
		s.f.rejoin = true
		s.f.mu.Unlock()
		// And the disabled keys and lane stops: put back what this
		// process last saw of them.
		if err := s.seedView(ctx); err != nil {
			return err
		}
	}
	if (known != "" && ep != known) || (res[2] == int64(1) && known == "" && added != "") {
		// Re-seeded after Redis lost its state: the cluster's view says
		// so until the others have too (Usage).
		s.noteReseed(now)
	}
	if known != "" && ep != known {
		// Redis lost its state: the enables and resumes this process
		// keeps, with their times, so that no older disable or stop
		// comes back (see redis_local.go).
		if err := s.publishKept(ctx); err != nil {
			return err
		}
		s.signalResync()
	}
	if c, _ := res[2].(int64); c == 1 && known == "" && added != "" {
		// Starting, this process found Redis empty, and its data
		// directory had joined the cluster before: Redis lost its state.
		// The running processes, if any, have not re-seeded yet, and the
		// slots of those no longer alive are lost. Like a process that
		// finds its epoch gone (newEpoch), it takes no grant until every
		// slot granted before may have left the window (joinRecovery, in
		// OpenRedis, reads it), nor does any process that joins
		// meanwhile. (A data directory new to the cluster, or a Memory
		// store, starts a new cluster: no wait.)
		s.markRecovering(ctx, s.recoveryEnd(now, 0))
	}
	return nil
}

// startSlots puts, as this process starts, the window slots its Local
// store holds that may still be in the window (the window logs of its last
// clean stop, and the records of its grants since: a record's slots as sent
// at its Until plus the margin) among its own grants, so that join re-seeds
// them when Redis lost them (the processes that were stopped while Redis
// restarted empty put their slots back as they start; a window log's sends
// are grouped by second, each group scored at its latest). Their times are
// moved to Redis's clock by its offset from the local one now. A token
// budget is put back from the window logs only (records do not keep it).
func (s *Redis) startSlots(ctx context.Context, now time.Time) error {
	recs, err := s.Local.LedgerRecords(ctx)
	if err != nil {
		return err
	}
	cut := now.Add(-s.window)
	type slot struct {
		at     time.Time
		covers int
		tokens int64
	}
	by := make(map[LaneID][]slot)
	for _, w := range recs.Windows {
		if _, ok := s.classes[w.Lane.Class]; !ok {
			continue
		}
		var g *slot
		for _, x := range w.Sent {
			if !x.At.After(cut) {
				continue
			}
			sec := x.At.Truncate(time.Second)
			if g != nil && g.at.Truncate(time.Second).Equal(sec) {
				g.at, g.covers, g.tokens = later(g.at, x.At), g.covers+1, g.tokens+x.Tokens
				continue
			}
			by[w.Lane] = append(by[w.Lane], slot{at: x.At, covers: 1, tokens: x.Tokens})
			g = &by[w.Lane][len(by[w.Lane])-1]
		}
	}
	for _, r := range recs.Records {
		c, ok := s.classes[r.Lane.Class]
		if at := r.Until.Add(c.Margin); ok && at.After(cut) {
			by[r.Lane] = append(by[r.Lane], slot{at: at, covers: r.Covers, tokens: -1})
		}
	}
	if len(by) == 0 {
		return nil
	}
	base := s.clock()
	if base == 0 {
		t, err := s.rdb.Time(ctx).Result()
		if err != nil {
			return unavailable(err)
		}
		base = t.UnixMilli()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for l, ss := range by {
		tpm := s.classes[l.Class].TPM > 0
		for _, x := range ss {
			tok := x.tokens
			if !tpm {
				tok = -1
			}
			i++
			s.grants[l] = append(s.grants[l], sentGrant{score: base + x.at.Sub(now).Milliseconds(),
				member: s.id + ":r." + strconv.Itoa(i) + ":", covers: x.covers, tokens: tok})
		}
	}
	return nil
}

func compareLane(a, b LaneID) int {
	if a.Project != b.Project {
		if a.Project < b.Project {
			return -1
		}
		return 1
	}
	switch {
	case a.Class < b.Class:
		return -1
	case a.Class > b.Class:
		return 1
	}
	return 0
}

// Reserve grants r in Redis (see Redis's doc), then records it in the Local
// store; it returns once both are done, also when r is served from a grant
// taken ahead (waiting, bounded by ctx, for one being taken). It returns
// the lane's shared day count (for a record served from a grant taken
// ahead, the count that grant's script saw: it may miss the other
// processes' grants since, at most one grant stale; a Heartbeat's view
// reads it again), an error wrapping ErrNoGrant (a *GrantError) when Redis
// refused, or one wrapping ErrUnavailable when Redis could not answer; in
// both cases nothing was recorded, except for a record refused when it is
// handed out, after Redis granted it and the Local store wrote it (see
// handOut): its day units are given back in Redis (when that call works)
// and stay in the Local store. While Redis is unreachable it grants
// from the share or refuses (Reason "share"); during the grace after a
// call failed, it may first try Redis again (one Heartbeat, bounded to
// HeartbeatTTL/15, at most once per HeartbeatTTL/15 for the process).
func (s *Redis) Reserve(ctx context.Context, r Record) (int, error) {
	f, err := s.reserve(ctx, r, fitAsk{first: -1})
	return f.Count, err
}

// ReserveUpTo is Reserve, except that when the shared window has room for r
// >= 1 requests but not for r.Covers, it grants a scheduled record (all its
// day units): the r requests may be sent now, and the next ones only at the
// times of schedule, as slots of the window leave it (each due before the
// record's expiry on Redis's clock, Until - At after Redis's now; fewer
// Covers when the later ones would come after that). It returns the day
// count, the Covers granted (r.Covers or fewer, at least 1; 0 with an
// error) and the schedule: the local time before which each of the last
// len(schedule) of those Covers must not be sent, ascending (nil when all
// may be sent now). A time is Redis's converted with the offset measured
// after its reply, so that on Redis's clock the send comes no earlier (the
// last may then fall after Until by up to the call's latency: that cover is
// not sent). The caller sends the record's requests in order, none before
// its time and none after Until. A record served from a grant taken ahead
// (which never has a schedule: those are taken whole or not at all) with
// fewer Covers than r's gets that grant's Covers. The record in the Local
// store has the Covers granted.
func (s *Redis) ReserveUpTo(ctx context.Context, r Record) (count, covers int, schedule []time.Time, err error) {
	f, err := s.reserve(ctx, r, fitAsk{upTo: true, first: -1})
	return f.Count, f.Covers, f.Schedule, err
}

func (s *Redis) reserve(ctx context.Context, r Record, fit fitAsk) (Fit, error) {
	if err := checkRecord(r); err != nil {
		return Fit{}, err
	}
	s.reserved.Store(true) // see Abandon
	c, ok := s.classes[r.Lane.Class]
	if !ok {
		return Fit{}, fmt.Errorf("%w: Record.Lane.Class: %q: not a class of the Redis ledger", ErrInvalid, r.Lane.Class)
	}
	if err := checkTokens(r, c); err != nil {
		return Fit{}, err
	}
	if err := ctx.Err(); err != nil {
		return Fit{}, err
	}
	ttl := r.Until.Sub(r.At)
	s.f.mu.Lock()
	s.f.life = max(s.f.life, ttl)
	s.f.mu.Unlock()
	if s.Unreachable() && !s.retry(ctx) {
		// Heartbeat probes Redis and reconciles (and, during the grace,
		// retry, at most once a second); until then every grant comes
		// from this process's share, without a call that would wait on
		// an unreachable Redis. The lane's last Redis grant is not
		// settled: its slots stay as granted (see Stamped).
		s.takeGrant(r.Lane)
		s.dropAhead(r.Lane)
		n, err := s.reserveShare(ctx, r, c)
		if err == nil {
			s.shareGranted(r, c)
		}
		if !errors.Is(err, errReconnected) {
			return shareFit(r, n, err), err
		}
	}
	// A grant taken ahead for the lane serves r without a round trip
	// (redis_prefetch.go).
	if n, covers, ok, err := s.fromAhead(ctx, r, c, ttl, fit.upTo); ok || err != nil {
		if err != nil {
			return Fit{Count: n, Covers: covers, Tokens: r.Tokens}, err
		}
		return s.handOut(ctx, r, c, ttl, fit, Fit{Count: n, Covers: covers, Tokens: r.Tokens}, false)
	}
	for attempt := 0; ; attempt++ {
		f, err := s.reserveRedis(ctx, r, c, ttl, fit)
		if err == nil {
			s.ahead(r, c, ttl, nil)
		}
		if errors.Is(err, errEpoch) && attempt < 2 && ctx.Err() == nil {
			// Redis restarted empty: joined again, now within the share.
			continue
		}
		if errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
			s.markDown(err)
			n, err := s.reserveShare(ctx, r, c)
			if errors.Is(err, errReconnected) {
				continue
			}
			if err == nil {
				s.shareGranted(r, c)
			}
			return shareFit(r, n, err), err
		}
		return f, err
	}
}

// reserveRedis is one attempt of reserve's grant from Redis, within the
// share while recovering (see sharing).
func (s *Redis) reserveRedis(ctx context.Context, r Record, c RedisClass, ttl time.Duration, fit fitAsk) (Fit, error) {
	if err := s.rejoinCheck(ctx); err != nil { // due at the end of a hold as it joined (redis_join.go)
		return Fit{}, err
	}
	if err := s.chargeDead(ctx); err != nil { // due at a recovery's end (redis_dead.go)
		return Fit{}, err
	}
	now, life := s.localNow(), s.life()
	o := s.sharing(now)
	if o != nil {
		// Recovering: the other processes may still send on their share of
		// the outage, not yet counted in Redis.
		s.f.grantMu.Lock()
		defer s.f.grantMu.Unlock()
		s.f.mu.Lock()
		err := s.shareCheck(o, r, c, now, life)
		s.f.mu.Unlock()
		if err != nil {
			return Fit{}, err
		}
	}
	f, err := s.grant(ctx, r, c, ttl, fit)
	if err != nil {
		return Fit{}, err
	}
	r.Covers, r.Tokens = f.Covers, f.Tokens
	if o != nil {
		s.f.mu.Lock()
		s.noteShare(r, c, now, false)
		s.f.mu.Unlock()
	}
	if _, err = s.Local.Reserve(ctx, r); err != nil {
		return Fit{}, err
	}
	return s.handOut(ctx, r, c, ttl, fit, f, o != nil)
}

// handOut returns f, r's grant, when the record's first lease, which the
// caller stamps (and sends) once Reserve returns, can still be sent under
// the lane's grant: every send of a grant must come before its expiry (its
// slots count in the shared window at the expiry plus the margin, and a
// settlement keeps a stamp no later than that, so a slot sent later would
// leave the window before the request leaves the API's minute; see
// redis_giveback.go). The Local store's write of the record comes after
// Redis granted it and may outlive the grant: in a daemon just restarted
// (its bbolt file busy with the jobs it resumes) it took 5 to 12 s, where a
// fast lane's grant lives 2 s, and the heartbeat may even have settled the
// grant, idle, meanwhile (a stamp with no grant never reaches Redis). Then
// r is granted again from now, for its Covers and with no units (its units
// are in the day count already), the stale grant settled by that script
// (no stamp: its slots leave the window); a refusal is returned as is (the
// caller gives the lease back). While recovering (the grant checked against
// the share), or after a few tries, the stale record is refused instead:
// Reason "window" until now, so the caller records again at once. A
// refused record's day units are given back in Redis (giveBackRefused). A stall
// after this check still sends late: Stamped then adds the request's slot
// at its stamp (a round trip); this check keeps that rare.
func (s *Redis) handOut(ctx context.Context, r Record, c RedisClass, ttl time.Duration, fit fitAsk, f Fit, recovering bool) (Fit, error) {
	// The lease is stamped a little after Reserve returns: at least this
	// long before the grant's expiry (a quarter of its life, at most half a
	// second, as the scheduler's records stop covering new leases half a
	// second before their end).
	lead := min(ttl/4, 500*time.Millisecond).Milliseconds()
	for try := 0; ; try++ {
		now := s.localNow()
		if g := s.stampsOf(r.Lane).g.Load(); g != nil && now.UnixMilli()+c.Margin.Milliseconds()+lead < g.end {
			return f, nil
		}
		if recovering || try >= 3 || ctx.Err() != nil {
			s.giveBackRefused(r)
			return Fit{}, &GrantError{Lane: r.Lane, Reason: "window", Until: now}
		}
		again := r
		again.Units, again.At, again.Until = 0, now, now.Add(ttl)
		if f.Covers > 0 {
			again.Covers = f.Covers
		}
		nf, err := s.grant(ctx, again, c, ttl, fit)
		if err != nil {
			var ge *GrantError
			if errors.As(err, &ge) {
				s.giveBackRefused(r)
			}
			return Fit{}, err
		}
		f = nf
	}
}

// giveBackRefused gives r's day units back in the cluster's day count (and
// this process's part of it) when handOut refuses r after Redis granted it:
// the caller gives the lease back and records its units again (the
// scheduler: ledger.abandon), so they would be counted twice for the day
// (review11 R11-1). One round trip bounded to 2 s, in the current epoch;
// when it fails, or when the re-grant failed with Redis unreachable or
// restarted empty (not a refusal: r's units stay), they stay counted, on
// the safe side. The Local store keeps r (it takes no units back before
// Settle): this process's own day count, read at its next start and in a
// re-seed of an empty Redis, is higher by them (the safe side too).
func (s *Redis) giveBackRefused(r Record) {
	if r.Units <= 0 {
		return
	}
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = giveBackScript.Run(ctx, s.rdb, []string{s.epochKey(), s.dayKey(r.Day, r.Lane), s.useKey(r.Day, r.Lane)},
		epoch, r.Units, s.process).Err()
}

// pruneGrants drops the leading grants of a lane's own grants (oldest
// first) whose slots are before join's cutoff at now (two minutes ago),
// which no re-seed adds: so the list holds about two minutes of grants, not
// every grant of the process's life (settled and the token overruns scan
// it at every grant).
func pruneGrants(gs []sentGrant, now time.Time) []sentGrant {
	cutoff := now.Add(-2 * time.Minute).UnixMilli()
	i := 0
	for i < len(gs) && gs[i].score < cutoff {
		i++
	}
	return gs[i:]
}

// replyInt is a script reply's number: an integer, or its decimal text.
func replyInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// covered is the Covers of r granted whole, or 0 with an error.
func covered(r Record, err error) int {
	if err != nil {
		return 0
	}
	return r.Covers
}

// grant asks Redis for r's grant (see Reserve; upTo: ReserveUpTo) and
// returns the day count, the Covers granted and their schedule (local
// times, see ReserveUpTo). The grant script first settles the lane's
// previous grant (see Stamped), whatever it answers after that; when the
// call fails, that settlement is dropped.
func (s *Redis) grant(ctx context.Context, r Record, c RedisClass, ttl time.Duration, fit fitAsk) (Fit, error) {
	f, live, g, err := s.grantFrom(ctx, r, c, ttl, fit, s.takeGrant(r.Lane))
	if g != nil {
		s.setGrant(r.Lane, g)
		s.noteRoom(r.Lane, f.Count, live)
	}
	return f, err
}

// grantFrom is one grant script call for r, settling prev (the lane's
// previous grant, its stamps complete; nil for none) first. It returns the
// day count, the Covers granted, their schedule (with upTo only; see
// ReserveUpTo), the slots live in the lane's window after
// the grant (0 when the reply has none) and the grant, whose leases the caller
// attributes stamps to (setGrant) once it hands it out: grant at once, a
// grant taken ahead when a record is served from it (redis_prefetch.go).
func (s *Redis) grantFrom(ctx context.Context, r Record, c RedisClass, ttl time.Duration, fit fitAsk, prev *laneGrant) (Fit, int, *laneGrant, error) {
	ttlMillis := int64((ttl + time.Millisecond - 1) / time.Millisecond)
	local := time.Now()
	var keep []keptRun
	if prev != nil {
		keep = prev.settlement()
	}
	count, covers, live := 0, r.Covers, 0
	var tokens int64 // the budget granted (see Fit.Tokens)
	var sched []time.Time
	var g *laneGrant
	partial, first := 0, int64(0)
	switch {
	case fit.upTo && fit.first >= 0 && c.TPM > 0:
		partial, first = 2, fit.first
	case fit.upTo:
		partial = 1
	}
	{ // one attempt: an epoch found gone returns errEpoch (see newEpoch)
		s.mu.Lock()
		epoch := s.epoch
		last, over := s.tokArgs(r.Lane)
		s.mu.Unlock()
		member := s.id + ":" + strconv.FormatUint(s.seq.Add(1), 36) + ":"
		// Sized once: the settlement's runs follow (settleArgs).
		args := make([]any, 0, 20+2*len(keep))
		args = append(args, epoch, member, r.Covers, r.Units, ttlMillis, c.RPM, c.RPD, c.Margin.Milliseconds(), dayKeyTTL, s.clock(), s.process, s.window.Milliseconds(),
			r.Tokens, c.TPM, last, over-r.PrevUnused, partial, first)
		args = settleArgs(args, prev, keep)
		// Until the reply is noted (seen, grants): a join waits for it
		// (see flightMu).
		s.flightMu.RLock()
		inFlight := true
		noted := func() {
			if inFlight {
				inFlight = false
				s.flightMu.RUnlock()
			}
		}
		defer noted()
		before := s.localNow().UnixMilli()
		// runGrant: grantScript.Run, carrying a heartbeat when one is due
		// (redis_beat.go).
		// The reply's numbers are integers or, in the older replies,
		// decimal text (replyInt).
		res, rerr := s.runGrant(ctx, s.grantKeysOf(r.Lane, r.Day), args...).Slice()
		if rerr != nil {
			return Fit{}, 0, nil, unavailable(rerr)
		}
		kind := ""
		if len(res) > 0 {
			kind, _ = res[0].(string)
		}
		if len(res) > 0 && kind != "epoch" && c.TPM > 0 {
			// Past the epoch check, the script added the overrun and
			// gave the previous record's unused budget back.
			field := ""
			if kind == "ok" {
				field = member
			}
			s.mu.Lock()
			s.tokDone(r.Lane, last, over, over-r.PrevUnused, field)
			s.mu.Unlock()
		}
		if len(res) == 0 {
			return Fit{}, 0, nil, fmt.Errorf("%w: grant: empty reply", ErrUnavailable)
		}
		if kind == "epoch" {
			// Redis lost its state: re-seed and start the recovery (see
			// newEpoch); the caller asks again within its share. The
			// re-seed adds prev's slots as granted (its settlement was
			// not applied): the next grant settles them.
			if prev != nil {
				s.restoreGrant(r.Lane, prev)
			}
			noted()
			if err := s.newEpoch(ctx); err != nil {
				return Fit{}, 0, nil, err
			}
			return Fit{}, 0, nil, errEpoch
		}
		if len(res) < 3 {
			return Fit{}, 0, nil, fmt.Errorf("%w: grant: unexpected reply %v", ErrUnavailable, res)
		}
		s.settled(r.Lane, prev, keep)
		a, _ := replyInt(res[1])
		rnow, _ := replyInt(res[2])
		switch kind {
		case "ok":
			count = int(a)
			if len(res) >= 4 {
				n, _ := replyInt(res[3])
				live = int(n)
			}
			if len(res) >= 5 {
				v, _ := res[4].(string)
				s.keysVersion(v)
			}
			if len(res) >= 6 {
				if n, ok := replyInt(res[5]); ok && n >= 1 && n <= int64(r.Covers) {
					covers = int(n)
				}
			}
			tokens = grantTokens(r, c)
			if len(res) >= 7 && tokens >= 0 {
				// The budget granted: r.Tokens, or less for a fitted
				// grant (ReserveFit).
				if n, ok := replyInt(res[6]); ok && n >= 0 && n <= r.Tokens {
					tokens = n
				}
			}
			if len(res) > 7 {
				// Future slots: a "not before" time e on Redis's clock is
				// local e - (rnow - after), after read once the reply is
				// here: Redis's now was read no later than after, so at
				// that local time Redis's clock reads e or later (the
				// stamps' offset below errs the other way).
				after := s.localNow().UnixMilli()
				for _, f := range res[7:] {
					e, ok := replyInt(f)
					if !ok {
						return Fit{}, 0, nil, fmt.Errorf("%w: grant: unexpected reply %v", ErrUnavailable, res)
					}
					sched = append(sched, time.UnixMilli(e-rnow+after))
				}
				if len(sched) >= covers {
					return Fit{}, 0, nil, fmt.Errorf("%w: grant: unexpected reply %v", ErrUnavailable, res)
				}
			}
			score := rnow + ttlMillis + c.Margin.Milliseconds()
			s.mu.Lock()
			s.noteSeen(dayLane{r.Day, r.Lane}, count, rnow)
			s.grants[r.Lane] = append(pruneGrants(s.grants[r.Lane], s.localNow()), sentGrant{score: score, member: member, covers: covers, tokens: tokens})
			s.mu.Unlock()
			// The offset is Redis's now minus the local clock before the
			// call: never below the true one (plus a millisecond for
			// rounding), so a stamp converted with it is never earlier
			// than on Redis's clock.
			// Its stamps' room allocated once (Stamped keeps at most
			// stampsKept of them).
			g = &laneGrant{member: member, covers: covers, score: score, offset: rnow - before + 1,
				end: before + ttlMillis + c.Margin.Milliseconds(), tokens: tokens}
			g.newStamps()
		case "day":
			s.mu.Lock()
			s.noteSeen(dayLane{r.Day, r.Lane}, int(a), rnow)
			s.mu.Unlock()
			return Fit{}, 0, nil, &GrantError{Lane: r.Lane, Reason: "day", Day: int(a)}
		default: // window, tpm, cool, exhausted: a time on Redis's clock
			until := local.Add(time.Duration(a-rnow) * time.Millisecond)
			if kind == "window" {
				// Another process's grant may give slots back before
				// then: at its lane's next grant, or once it has been
				// over for HeartbeatTTL/3, at that process's next
				// heartbeat (see Stamped). Ask again by then.
				until = earlier(until, local.Add(ttl+c.Margin+2*s.ttl/3+time.Second))
			}
			return Fit{}, 0, nil, &GrantError{Lane: r.Lane, Reason: kind, Until: until}
		}
	}
	if tokens < 0 {
		tokens = r.Tokens // no TPM: the record's, unused
	}
	return Fit{Count: count, Covers: covers, Tokens: tokens, Schedule: sched}, live, g, nil
}

// Settle settles every lane's last grant in the shared window (its unused
// slots given back, its used ones rescored to their stamps; see Stamped:
// call it once no lease is stamped any more), gives back the grants taken
// ahead and not served (their slots and day units, waiting for those being
// taken; redis_prefetch.go) and the unused day units in Redis, then settles
// the Local store.
func (s *Redis) Settle(ctx context.Context, st Settlement) error {
	if err := checkSettlement(st); err != nil {
		return err
	}
	s.unusedTokens(st.Unused)
	shared := s.flushTokens(ctx)
	// The grants taken ahead and banked units first (redis_prefetch.go).
	if err := s.settleAhead(ctx); err != nil && shared == nil {
		shared = err
	}
	if s.Unreachable() {
		s.dropGrants()
	} else if err := s.settleGrants(ctx, s.localNow(), true); err != nil && shared == nil {
		shared = err
	}
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	for _, g := range st.GiveBack {
		if g.Count == 0 {
			continue
		}
		if _, err := giveBackScript.Run(ctx, s.rdb, []string{s.epochKey(), s.dayKey(g.Day, g.Lane), s.useKey(g.Day, g.Lane)},
			epoch, g.Count, s.process).Int(); err != nil && shared == nil {
			shared = unavailable(err)
		}
	}
	if err := s.Local.Settle(ctx, st); err != nil {
		return err
	}
	return shared
}

// SetLaneState stores st in the Local store and raises the lane's shared
// cooldown or exhaustion (a state is never lowered in Redis: it ends by
// itself), telling the other processes through pub/sub; a Redis that does
// not answer within 5 s is taken as unreachable. A stop (Stopped) is
// shared too, with its Config, and lasts until ResumeLane; a state without
// Stopped leaves the shared stop alone. While Redis is unreachable the
// cooldown and exhaustion are kept in memory and shared by the heartbeat
// that reaches Redis again, if they have not ended by then (an error
// wrapping ErrUnavailable, without waiting on Redis), and a stop is kept
// pending (an error wrapping ErrPending); the Local store has st in both
// cases.
func (s *Redis) SetLaneState(ctx context.Context, st LaneState) error {
	s.localMu.Lock()
	err := s.Local.SetLaneState(ctx, st)
	s.localMu.Unlock()
	if err != nil {
		return err
	}
	var shared error
	if s.Unreachable() {
		if s.keepTimes(st) {
			shared = fmt.Errorf("%w: the lane's cooldown or exhaustion is shared when Redis answers again", ErrUnavailable)
		}
	} else {
		bctx, cancel := context.WithTimeout(ctx, s.f.opTimeout)
		shared = s.noAnswer(ctx, s.shareTimes(bctx, st))
		cancel()
		if errors.Is(shared, ErrUnavailable) && ctx.Err() == nil {
			s.markDown(shared)
			s.keepTimes(st)
		}
	}
	if st.Stopped != "" {
		if err := s.change(ctx, pendingOp{kind: "stopped", lane: st.Lane, reason: st.Stopped, config: st.Config, at: s.localNow()}); err != nil {
			return err
		}
	}
	return shared
}

// shareTimes raises the lane's shared cooldown and exhaustion.
func (s *Redis) shareTimes(ctx context.Context, st LaneState) error {
	for _, f := range []struct {
		kind  string
		until time.Time
	}{{"cool", st.CoolUntil}, {"exhausted", st.ExhaustedUntil}} {
		if f.until.IsZero() {
			continue
		}
		msg, _ := json.Marshal(SharedEvent{Process: s.process, Kind: f.kind, Lane: st.Lane, Until: f.until.UTC()})
		// The shared state is in Redis's milliseconds on the process's
		// clock: cooldowns come from the API's retry delays, exhaustion from
		// Pacific midnight.
		if err := stateScript.Run(ctx, s.rdb, []string{s.stateKey(st.Lane)}, f.kind, f.until.UnixMilli(), s.channel(), msg).Err(); err != nil {
			return unavailable(err)
		}
	}
	return nil
}

// LaneStates returns the Local states merged with the shared ones of the
// lanes of RedisOptions.Projects: the later time of each cooldown and
// exhaustion wins; their stop is Redis's (an operator's resume on another
// process clears a stop kept in this process's Local store; a stop this
// process kept pending and could not push before it stopped is learned
// again from the lane's next request).
func (s *Redis) LaneStates(ctx context.Context) ([]LaneState, error) {
	local, err := s.Local.LaneStates(ctx)
	if err != nil {
		return nil, err
	}
	by := make(map[LaneID]LaneState)
	for _, st := range local {
		by[st.Lane] = st
	}
	now := time.Now()
	stops := make(map[LaneID]stopInfo)
	for _, l := range s.lanes {
		v, err := s.rdb.HMGet(ctx, s.stateKey(l), "cool", "exhausted", "stopped", "config").Result()
		if err != nil {
			return nil, unavailable(err)
		}
		st := by[l]
		st.Lane = l
		for i, p := range []*time.Time{&st.CoolUntil, &st.ExhaustedUntil} {
			sv, _ := v[i].(string)
			ms, err := strconv.ParseInt(sv, 10, 64)
			if err != nil || ms <= now.UnixMilli() {
				continue
			}
			if t := time.UnixMilli(ms).UTC(); t.After(*p) {
				*p = t
			}
		}
		reason, _ := v[2].(string)
		config, _ := v[3].(string)
		st.Stopped, st.Config = reason, config
		if reason != "" {
			stops[l] = stopInfo{reason, config}
		}
		if !st.empty() {
			by[l] = st
		} else {
			delete(by, l)
		}
	}
	s.f.keysMu.Lock()
	s.f.stops = stops
	s.f.keysMu.Unlock()
	out := make([]LaneState, 0, len(by))
	for _, st := range by {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b LaneState) int { return compareLane(a.Lane, b.Lane) })
	return out, nil
}

// DisableKey disables the key in the Local store and in Redis, telling the
// other processes. While Redis is unreachable (or does not answer within
// 5 s) the change is kept pending and pushed when it answers again (an
// error wrapping ErrPending; the Local store has it).
func (s *Redis) DisableKey(ctx context.Context, d DisabledKey) error {
	if err := s.Local.DisableKey(ctx, d); err != nil {
		return err
	}
	return s.change(ctx, pendingOp{kind: "disabled", keyID: d.KeyID, reason: d.Reason, at: s.localNow(), recAt: d.At})
}

// EnableKey enables the key in the Local store and in Redis, telling the
// other processes. While Redis is unreachable (or does not answer within
// 5 s) the change is kept pending and pushed when it answers again (an
// error wrapping ErrPending; the Local store has it).
func (s *Redis) EnableKey(ctx context.Context, keyID string) error {
	at := s.localNow()
	if err := s.enableLocal(ctx, keyID, at); err != nil {
		return err
	}
	return s.change(ctx, pendingOp{kind: "enabled", keyID: keyID, at: at})
}

// DisabledKeys returns the keys disabled in Redis, by key id, and those
// disabled in the Local store only unless the cluster enabled them after
// (the time of the last change of each key that Redis keeps).
func (s *Redis) DisabledKeys(ctx context.Context) ([]DisabledKey, error) {
	local, err := s.Local.DisabledKeys(ctx)
	if err != nil {
		return nil, err
	}
	var all, ats *redis.MapStringStringCmd
	var ver *redis.StringCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, s.disabledKey())
		ver = p.Get(ctx, s.keysVersionKey())
		ats = p.HGetAll(ctx, s.keysAtKey())
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	shared := all.Val()
	by := make(map[string]DisabledKey)
	for _, d := range local {
		if _, ok := shared[d.KeyID]; ok {
			by[d.KeyID] = d
			continue
		}
		if ms, err := strconv.ParseInt(ats.Val()[d.KeyID], 10, 64); err == nil && ms > d.At.UnixMilli() {
			continue // enabled in the cluster after it was disabled here
		}
		by[d.KeyID] = d
	}
	s.setShared(shared, ver.Val())
	for id, v := range shared {
		var rec struct {
			Reason string    `json:"reason"`
			At     time.Time `json:"at"`
		}
		if json.Unmarshal([]byte(v), &rec) != nil {
			rec.Reason = "disabled by another process"
		}
		by[id] = DisabledKey{KeyID: id, Reason: rec.Reason, At: rec.At}
	}
	out := make([]DisabledKey, 0, len(by))
	for _, d := range by {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b DisabledKey) int {
		switch {
		case a.KeyID < b.KeyID:
			return -1
		case a.KeyID > b.KeyID:
			return 1
		}
		return 0
	})
	return out, nil
}

// Watch calls fn for every event another process of the cluster publishes,
// in order, until ctx ends; then it returns nil. It closes ready (when not
// nil) once subscribed (and the shared state read). A lost connection is
// re-established by the client, and events published meanwhile are missed;
// so Watch also re-reads the shared state and calls fn with what changed
// since it last saw it (keys disabled or enabled, lanes stopped or resumed;
// every cooldown and exhaustion not over; with Process ResyncProcess): once
// subscribed, at every re-subscription, when a grant shows that the shared
// state's version changed (a key disabled or enabled, a lane stopped or
// resumed), and when the process reconciles after Redis was unreachable.
// Before it calls fn with a change, Watch writes it to the Local store
// (see redis_local.go; the error, if any, in SharedEvent.LocalErr), so the
// process's data directory agrees with the cluster.
// An error comes only when the first subscription fails.
func (s *Redis) Watch(ctx context.Context, ready chan<- struct{}, fn func(SharedEvent)) error {
	report := fn
	fn = func(ev SharedEvent) {
		ev.LocalErr = s.keepLocal(ctx, ev)
		report(ev)
	}
	sub := s.rdb.Subscribe(ctx, s.channel())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return unavailable(err)
	}
	ch := sub.ChannelWithSubscriptions()
	select { // this first re-read covers a signal sent before
	case <-s.f.resync:
	default:
	}
	s.resyncShared(ctx, fn)
	if ready != nil {
		close(ready)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.f.resync:
			s.resyncShared(ctx, fn)
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			switch m := m.(type) {
			case *redis.Subscription: // re-subscribed after a lost connection
				if m.Kind == "subscribe" {
					s.resyncShared(ctx, fn)
				}
			case *redis.Message:
				var ev SharedEvent
				if json.Unmarshal([]byte(m.Payload), &ev) != nil || ev.Process == s.process {
					continue
				}
				switch ev.Kind {
				case "disabled":
					s.noteShared(ev.KeyID, disabledRecord(ev.Reason, time.Time{}))
				case "enabled":
					s.noteShared(ev.KeyID, "")
				case "stopped":
					s.noteStop(ev.Lane, &stopInfo{ev.Reason, ev.Config})
				case "resumed":
					s.noteStop(ev.Lane, nil)
				}
				fn(ev)
			}
		}
	}
}

// Leave removes this process from the live processes, so the others' safe
// share grows at once; the Local store stays open. Call it on a clean stop
// (the scheduler's Run does as it returns), before Close: a process that
// only closes leaves its heartbeat behind, as a killed one does, and a
// process joining while it is overdue is held (see Joining).
func (s *Redis) Leave(ctx context.Context) error {
	return unavailable(s.rdb.ZRem(ctx, s.procsKey(), s.id).Err())
}
