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

// LaneUse is one lane's shared use: the day count of a Pacific day and the
// slots in the shared 60 s window, in total and per process.
type LaneUse struct {
	Lane LaneID
	Day  string
	// Count is the lane's shared day count: the day units every process
	// was granted on Day, less those given back. It may exceed what was
	// sent by the units granted and not used yet (per process, at most two
	// grants on a fast lane, the one in use and one taken ahead, else one;
	// see Redis).
	Count int
	RPD   int // the class's RPD (all processes together)
	// Window is the number of slots in the lane's shared window now: every
	// slot granted whose latest possible send (the grant's expiry plus the
	// class's margin; once the grant is over and settled, its stamp) is
	// less than 60 s ago, sent or not (a grant's unused slots leave once
	// it is settled, see Redis.Stamped). It is what the next grant is
	// checked against (at most RPM).
	Window int
	RPM    int // the class's RPM (all processes together)
	// ByProcess is each process's part of Count (day units granted to it
	// on Day, less those it gave back); processes with none are left out.
	ByProcess map[string]int
	// WindowByProcess is each process's part of Window (a slot of a
	// member whose process is not known is attributed to its name's
	// prefix).
	WindowByProcess map[string]int
	// Tokens is the input tokens in the lane's shared TPM window now: the
	// budgets of the grants whose slots are in Window, with the overruns
	// added (it is what the next grant is checked against: at most TPM).
	// 0 for a class without TPM.
	Tokens int64
	TPM    int // the class's TPM (all processes together); 0: not enforced
	// TokensByProcess is each process's part of Tokens; nil without TPM.
	TokensByProcess map[string]int64
	// Least is, while the view is ClusterUsage.Reseeding, the least the
	// day count is: the larger of Count (what Redis holds), this
	// process's own count of Day in its Local store (Own) and the last
	// shared count of Day it saw; 0 otherwise. A view shows it rather
	// than Count then.
	Least int
	// Own is, while Reseeding, this process's own count of Day in its
	// Local store (its part of Least); 0 otherwise.
	Own int
}

// ClusterUsage is the cluster's view: the processes alive and every lane's
// shared use.
type ClusterUsage struct {
	Cluster string // the cluster's name (the prefix of its Redis keys)
	Process string // this process's name; "" when read without joining (ReadClusterUsage)
	// Processes are the names of the processes alive (heartbeat not
	// expired), sorted, each once: a process restarted under the name of
	// a killed one is one name while the killed life's heartbeat lasts.
	Processes []string
	Lanes     []LaneUse
	// Reseeding is true while Redis lost the cluster's state (restarted
	// empty) and the day counts may not hold every process's use yet:
	// Redis holds no epoch (no process has re-seeded), or this process
	// has not re-seeded yet, or it has and some process alive in the last
	// view it read before noticing has not, for at most a re-seed grace
	// (HeartbeatTTL/3 and a second: every live process re-seeds at its
	// next heartbeat) after this process's re-seed; a process that joined
	// an empty Redis with a data directory that had joined the cluster
	// before is re-seeding for that grace too. Each lane's Least is then
	// set (see LaneUse.Least). From ReadClusterUsage: true when the
	// reader's data directory's counts were added to an epoch Redis no
	// longer holds (ClusterUsageOptions.Epoch), its Least at least those
	// counts. The zero value: not re-seeding.
	Reseeding bool
	// ReseedWaiting names, while Reseeding, the processes of that last
	// view that have not re-seeded into Redis's epoch yet (this one
	// included when it has not), sorted; empty when not known.
	ReseedWaiting []string
}

// reseedGrace is how long after its own re-seed a process's view says
// re-seeding while a process it last saw has not re-seeded: each live
// process notices at its next heartbeat (every HeartbeatTTL/3), and one
// that has not by then is not running (or cut off from Redis).
func (s *Redis) reseedGrace() time.Duration { return s.ttl/3 + time.Second }

// seededKey is the hash of the processes that added their counts to the
// cluster's epoch (name -> epoch; seedScript writes it, for 10 minutes).
func (s *Redis) seededKey() string { return s.epochKey() + ":seeded" }

// reseedMark is this process's last re-seed after Redis lost the
// cluster's state: when (local clock) and the processes of the last view
// it had read before (display names; nil: none known).
type reseedMark struct {
	at     time.Time
	roster []string
}

// noteReseed records that this process re-seeded Redis after it lost the
// cluster's state (join), at now, with the processes of its last view.
func (s *Redis) noteReseed(now time.Time) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	m := reseedMark{at: now}
	if v := s.f.view; v != nil {
		for _, p := range v.procs {
			m.roster = append(m.roster, displayName(p))
		}
		slices.Sort(m.roster)
		m.roster = slices.Compact(m.roster)
	}
	s.f.reseed = m
}

// usageMeta is what readUsage read besides the view: Redis's epoch ("":
// none) and who re-seeded into which epoch (seededKey).
type usageMeta struct {
	epoch  string
	seeded map[string]string
}

// ClusterUsageOptions say which cluster and lanes ReadClusterUsage reads.
type ClusterUsageOptions struct {
	Client   *redis.Client // required
	Cluster  string        // required
	Classes  []RedisClass  // the classes and their limits (at least one)
	Projects []string      // the projects whose lanes are read
	// Window is the length of the shared window; default 60 s.
	Window time.Duration
	// Now, when set, is the clock sent to the script instead of Redis's
	// TIME (as RedisOptions.Now).
	Now func() time.Time
	// Epoch is the epoch of the cluster's state the reader's data
	// directory last added its day counts to (Bolt.SharedEpoch); "" for
	// none. When set and Redis holds no epoch or another one, that data
	// directory's counts are not in Redis's (it lost its state and the
	// directory's process has not started since): the view is Reseeding
	// (ReseedWaiting empty: the process's name is not known).
	Epoch string
	// Own is the reader's data directory's day counts of the day read
	// (Local.Daily): while Reseeding each lane's Least is at least them.
	Own []DailyCount
}

// usageScript reads a consistent snapshot of the processes alive and the
// lanes' shared use. It writes nothing.
//
// KEYS: 1 processes (zset), 2 epoch, 3 re-seeded processes (hash, see
// seededKey), then per lane: day count, use (hash), window (zset), token
// window (hash). ARGV: 1 now ms (0: Redis TIME), 2 window ms.
// Reply: {now, alive processes, epoch ("" for none), re-seeded processes
// (flat hash), then per lane: day count, use (flat hash), live window
// members (each holding memberSlots slots), token window (flat hash, live
// or not)}.
var usageScript = redis.NewScript(clockLua + `
local now = clock(ARGV[1])
local win = tonumber(ARGV[2])
local out = {tostring(now), redis.call('ZRANGE', KEYS[1], '(' .. now, '+inf', 'BYSCORE'),
  redis.call('GET', KEYS[2]) or '', redis.call('HGETALL', KEYS[3])}
for i = 4, #KEYS, 4 do
  out[#out + 1] = redis.call('GET', KEYS[i]) or '0'
  out[#out + 1] = redis.call('HGETALL', KEYS[i + 1])
  out[#out + 1] = redis.call('ZRANGE', KEYS[i + 2], '(' .. (now - win), '+inf', 'BYSCORE')
  out[#out + 1] = redis.call('HGETALL', KEYS[i + 3])
end
return out
`)

// Usage returns the cluster's view of day for the lanes of
// RedisOptions.Projects, read in one Redis round trip (one read-only
// script: a consistent snapshot), through RedisOptions.ViewClient when set.
// It wraps ErrUnavailable when Redis could not answer.
//
// While Redis lost the cluster's state and not every process has re-seeded
// (ClusterUsage.Reseeding), each lane's Least is the larger of its count,
// this process's own (read from its Local store) and the last count it saw.
func (s *Redis) Usage(ctx context.Context, day string) (ClusterUsage, error) {
	u, m, err := s.readUsage(ctx, s.view, day, s.lanes, s.window)
	u.Process = s.process
	if err != nil {
		return u, err
	}
	s.reseedView(&u, m, s.localNow())
	if !u.Reseeding {
		return u, nil
	}
	own, err := s.Local.Daily(ctx, day)
	if err != nil {
		return u, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range u.Lanes {
		lu := &u.Lanes[i]
		for _, dc := range own {
			if dc.Lane == lu.Lane {
				lu.Own = dc.Count
			}
		}
		lu.Least = max(lu.Count, lu.Own, s.seen[dayLane{day, lu.Lane}])
	}
	return u, nil
}

// reseedView sets u's Reseeding and ReseedWaiting from m, read with it,
// and this process's last re-seed, at now (local clock).
func (s *Redis) reseedView(u *ClusterUsage, m usageMeta, now time.Time) {
	s.mu.Lock()
	joined := s.epoch
	s.mu.Unlock()
	s.f.mu.Lock()
	mark := s.f.reseed
	var roster []string
	if v := s.f.view; v != nil {
		for _, p := range v.procs {
			roster = append(roster, displayName(p))
		}
	}
	s.f.mu.Unlock()
	switch {
	case m.epoch == "" || m.epoch != joined:
		// Lost and not re-seeded by this process yet (nor, with no
		// epoch, by any): its last view is from before.
	case !mark.at.IsZero() && now.Before(mark.at.Add(s.reseedGrace())):
		roster = mark.roster
		if roster == nil {
			u.Reseeding = true // joined an empty Redis: the others unknown
			return
		}
	default:
		return
	}
	for _, p := range roster {
		if m.epoch == "" || m.seeded[p] != m.epoch {
			u.ReseedWaiting = append(u.ReseedWaiting, p)
		}
	}
	slices.Sort(u.ReseedWaiting)
	u.ReseedWaiting = slices.Compact(u.ReseedWaiting)
	u.Reseeding = len(u.ReseedWaiting) > 0 || m.epoch == "" || m.epoch != joined
}

// ReadClusterUsage reads the cluster's view of day without joining the
// cluster (no heartbeat, nothing written): for a command that shows the
// shared use while no process of its own runs. Errors wrap ErrInvalid or
// ErrUnavailable.
func ReadClusterUsage(ctx context.Context, day string, o ClusterUsageOptions) (ClusterUsage, error) {
	if o.Client == nil {
		return ClusterUsage{}, fmt.Errorf("%w: ClusterUsageOptions.Client: nil", ErrInvalid)
	}
	if err := checkID("ClusterUsageOptions.Cluster", o.Cluster); err != nil {
		return ClusterUsage{}, err
	}
	if len(o.Classes) == 0 {
		return ClusterUsage{}, fmt.Errorf("%w: ClusterUsageOptions.Classes: none", ErrInvalid)
	}
	s := &Redis{rdb: o.Client, prefix: o.Cluster + ":", classes: make(map[string]RedisClass), now: o.Now}
	for _, c := range o.Classes {
		s.classes[c.Name] = c
	}
	var lanes []LaneID
	for _, p := range o.Projects {
		for _, c := range o.Classes {
			l := LaneID{Project: p, Class: c.Name}
			if err := checkLane(l); err != nil {
				return ClusterUsage{}, err
			}
			lanes = append(lanes, l)
		}
	}
	win := o.Window
	if win <= 0 {
		win = time.Minute
	}
	u, m, err := s.readUsage(ctx, s.rdb, day, lanes, win)
	if err != nil || o.Epoch == "" || m.epoch == o.Epoch {
		return u, err
	}
	// Redis lost the state the data directory's counts were added to.
	u.Reseeding = true
	for i := range u.Lanes {
		lu := &u.Lanes[i]
		for _, dc := range o.Own {
			if dc.Lane == lu.Lane && dc.Day == day {
				lu.Own = dc.Count
			}
		}
		lu.Least = max(lu.Count, lu.Own)
	}
	return u, nil
}

func (s *Redis) readUsage(ctx context.Context, rdb *redis.Client, day string, lanes []LaneID, win time.Duration) (ClusterUsage, usageMeta, error) {
	u := ClusterUsage{Cluster: strings.TrimSuffix(s.prefix, ":")}
	var m usageMeta
	if err := checkDay(day); err != nil {
		return u, m, err
	}
	keys := []string{s.procsKey(), s.epochKey(), s.seededKey()}
	for _, l := range lanes {
		keys = append(keys, s.dayKey(day, l), s.useKey(day, l), s.winKey(l), s.tokKey(l))
	}
	res, err := usageScript.Run(ctx, rdb, keys, s.clock(), win.Milliseconds()).Slice()
	if err != nil {
		return u, m, unavailable(err)
	}
	if len(res) != 4+4*len(lanes) {
		return u, m, fmt.Errorf("%w: usage: unexpected reply of %d values", ErrUnavailable, len(res))
	}
	m.epoch, _ = res[2].(string)
	m.seeded = make(map[string]string)
	for h, j := stringsOf(res[3]), 0; j+1 < len(h); j += 2 {
		m.seeded[h[j]] = h[j+1]
	}
	res = append(res[:2:2], res[4:]...)
	now, _ := strconv.ParseInt(fmt.Sprint(res[0]), 10, 64)
	// The lives alive, as Redis names them (lifeID): a window member or
	// token entry starts with its writer's.
	lives := stringsOf(res[1])
	for _, id := range lives {
		u.Processes = append(u.Processes, displayName(id))
	}
	slices.Sort(u.Processes)
	u.Processes = slices.Compact(u.Processes)
	for i, l := range lanes {
		v := res[2+4*i:]
		c := s.classes[l.Class]
		lu := LaneUse{Lane: l, Day: day, RPD: c.RPD, RPM: c.RPM,
			ByProcess: make(map[string]int), WindowByProcess: make(map[string]int)}
		if str, ok := v[0].(string); ok {
			lu.Count, _ = strconv.Atoi(str)
		}
		h := stringsOf(v[1])
		for j := 0; j+1 < len(h); j += 2 {
			if n, err := strconv.Atoi(h[j+1]); err == nil && n > 0 {
				lu.ByProcess[h[j]] = n
			}
		}
		for _, m := range stringsOf(v[2]) {
			n := memberSlots(m)
			lu.Window += n
			lu.WindowByProcess[displayName(slotOwner(m, lives, lu.ByProcess))] += n
		}
		if c.TPM > 0 {
			lu.TPM, lu.TokensByProcess = c.TPM, make(map[string]int64)
			liveTokens(&lu, stringsOf(v[3]), now-win.Milliseconds(), lives)
		}
		u.Lanes = append(u.Lanes, lu)
	}
	return u, m, nil
}

// memberSlots returns how many slots a window member holds: the number
// after its last '*' (see windowLua), 1 for a member without one (an older
// slideshowd's).
func memberSlots(member string) int {
	i := strings.LastIndexByte(member, '*')
	if i < 0 {
		return 1
	}
	n, err := strconv.Atoi(member[i+1:])
	if err != nil || n < 0 {
		return 1
	}
	return n
}

// slotOwner returns the process of a window member (or of a token window's
// field): the longest of the known processes (alive, or with a part of the
// day) that the member starts with, followed by ':'; else what slotProcess
// makes of it.
func slotOwner(member string, alive []string, byDay map[string]int) string {
	best := ""
	try := func(p string) {
		if len(p) > len(best) && len(member) > len(p) && member[len(p)] == ':' && strings.HasPrefix(member, p) {
			best = p
		}
	}
	for _, p := range alive {
		try(p)
	}
	for p := range byDay {
		try(p)
	}
	if best != "" {
		return best
	}
	return slotProcess(member)
}

// slotProcess returns the process of a window member, written as
// process:sequence:tail (a grant's "g*n", a settlement's "k<j>*n"; an older
// slideshowd's: a slot's number), process:sequence:s:tail (a grant on the
// share of an outage), process:sequence:r:tail (its reconciliation) or
// process:time:d:tail (the charge of a process presumed dead after an
// outage, redis_dead.go: its process is that life's, not a process of its
// own).
func slotProcess(member string) string {
	i := strings.LastIndexByte(member, ':')
	if i < 0 {
		return member
	}
	if rest := member[:i]; strings.HasSuffix(rest, ":s") || strings.HasSuffix(rest, ":r") || strings.HasSuffix(rest, ":d") {
		i -= 2
	}
	j := strings.LastIndexByte(member[:i], ':')
	if j < 0 {
		return member[:i]
	}
	return member[:j]
}

func stringsOf(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, e := range a {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// SharedDaily returns the shared day count of day of every lane of
// RedisOptions.Projects (0 for a lane with none), in one round trip; daily
// protection compares them with RPD. It wraps ErrUnavailable when Redis
// could not answer.
func (s *Redis) SharedDaily(ctx context.Context, day string) ([]DailyCount, error) {
	if err := checkDay(day); err != nil {
		return nil, err
	}
	if len(s.lanes) == 0 {
		return nil, nil
	}
	keys := make([]string, len(s.lanes))
	for i, l := range s.lanes {
		keys[i] = s.dayKey(day, l)
	}
	vs, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]DailyCount, len(s.lanes))
	for i, l := range s.lanes {
		out[i] = DailyCount{Day: day, Lane: l}
		if str, ok := vs[i].(string); ok {
			out[i].Count, _ = strconv.Atoi(str)
		}
	}
	return out, nil
}
