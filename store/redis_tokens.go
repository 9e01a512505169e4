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

// The shared TPM window.
//
// A lane of a class with TPM (RedisClass.TPM > 0) has, next to its window of
// slots, a window of token budgets: one hash per lane, a field per grant
// (the grant's member prefix) holding "score tokens", the score being the
// grant's slots' (its expiry plus the class's margin, Redis ms). A grant
// takes Record.Tokens there in the same script as its slots, or is refused
// whole with Reason "tpm" when the live budgets (score > now - 60 s) plus
// Record.Tokens would pass TPM (ReserveFit: takes the part that fits, for
// fewer Covers, when its first request fits); so, like the slots, a budget counts in
// every window that may hold a request it covers, and no 60 s window (plus
// the margin) of all the processes' grants together holds more than TPM
// tokens of budgets. Each grant reads the lane's live entries: O(grants in
// the last minute), about one a second per busy lane. Once a grant is
// over, its settlement moves its entry back to its latest kept stamp (see
// "Token budgets" in redis_giveback.go), so a budget counts from the
// latest send it covers, not the grant's expiry.
//
// Actual counts above the estimates (Overran) are added, by the next grant
// of the lane from the same process (first thing in its script, whether it
// is granted or refused), its next Heartbeat or Settle, whichever comes
// first, to that process's latest grant of the lane: its score is the
// latest moment any of the process's earlier requests could have been
// sent, plus the margin, so the correction counts in every window that may
// hold them. When that entry has already left the window, so have those
// requests, and the correction is dropped. The next grant also gives back
// from that entry the part of its budget no request used
// (Record.PrevUnused: a new record supersedes the previous one's budget),
// never below what its requests were estimated at plus the overruns.
//
// While Redis is unreachable a lane with TPM gets its share of TPM by the
// same rule as its share of RPM (redis_fault.go): the view of each heartbeat
// also holds when the token window's budgets leave it (tokenViewFrom); the
// process takes room / N of the tokens that leave after the outage began,
// TPM / N once everything granted before it may have left (tokenShare).
// Its own share grants and overruns count against it; on reconnect its
// share grants' budgets are added to the token window (reconcileTokens)
// or re-seeded with the rest when Redis came back empty.

// tokensLua holds the token window's functions for the scripts that use it
// (grantScript, tokensFixScript).
const tokensLua = `
local function tok_parse(v)
  local sp = string.find(v, ' ', 1, true)
  return tonumber(string.sub(v, 1, sp - 1)), tonumber(string.sub(v, sp + 1))
end
-- tok_live drops the lane's entries that left the window and returns the
-- sum of the live ones and the live entries {score, tokens}.
local function tok_live(hk, now, win)
  local all = redis.call('HGETALL', hk)
  local sum, es, dead = 0, {}, {}
  for i = 1, #all, 2 do
    local sc, tk = tok_parse(all[i + 1])
    if sc > now - win then
      sum = sum + tk
      es[#es + 1] = {sc, tk}
    else
      dead[#dead + 1] = all[i]
    end
  end
  if #dead > 0 then redis.call('HDEL', hk, unpack(dead)) end
  return sum, es
end
-- tok_fix adds over tokens (an overrun; negative: unused budget given
-- back, never below 0) to the entry of field when it is still live.
local function tok_fix(hk, field, over, now, win)
  if over == 0 or field == '' then return end
  local v = redis.call('HGET', hk, field)
  if not v then return end
  local sc, tk = tok_parse(v)
  if sc <= now - win then return end
  redis.call('HSET', hk, field, string.format('%.0f %.0f', sc, math.max(0, tk + over)))
end
-- tok_free_at returns when enough of the live entries es (summing sum)
-- have left the window for need more tokens under tpm.
local function tok_free_at(es, sum, need, tpm, win)
  table.sort(es, function(a, b) return a[1] < b[1] end)
  for _, e in ipairs(es) do
    sum = sum - e[2]
    if sum + need <= tpm then return math.floor(e[1]) + win + 1 end
  end
  return 0
end
-- tok_settle moves the entry of field back to at (a settled grant's
-- latest kept stamp) when at is earlier than its score.
local function tok_settle(hk, field, at)
  local v = redis.call('HGET', hk, field)
  if not v then return end
  local sc, tk = tok_parse(v)
  if at < sc then redis.call('HSET', hk, field, string.format('%.0f %.0f', at, tk)) end
end
-- tok_take records a grant's budget.
local function tok_take(hk, field, score, tokens, keep)
  redis.call('HSET', hk, field, string.format('%.0f %.0f', score, tokens))
  if redis.call('PTTL', hk) < keep then redis.call('PEXPIRE', hk, keep) end
end
`

// tokensFixScript adds a process's overrun to its latest grant's entry (see
// tok_fix) in the current epoch.
//
// KEYS: 1 epoch, 2 token window. ARGV: 1 epoch, 2 field, 3 tokens, 4 now
// ms (0: TIME), 5 window ms. Reply: 1, or 0 when the epoch changed.
var tokensFixScript = redis.NewScript(clockLua + tokensLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
tok_fix(KEYS[2], ARGV[2], tonumber(ARGV[3]), clock(ARGV[4]), tonumber(ARGV[5]))
return 1
`)

func (s *Redis) tokKey(l LaneID) string { return s.key("tok", redisLane(l)) }

// laneTokens is this process's part of a lane's shared TPM window.
type laneTokens struct {
	last string // the field of its latest grant with a token entry
	over int64  // Overran tokens not yet added in Redis
	// unused is the budget of its latest grant that no request used, to
	// give back (Settle).
	unused int64
	// pending are its grants on its share while Redis was unreachable,
	// not yet in the token window.
	pending []tokPending
}

// tokPending is a share grant's entry for the token window.
type tokPending struct {
	field  string
	score  int64 // local Unix ms: the grant's expiry plus the margin
	tokens int64
}

// Overran reports that requests of lane l, sent under this process's
// grants, used tokens input tokens beyond the estimates those grants took
// (actual counts above Record.Tokens' estimates; report each request's
// excess, never a shortfall). The next grant of the lane from this process
// adds them to its latest grant's entry in the shared TPM window, before
// anything else in its script (so a refusal adds them too), or the next
// Heartbeat or Settle, whichever comes first: until then the other
// processes do not see them. While Redis is unreachable (or this process
// recovers) they also count against this process's share. Tokens <= 0
// and lanes of classes without TPM are ignored. It does not call Redis. It
// is safe for concurrent use.
func (s *Redis) Overran(l LaneID, tokens int64) {
	if tokens <= 0 || s.classes[l.Class].TPM <= 0 {
		return
	}
	s.mu.Lock()
	if s.tok == nil {
		s.tok = make(map[LaneID]*laneTokens)
	}
	t := s.tok[l]
	if t == nil {
		t = &laneTokens{}
		s.tok[l] = t
	}
	t.over += tokens
	s.mu.Unlock()
	s.overranShare(l, tokens)
}

// tokArgs returns the field of this process's latest grant of l and the
// overrun to add to it. Call with s.mu held.
func (s *Redis) tokArgs(l LaneID) (string, int64) {
	if t := s.tok[l]; t != nil {
		return t.last, t.over
	}
	return "", 0
}

// tokDone notes that Redis added fix to the latest grant's entry (field
// last): the overrun over, less the unused budget given back; and that
// field is now the latest when it is not empty. Call with s.mu held.
func (s *Redis) tokDone(l LaneID, last string, over, fix int64, field string) {
	t := s.tok[l]
	if t == nil {
		if field == "" {
			return
		}
		if s.tok == nil {
			s.tok = make(map[LaneID]*laneTokens)
		}
		t = &laneTokens{}
		s.tok[l] = t
	}
	t.over -= over
	if fix != 0 && last != "" {
		// Keep the re-seed of an empty Redis as the shared entry.
		for i := range s.grants[l] {
			if g := &s.grants[l][i]; g.member == last && g.tokens >= 0 {
				g.tokens = max(0, g.tokens+fix)
			}
		}
	}
	if field != "" {
		t.last = field
	}
}

// flushTokens adds every lane's overrun not yet in Redis, less its unused
// budget to give back (Heartbeat, Settle): one script per lane with either.
// Lanes whose fix cannot be applied keep it.
func (s *Redis) flushTokens(ctx context.Context) error {
	type fix struct {
		lane         LaneID
		field        string
		over, unused int64
	}
	s.mu.Lock()
	epoch := s.epoch
	var fixes []fix
	for l, t := range s.tok {
		if (t.over > 0 || t.unused > 0) && t.last != "" {
			fixes = append(fixes, fix{l, t.last, t.over, t.unused})
		}
	}
	s.mu.Unlock()
	var first error
	for _, f := range fixes {
		res, err := tokensFixScript.Run(ctx, s.rdb, []string{s.epochKey(), s.tokKey(f.lane)},
			epoch, f.field, f.over-f.unused, s.clock(), s.window.Milliseconds()).Int()
		if err != nil {
			if first == nil {
				first = unavailable(err)
			}
			continue
		}
		if res == 1 {
			s.mu.Lock()
			s.tokDone(f.lane, f.field, f.over, f.over-f.unused, "")
			if t := s.tok[f.lane]; t != nil {
				t.unused -= f.unused
			}
			s.mu.Unlock()
		}
	}
	return first
}

// checkTokens checks r's token budget against its class.
func checkTokens(r Record, c RedisClass) error {
	if c.TPM > 0 && r.Tokens > int64(c.TPM) {
		return fmt.Errorf("%w: Record.Tokens: %d: above the class %q TPM of %d", ErrInvalid, r.Tokens, c.Name, c.TPM)
	}
	return nil
}

// grantTokens is the entry a grant of r leaves in the TPM window: r.Tokens,
// or -1 (none) for a class without TPM.
func grantTokens(r Record, c RedisClass) int64 {
	if c.TPM <= 0 {
		return -1
	}
	return r.Tokens
}

// appendTokenSeed appends, for seedScript, the token entries of a lane's
// grants gs (those with one): their count, then (field, "score tokens")
// pairs.
func appendTokenSeed(args []any, gs []sentGrant) []any {
	n := 0
	for _, g := range gs {
		if g.tokens >= 0 {
			n++
		}
	}
	args = append(args, n)
	for _, g := range gs {
		if g.tokens >= 0 {
			args = append(args, g.member, fmt.Sprintf("%d %d", g.score, g.tokens))
		}
	}
	return args
}

// liveTokens adds to lu the entries of a token window (a flat hash: field,
// "score tokens") whose score is after since (Redis ms), each to the
// process of its field.
func liveTokens(lu *LaneUse, h []string, since int64, alive []string) {
	for j := 0; j+1 < len(h); j += 2 {
		sc, tok, ok := strings.Cut(h[j+1], " ")
		score, err1 := strconv.ParseInt(sc, 10, 64)
		n, err2 := strconv.ParseInt(tok, 10, 64)
		if !ok || err1 != nil || err2 != nil || score <= since {
			continue
		}
		lu.Tokens += n
		lu.TokensByProcess[displayName(slotOwner(h[j], alive, lu.ByProcess))] += n
	}
}

// overranShare counts an overrun against this process's share while Redis
// is unreachable or it recovers: as sent now plus the margin (the request
// that overran was sent before now, under a grant of this process).
func (s *Redis) overranShare(l LaneID, tokens int64) {
	now := s.localNow()
	if s.sharing(now) == nil {
		return
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.posted == nil {
		s.f.posted = make(map[LaneID][]postSlot)
	}
	s.f.posted[l] = append(s.f.posted[l], postSlot{score: now.Add(s.classes[l.Class].Margin).UnixMilli(), tokens: tokens})
}

// noteShareTokens records a share grant of r (its field and score) for the
// token window: added at reconnect, and the target of the overruns reported
// after it. Call with s.mu held.
func (s *Redis) noteShareTokens(r Record, c RedisClass, field string, score int64) {
	if c.TPM <= 0 {
		return
	}
	if s.tok == nil {
		s.tok = make(map[LaneID]*laneTokens)
	}
	t := s.tok[r.Lane]
	if t == nil {
		t = &laneTokens{}
		s.tok[r.Lane] = t
	}
	t.pending = append(t.pending, tokPending{field: field, score: score, tokens: r.Tokens})
	t.last = field
}

// tokenViewFrom adds to v, for the lanes with TPM, when the budgets of
// their token windows leave them (local ms, rounded up and shifted by the
// view's offset bound, never earlier than they do), from res: the part of
// viewLua's reply after the lanes' windows (per lane with TPM: buckets n,
// then (score / rounding, rounded up; tokens) pairs). Without such lanes v
// has none.
func (s *Redis) tokenViewFrom(res []int64, v *clusterView) error {
	var lanes []LaneID
	for _, l := range s.lanes {
		if s.classes[l.Class].TPM > 0 {
			lanes = append(lanes, l)
		}
	}
	if len(lanes) == 0 {
		return nil
	}
	out := make(map[LaneID][]leaveAt, len(lanes))
	i := 0
	for _, l := range lanes {
		if i >= len(res) {
			return fmt.Errorf("%w: view: short reply", ErrUnavailable)
		}
		nb := int(res[i])
		i++
		if nb < 0 || i+2*nb > len(res) {
			return fmt.Errorf("%w: view: short reply", ErrUnavailable)
		}
		var ls []leaveAt
		for j := range nb {
			ls = append(ls, leaveAt{at: res[i+2*j]*s.f.gran + s.window.Milliseconds() + v.offMax, n: int(res[i+2*j+1])})
		}
		i += 2 * nb
		slices.SortFunc(ls, func(a, b leaveAt) int { return int(a.at - b.at) })
		out[l] = ls
	}
	v.tokens = out
	return nil
}

// tokenCap is how many tokens of lane (of class c, with TPM) this process
// may hold in the token window at now (local Unix ms) in the outage o, and
// when that may grow (0: not before the outage ends): windowCap's rule,
// in tokens. Call with f.mu held.
func (s *Redis) tokenCap(o *outage, l LaneID, c RedisClass, now int64, life time.Duration) (int64, int64) {
	if o.view == nil || o.view.tokens == nil {
		return 0, 0
	}
	f := o.since.UnixMilli()
	full := f + (life + c.Margin + s.window).Milliseconds() + s.f.gran + o.spread
	if now >= full {
		return int64(c.TPM / o.n), 0
	}
	room, next := int64(0), full
	for _, b := range o.view.tokens[l] {
		if b.at <= f+s.f.gran+o.spread {
			continue
		}
		if b.at > now {
			next = min(next, b.at)
			break
		}
		room += int64(b.n)
	}
	return min(room, int64(c.TPM)) / int64(o.n), next
}

// tokenShare refuses r on a lane with TPM when its tokens do not fit in
// this process's share of the token window (see tokenCap); its own share
// grants and overruns since the outage began count against it. Call with
// f.mu held, after livePosted pruned the lane's posted grants.
func (s *Redis) tokenShare(o *outage, r Record, c RedisClass, n int64, life time.Duration) error {
	if c.TPM <= 0 {
		return nil
	}
	w := s.window.Milliseconds()
	live, oldest := int64(0), int64(0)
	for _, p := range s.f.posted[r.Lane] {
		if p.score > n-w && p.tokens > 0 {
			live += p.tokens
			if oldest == 0 || p.score < oldest {
				oldest = p.score
			}
		}
	}
	limit, grows := s.tokenCap(o, r.Lane, c, n, life)
	if live+r.Tokens <= limit {
		return nil
	}
	var frees int64
	if oldest != 0 {
		frees = oldest + w + 1
	}
	return s.shareRefused(r.Lane, grows, frees, n, life, live == 0)
}

// tokensReconcileScript adds a lane's share grants' budgets to its token
// window in the current epoch, each as its slots (Redis's now plus what was
// left of its lead when the call left).
//
// KEYS: 1 epoch, 2 token window. ARGV: 1 epoch, 2 now ms (0: TIME), 3 window
// ms, then (field, lead ms, tokens) triples. Reply: 1, or 0 when the epoch
// changed (nothing done).
var tokensReconcileScript = redis.NewScript(clockLua + tokensLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local now = clock(ARGV[2])
local win = tonumber(ARGV[3])
local top = 0
for a = 4, #ARGV - 2, 3 do
  local score = now + tonumber(ARGV[a + 1])
  if score > now - win then
    redis.call('HSET', KEYS[2], ARGV[a], string.format('%.0f %.0f', score, tonumber(ARGV[a + 2])))
    if score > top then top = score end
  end
end
if top > 0 then
  local keep = top - now + win + 1000
  if redis.call('PTTL', KEYS[2]) < keep then redis.call('PEXPIRE', KEYS[2], keep) end
end
return 1
`)

// reconcileTokens adds the budgets of the grants this process took on its
// share to the token windows (reconnect). A lane whose epoch changed (Redis
// came back empty) drops them: join re-seeds them with the rest.
func (s *Redis) reconcileTokens(ctx context.Context) error {
	s.mu.Lock()
	epoch := s.epoch
	type lanePend struct {
		lane LaneID
		ps   []tokPending
	}
	var all []lanePend
	for l, t := range s.tok {
		if len(t.pending) > 0 {
			all = append(all, lanePend{l, slices.Clone(t.pending)})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b lanePend) int { return compareLane(a.lane, b.lane) })
	for _, lp := range all {
		now := s.localNow().UnixMilli()
		args := []any{epoch, s.clock(), s.window.Milliseconds()}
		for _, p := range lp.ps {
			args = append(args, p.field, p.score-now, p.tokens)
		}
		if err := tokensReconcileScript.Run(ctx, s.rdb, []string{s.epochKey(), s.tokKey(lp.lane)}, args...).Err(); err != nil {
			return unavailable(err)
		}
		s.mu.Lock()
		if t := s.tok[lp.lane]; t != nil {
			t.pending = t.pending[len(lp.ps):]
		}
		s.mu.Unlock()
	}
	return nil
}

// unusedTokens notes budgets to give back at the next flush (Settle): the
// unused part of each lane's latest grant.
func (s *Redis) unusedTokens(us []UnusedTokens) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range us {
		t := s.tok[u.Lane]
		if t == nil || u.Tokens <= 0 || s.classes[u.Lane.Class].TPM <= 0 {
			continue
		}
		t.unused += u.Tokens
	}
}

// Fit is what ReserveFit granted a record.
type Fit struct {
	// Count is the lane's day count after the grant (see Reserve).
	Count int
	// Covers is the record's Covers granted: r.Covers or fewer, at least
	// 1.
	Covers int
	// Tokens is the token budget granted: r.Tokens or, for a class with
	// TPM whose shared token window had room for fewer of the record's
	// requests, less (see ReserveFit).
	Tokens int64
	// Schedule is as ReserveUpTo's: the local time before which each of
	// the last len(Schedule) Covers must not be sent, ascending; nil when
	// all may be sent now.
	Schedule []time.Time
}

// fitAsk is what a grant may take less of than the record asks:
// nothing (Reserve), fewer Covers (upTo: ReserveUpTo), and with first >= 0
// a smaller token budget too (ReserveFit).
type fitAsk struct {
	upTo  bool
	first int64
}

// shareFit is the Fit of a record granted whole from the process's share
// while Redis is unreachable (n its day count), or none with an error.
func shareFit(r Record, n int, err error) Fit {
	return Fit{Count: n, Covers: covered(r, err), Tokens: r.Tokens}
}

// ReserveFit is ReserveUpTo, except that for a class with TPM, when the
// lane's shared token window has room for first (the estimated input
// tokens of the record's first request, 0 <= first <= r.Tokens) but not for
// r.Tokens, it grants the budget that fits instead of refusing the record
// whole: Covers k+1 (and no more than the window of slots grants), k the
// most of the record's other r.Covers-1 requests whose part of the budget
// ((r.Tokens-first)/(r.Covers-1) each) fits beside first, and Tokens first
// plus those k parts (rounded up, never beyond the room). A record whose
// first request does not fit is refused with Reason "tpm" and Until when
// enough budgets have left the window for first. The caller sends no more
// than the Covers granted under the record and spends no more than the
// Tokens granted (bucket.Class.Budgeted), so the bound on the shared token
// window holds as for a budget granted whole. The Local store's record has
// the Covers and Tokens granted. For a class without TPM, or a record from
// the process's share while Redis is unreachable, it is ReserveUpTo with
// Tokens r.Tokens. Errors are Reserve's, and ErrInvalid for first outside
// [0, r.Tokens].
func (s *Redis) ReserveFit(ctx context.Context, r Record, first int64) (Fit, error) {
	if first < 0 || first > r.Tokens {
		return Fit{}, fmt.Errorf("%w: ReserveFit: first: %d: must be in [0, Record.Tokens %d]", ErrInvalid, first, r.Tokens)
	}
	return s.reserve(ctx, r, fitAsk{upTo: true, first: first})
}
