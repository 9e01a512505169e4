package store

import (
	"context"
	"fmt"
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
// Record.Tokens would pass TPM; so, like the slots, a budget counts in
// every window that may hold a request it covers, and no 60 s window (plus
// the margin) of all the processes' grants together holds more than TPM
// tokens of budgets. Each grant reads the lane's live entries: O(grants in
// the last minute), about one a second per busy lane.
//
// Actual counts above the estimates (Overran) are added, by the next grant
// of the lane from the same process (first thing in its script, whether it
// is granted or refused), its next Heartbeat or Settle, whichever comes
// first, to that process's latest grant of the lane: its score is the latest moment any of the process's earlier
// requests could have been sent, plus the margin, so the correction counts
// in every window that may hold them. When that entry has already left the
// window, so have those requests, and the correction is dropped.
//
// While Redis is unreachable a lane with TPM gets no share: it sends only
// what the grants in hand cover (see tpmShare).

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
-- tok_fix adds over tokens to the entry of field when it is still live.
local function tok_fix(hk, field, over, now, win)
  if over <= 0 or field == '' then return end
  local v = redis.call('HGET', hk, field)
  if not v then return end
  local sc, tk = tok_parse(v)
  if sc <= now - win then return end
  redis.call('HSET', hk, field, string.format('%.0f %.0f', sc, tk + over))
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
}

// Overran reports that requests of lane l, sent under this process's
// grants, used tokens input tokens beyond the estimates those grants took
// (actual counts above Record.Tokens' estimates; report each request's
// excess, never a shortfall). The next grant of the lane from this process
// adds them to its latest grant's entry in the shared TPM window, before
// anything else in its script (so a refusal adds them too), or the next
// Heartbeat or Settle, whichever comes first: until then the other
// processes do not see them. Tokens <= 0
// and lanes of classes without TPM are ignored. It does not call Redis. It
// is safe for concurrent use.
func (s *Redis) Overran(l LaneID, tokens int64) {
	if tokens <= 0 || s.classes[l.Class].TPM <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == nil {
		s.tok = make(map[LaneID]*laneTokens)
	}
	t := s.tok[l]
	if t == nil {
		t = &laneTokens{}
		s.tok[l] = t
	}
	t.over += tokens
}

// tokArgs returns the field of this process's latest grant of l and the
// overrun to add to it. Call with s.mu held.
func (s *Redis) tokArgs(l LaneID) (string, int64) {
	if t := s.tok[l]; t != nil {
		return t.last, t.over
	}
	return "", 0
}

// tokDone notes that Redis added over to the latest grant's entry (field
// last), and that field is now the latest when it is not empty. Call with
// s.mu held.
func (s *Redis) tokDone(l LaneID, last string, over int64, field string) {
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
	if over > 0 && last != "" {
		// Keep the re-seed of an empty Redis as high as the shared entry.
		for i := range s.grants[l] {
			if g := &s.grants[l][i]; g.member == last {
				g.tokens += over
			}
		}
	}
	if field != "" {
		t.last = field
	}
}

// flushTokens adds every lane's overrun not yet in Redis (Heartbeat,
// Settle): one script per lane with an overrun. Lanes whose overrun cannot
// be added keep it.
func (s *Redis) flushTokens(ctx context.Context) error {
	type fix struct {
		lane  LaneID
		field string
		over  int64
	}
	s.mu.Lock()
	epoch := s.epoch
	var fixes []fix
	for l, t := range s.tok {
		if t.over > 0 && t.last != "" {
			fixes = append(fixes, fix{l, t.last, t.over})
		}
	}
	s.mu.Unlock()
	var first error
	for _, f := range fixes {
		res, err := tokensFixScript.Run(ctx, s.rdb, []string{s.epochKey(), s.tokKey(f.lane)},
			epoch, f.field, f.over, s.clock(), s.window.Milliseconds()).Int()
		if err != nil {
			if first == nil {
				first = unavailable(err)
			}
			continue
		}
		if res == 1 {
			s.mu.Lock()
			s.tokDone(f.lane, f.field, f.over, "")
			s.mu.Unlock()
		}
	}
	return first
}

// tpmShare refuses a share grant (Redis unreachable) on a lane of a class
// with TPM: the view of the cluster has no token budgets, so such a lane
// sends only what its grants in hand cover until Redis answers again. It
// asks again at the next heartbeat.
func (s *Redis) tpmShare(r Record, c RedisClass, now time.Time) error {
	if c.TPM <= 0 {
		return nil
	}
	return &GrantError{Lane: r.Lane, Reason: "share", Until: now.Add(s.ttl / 3)}
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
		lu.TokensByProcess[slotOwner(h[j], alive, lu.ByProcess)] += n
	}
}
