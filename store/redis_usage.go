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
}

// usageScript reads a consistent snapshot of the processes alive and the
// lanes' shared use. It writes nothing.
//
// KEYS: 1 processes (zset), then per lane: day count, use (hash), window
// (zset), token window (hash). ARGV: 1 now ms (0: Redis TIME), 2 window ms.
// Reply: {now, alive processes, then per lane: day count, use (flat hash),
// live window members (each holding memberSlots slots), token window (flat
// hash, live or not)}.
var usageScript = redis.NewScript(clockLua + `
local now = clock(ARGV[1])
local win = tonumber(ARGV[2])
local out = {tostring(now), redis.call('ZRANGE', KEYS[1], '(' .. now, '+inf', 'BYSCORE')}
for i = 2, #KEYS, 4 do
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
func (s *Redis) Usage(ctx context.Context, day string) (ClusterUsage, error) {
	u, err := s.readUsage(ctx, s.view, day, s.lanes, s.window)
	u.Process = s.process
	return u, err
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
	return s.readUsage(ctx, s.rdb, day, lanes, win)
}

func (s *Redis) readUsage(ctx context.Context, rdb *redis.Client, day string, lanes []LaneID, win time.Duration) (ClusterUsage, error) {
	u := ClusterUsage{Cluster: strings.TrimSuffix(s.prefix, ":")}
	if err := checkDay(day); err != nil {
		return u, err
	}
	keys := []string{s.procsKey()}
	for _, l := range lanes {
		keys = append(keys, s.dayKey(day, l), s.useKey(day, l), s.winKey(l), s.tokKey(l))
	}
	res, err := usageScript.Run(ctx, rdb, keys, s.clock(), win.Milliseconds()).Slice()
	if err != nil {
		return u, unavailable(err)
	}
	if len(res) != 2+4*len(lanes) {
		return u, fmt.Errorf("%w: usage: unexpected reply of %d values", ErrUnavailable, len(res))
	}
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
	return u, nil
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
// share of an outage) or process:sequence:r:tail (its reconciliation).
func slotProcess(member string) string {
	i := strings.LastIndexByte(member, ':')
	if i < 0 {
		return member
	}
	if rest := member[:i]; strings.HasSuffix(rest, ":s") || strings.HasSuffix(rest, ":r") {
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
