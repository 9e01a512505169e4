package store

import (
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The Redis ledger's scripts. Each runs atomically in Redis: every
// check-and-take is one script, never a read, a decision and a write. Times
// are Unix milliseconds; "now" is ARGV's clock when it is > 0 (tests drive a
// virtual clock), else Redis's TIME, so process clocks need not agree.

// The shared window of a lane is a sorted set (winKey) whose members each
// hold one or more slots: a member is "<process>:<seq>:<tail>*<n>", process
// the writer's life's name (Redis.id: unique to each life), n its
// slots (a member without "*<n>", written by an older slideshowd, holds
// one), scored at the latest moment its slots may be sent (Redis ms). A
// grant is one member ("<prefix>g*<covers>"), a settlement a few ("<prefix>
// k<j>*<n>", see redis_giveback.go), so a grant's cost does not grow with
// its size. Its live count, the slots of the members scored after now - 60
// s, is kept in a hash next to it (winCountKey: m, its members, s, their
// slots; it expires with the window), so a grant does not read the whole
// window: every script that writes the window opens it with win_open,
// which counts the window again when the hash does not match it (lost, or
// the window written by something that does not keep it), and closes it
// with win_close. Readers that do not write (the view, usage) sum the
// members' slots themselves.
//
// A process of this format refuses to share a window with one that counts
// members (windowFormat, in the limits registration).

// windowFormat is appended to each lane's limits in the registration that
// processes compare (limitsScript, heartbeatScript): an older slideshowd,
// which counts one slot per member (ZCARD), registers its lanes without it,
// so the two refuse each other (ErrLimitsConflict) rather than miscount
// each other's slots.
const windowFormat = ", window format 2"

// winCountKey is the hash that keeps the live count of l's window.
func (s *Redis) winCountKey(l LaneID) string { return s.key("wincount", redisLane(l)) }

// grantMember is the window member of a grant of covers slots whose
// member prefix is prefix.
func grantMember(prefix string, covers int) string {
	return prefix + "g*" + strconv.Itoa(covers)
}

// slotsLua holds win_slots, how many slots a window member holds (its
// name's "*n"; 1 without one), for every script that reads the window.
const slotsLua = `
local function win_slots(m)
  return tonumber(string.match(m, '%*(%d+)$')) or 1
end
`

// windowLua holds the window's functions for the scripts that write it.
const windowLua = slotsLua + `
-- win_open reads the count of window zk kept in nk, or counts the window
-- again when nk does not match it.
local function win_open(zk, nk)
  local w = {zk = zk, nk = nk, m = redis.call('ZCARD', zk), s = 0, dirty = false}
  if w.m == 0 then return w end
  local h = redis.call('HMGET', nk, 'm', 's')
  local s = tonumber(h[2])
  if s and tonumber(h[1]) == w.m then
    w.s = s
    return w
  end
  for _, m in ipairs(redis.call('ZRANGE', zk, 0, -1)) do w.s = w.s + win_slots(m) end
  w.dirty = true
  return w
end
-- win_add adds member m (n slots) at score sc unless it is there.
local function win_add(w, sc, m, n)
  if redis.call('ZADD', w.zk, 'NX', sc, m) == 1 then
    w.m, w.s, w.dirty = w.m + 1, w.s + n, true
  end
end
-- win_rem removes member m; it returns true when it was there, with its
-- score when want_score.
local function win_rem(w, m, want_score)
  local sc = true
  if want_score then
    sc = redis.call('ZSCORE', w.zk, m)
    if not sc then return nil end
    sc = tonumber(sc)
  end
  if redis.call('ZREM', w.zk, m) == 0 then return nil end
  w.m, w.s, w.dirty = w.m - 1, w.s - win_slots(m), true
  return sc
end
-- win_sweep removes the members scored at or before cut and returns the
-- live count: the slots of the others.
local function win_sweep(w, cut)
  if w.m == 0 then return w.s end -- an empty window: nothing to sweep
  local old = redis.call('ZRANGE', w.zk, '-inf', cut, 'BYSCORE')
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', w.zk, '-inf', cut)
    for _, m in ipairs(old) do w.m, w.s = w.m - 1, w.s - win_slots(m) end
    w.dirty = true
  end
  return w.s
end
-- win_free_at returns the score of the member at which the oldest need
-- slots of the window have left (walking the members oldest first), or
-- dflt when the window holds fewer.
local function win_free_at(w, need, dflt)
  local got, i = 0, 0
  while need > 0 do
    local e = redis.call('ZRANGE', w.zk, i, i + 63, 'WITHSCORES')
    if #e == 0 then break end
    for j = 1, #e, 2 do
      got = got + win_slots(e[j])
      if got >= need then return math.floor(tonumber(e[j + 1])) end
    end
    i = i + 64
  end
  return dflt
end
-- win_leave_times returns, oldest first, the times at which the oldest
-- slots of the window leave it (each member's score + win + 1, once per
-- slot it holds), at most n of them and none after lim.
local function win_leave_times(w, n, win, lim)
  local out, i = {}, 0
  while #out < n do
    local e = redis.call('ZRANGE', w.zk, i, i + 63, 'WITHSCORES')
    if #e == 0 then break end
    for j = 1, #e, 2 do
      local t = math.floor(tonumber(e[j + 1])) + win + 1
      if t > lim then return out end
      for _ = 1, win_slots(e[j]) do
        if #out >= n then return out end
        out[#out + 1] = t
      end
    end
    i = i + 64
  end
  return out
end
-- win_close writes the count back when it changed; it expires with the
-- window, whose time to live is ttl ms when the caller just set it (nil:
-- read). It returns r.
local function win_close(w, r, ttl)
  if not w.dirty then return r end
  if w.m <= 0 then
    redis.call('DEL', w.nk)
    return r
  end
  redis.call('HSET', w.nk, 'm', w.m, 's', w.s)
  local p = ttl or redis.call('PTTL', w.zk)
  if p > 0 then redis.call('PEXPIRE', w.nk, p) else redis.call('PERSIST', w.nk) end
  return r
end
`

// procsLife is the life of the processes zset after the last heartbeat,
// ms (Lua text): the day counts' (dayKeyTTL).
var procsLife = strconv.Itoa(dayKeyTTL * 1000)

// clockLua returns the script's now.
const clockLua = `
local function clock(arg)
  local n = tonumber(arg)
  if n and n > 0 then return n end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// grantScript grants one lane's record: Covers window slots, recorded in the
// shared window as one member, as sent at the grant's expiry plus the
// margin, and Units day units, or refuses it whole.
//
// With TPM (ARGV 14 > 0) it also adds the process's overrun to its latest
// grant's entry in the lane's token window, refuses when the window's live
// budgets plus the grant's tokens would pass TPM, and records the grant's
// budget (see redis_tokens.go).
//
// KEYS: 1 epoch, 2 window (zset), 3 day count, 4 lane state (hash), 5 use
// (hash: process -> units of the day), 6 processes (zset), 7 the disabled
// keys' version, 8 token window (hash), 9 the window's count (hash).
// ARGV: 1 epoch, 2 member prefix, 3 covers, 4 units, 5 ttl ms, 6 rpm, 7 rpd,
// 8 margin ms, 9 day key ttl s, 10 now ms (0: Redis TIME), 11 process,
// 12 window ms (60000; shorter in tests), 13 tokens, 14 tpm (0: none),
// 15 the field of the process's latest grant in the token window ("" for
// none), 16 its overrun to add, 17 partial (1: when the window has room r
// >= 1 but not for covers, grant a scheduled grant: the r slots free now
// and up to covers - r future slots, each sent no earlier than a slot of
// the window leaves it, due before now + ttl, the grant's expiry; see
// redis_giveback.go, "Scheduled slots"; 2: that, and with TPM, when the
// token window has room for ARGV 18's tokens but not for ARGV 13's, a
// fitted grant: the budget that fits, for fewer covers, see
// Redis.ReserveFit), 18 the first covered request's tokens (0 unless
// partial is 2), 19.. the settlement of the lane's previous grant
// (settleLua), applied before anything else is checked.
//
// Replies: {"ok", dayCount, now, windowCount, keysVersion, covers granted,
// tokens granted (0 without TPM), then the "not before" time of each
// future slot, Redis ms, ascending};
// {"epoch", current or ""};
// {"exhausted"|"cool", until, now}; {"window"|"tpm", freeAt, now};
// {"day", dayCount, now}.
var grantScript = redis.NewScript(clockLua + tokensLua + windowLua + settleLua + `
-- One read for the epoch, the day count and the disabled keys' version
-- (nothing below writes the last two before they are used).
local g = redis.call('MGET', KEYS[1], KEYS[3], KEYS[7])
if g[1] ~= ARGV[1] then return {'epoch', g[1] or ''} end
local w = win_open(KEYS[2], KEYS[9])
local tk = nil
if tonumber(ARGV[14]) > 0 then tk = KEYS[8] end
settle(w, 19, tk)
local now = clock(ARGV[10])
local win = tonumber(ARGV[12])
-- A slot counts in every window that may hold its send: stored at the
-- grant's expiry plus the margin (or, settled, at most redis_giveback.go's
-- run span after its stamp), it is live while its score > now - 60 s.
local live = win_sweep(w, now - win)
local tpm, tneed = tonumber(ARGV[14]), 0
local tsum, tlive = 0, nil
if tpm > 0 then
  tneed = tonumber(ARGV[13])
  tok_fix(KEYS[8], ARGV[15], tonumber(ARGV[16]), now, win)
  tsum, tlive = tok_live(KEYS[8], now, win)
end
local st = redis.call('HMGET', KEYS[4], 'cool', 'exhausted')
local ex = tonumber(st[2] or '0') or 0
if ex > now then return win_close(w, {'exhausted', tostring(ex), tostring(now)}) end
local cool = tonumber(st[1] or '0') or 0
if cool > now then return win_close(w, {'cool', tostring(cool), tostring(now)}) end
local covers, units = tonumber(ARGV[3]), tonumber(ARGV[4])
local asked = covers
local ttl, rpm, rpd, margin = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local sched = {}
if live + covers > rpm and live < rpm and ARGV[17] ~= '0' then
  -- A scheduled grant (see redis_giveback.go, "Scheduled slots"): the
  -- rpm - live slots free now, and future slots, the j-th of them not sent
  -- before the j-th oldest slot of the window (its live count, promised
  -- slots included) has left it, as long as that is before the grant's
  -- expiry (now + ttl): a slot due later could not be sent under it.
  local room = rpm - live
  sched = win_leave_times(w, covers - room, win, now + ttl - 1)
  covers = room + #sched
end
if live + covers - #sched > rpm then
  -- Free once the oldest slots beyond room for covers have left. A grant
  -- of more than RPM never fits: asked again a window from now.
  local at = win_free_at(w, math.min(live, live + covers - rpm), now)
  return win_close(w, {'window', tostring(at + win + 1), tostring(now)})
end
if tpm > 0 and tsum + tneed > tpm then
  local first = tonumber(ARGV[18])
  if ARGV[17] ~= '2' or tsum + first > tpm or asked < 2 or tneed <= first then
    -- Refused whole; a fitted grant asks again once its first fits.
    local need = tneed
    if ARGV[17] == '2' then need = first end
    return win_close(w, {'tpm', tostring(tok_free_at(tlive, tsum, need, tpm, win)), tostring(now)})
  end
  -- A fitted grant (Redis.ReserveFit): the first request's tokens and k
  -- of the others' parts, (tneed - first) / (asked - 1) each, that fit;
  -- covers k + 1, the scheduled slots beyond them dropped. The budget is
  -- rounded up from exact integers, never beyond the room.
  local k = math.min(covers - 1, math.floor((tpm - tsum - first) * (asked - 1) / (tneed - first)))
  local nowSlots = covers - #sched
  covers = k + 1
  while #sched > 0 and #sched > covers - nowSlots do sched[#sched] = nil end
  tneed = math.min(tpm - tsum, first + math.floor((k * (tneed - first) + asked - 2) / (asked - 1)))
end
local used = tonumber(g[2] or '0')
if used + units > rpd then return win_close(w, {'day', tostring(used), tostring(now)}) end
if units > 0 then
  -- The count read above plus units, as INCRBY and EXPIRE would leave it.
  used = used + units
  redis.call('SET', KEYS[3], string.format('%d', used), 'EX', ARGV[9])
  redis.call('HINCRBY', KEYS[5], ARGV[11], ARGV[4])
  redis.call('EXPIRE', KEYS[5], ARGV[9])
end
local score = now + ttl + margin
-- ARGV[3] is covers' decimal text unless a scheduled grant changed it.
local cs = ARGV[3]
if covers ~= asked then cs = string.format('%d', covers) end
win_add(w, score, ARGV[2] .. 'g*' .. cs, covers)
-- The window lives until this grant's slots leave it, and never less
-- than it did: an earlier grant of a longer life (a slow lane's, up to 30
-- s) may need it longer (its process killed, or idle: nothing writes the
-- window again before Redis would drop it with those slots in it).
local keep = ttl + margin + win + 1000
local pt = redis.call('PTTL', KEYS[2])
if pt < keep then
  redis.call('PEXPIRE', KEYS[2], keep)
  pt = keep
end
if tpm > 0 then tok_take(KEYS[8], ARGV[2], score, tneed, keep) end
w.dirty = true
-- Numbers as integers (no text to format here and parse in Go).
local out = {'ok', used, now, live + covers, g[3] or '0', covers, tneed}
for _, t in ipairs(sched) do out[#out + 1] = t end
return win_close(w, out, pt)
`)

// giveBackScript subtracts unused day units (never below zero) in the
// current epoch.
//
// KEYS: 1 epoch, 2 day count, 3 use. ARGV: 1 epoch, 2 units, 3 process.
// Reply: the new count, or -1 when the epoch changed (nothing done).
var giveBackScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
n = math.min(n, cur)
if n <= 0 then return cur end
local u = tonumber(redis.call('HGET', KEYS[3], ARGV[3]) or '0')
if u > 0 then redis.call('HINCRBY', KEYS[3], ARGV[3], -math.min(n, u)) end
return redis.call('DECRBY', KEYS[2], n)
`)

// seedScript joins the epoch of the shared state, creating it when Redis
// has none (it started empty), and adds this process's own counts (its
// Local store's day counts of today) unless they are in this epoch
// already: it adds them when it creates the epoch, and when the epoch its
// counts were last added to (ARGV[1]: for a running process the epoch it
// joined; for one starting, the epoch its data directory recorded,
// SharedEpoch; "" for none) is not this one. So a process that was stopped
// while Redis restarted empty adds its counts when it starts, whatever its
// name then, and one whose Redis kept its state adds nothing (its grants
// are in the day count already).
//
// Per lane and Pacific day, the epoch's re-seed keeps each process's part
// (a hash, field per process name as the use hash names it: Redis.Process
// of a life, or of a dead life charged): o, the sum of the own counts its
// lives added (its Local store's day count: at least what its data
// directory granted itself today, since its Local store counts a grant
// before it is used, share grants of an outage included); v, the largest
// part of it that a re-seeding process's last view of the cluster read in
// the use hash (units Redis granted it or charged it and did not take
// back: at least what it sent through Redis until that view, whether it
// is alive, stopped cleanly or dead); and f, the last shared day count a
// re-seeding process saw (a grant's reply or a view, the last one by
// Redis's clock: it holds what every process had sent until then). A
// process's re-seeded part is max(o, v); the day count's re-seeded part
// is max(f, the sum of the parts), and the grants of the new epoch come
// on top of it: never below what any process sent until the last view
// any re-seeding process read, nor what a re-seeding process's data
// directory granted itself since. Each field only rises (o: each life
// adds its counts once per epoch), and the count is a function of the
// fields, so processes re-seeding in any order leave the same count;
// each re-seed adds the difference, and moves each process's field of
// the use hash by the difference of its part (so a later view, and a
// second empty restart, hold it).
//
// A life started on the data directory of earlier ones under another
// name (a default name holds the pid) has their units in its own count,
// and the views hold them under the earlier names: ARGV[6] on name the
// earlier lives of its Local store (their Redis.Process, this process's
// own excluded: SharedLife.Prev), each recorded a (alias) to this process
// (the smallest name when several do). A process with no o of its own (it
// has not re-seeded: dead, or stopped) that a re-seeding process names so
// is part of its group: the group's part is max(o, the sum of the group's
// v), not their sum, all of it under the re-seeding process's name in the
// use hash (as when the lives have one name). A life named so that
// re-seeds itself (a copy of the file running) is not grouped (counted
// twice: the safe side), nor is a life the file no longer names (more
// than maxPrevLives before, or a file restored: its part counted twice).
//
// When it adds them, it also records the process's name in the epoch key's
// ":seeded" hash (name -> epoch, for 10 minutes: see seededKey).
//
// KEYS: 1 epoch, then per lane: day count, use, re-seed (hash: ep, f,
// o:name, v:name, a:name); then per lane with grants: window, window
// count, token window.
// ARGV: 1 the epoch the own counts were last added to ("" for none), 2
// candidate epoch, 3 process, 4 day key ttl s, 5 lanes n, 6 earlier lives
// n, then their names, then per lane: own count, last seen, parts
// n, then (process, part) pairs of the last view; then per lane with
// grants: window members count, then (score, member) pairs (a member holds
// the slots its name says, see windowLua), then token entries count, then
// (field, "score tokens") pairs.
// Reply: {epoch, contributed (0/1), created (0/1)}.
var seedScript = redis.NewScript(windowLua + `
-- The parts of a re-seed hash's fields h (HGETALL): per process its
-- part, and the day count's re-seeded part.
local function seed_parts(h)
  local o, v, al, names, known = {}, {}, {}, {}, {}
  local f = 0
  for j = 1, #h, 2 do
    local k, x = h[j], h[j + 1]
    local t, name = string.sub(k, 1, 2), string.sub(k, 3)
    if k == 'f' then
      f = tonumber(x) or 0
    elseif t == 'o:' or t == 'v:' or t == 'a:' then
      if t == 'o:' then o[name] = tonumber(x) or 0 end
      if t == 'v:' then v[name] = tonumber(x) or 0 end
      if t == 'a:' then al[name] = x end
      if not known[name] then
        known[name] = true
        names[#names + 1] = name
      end
    end
  end
  table.sort(names)
  local grp, member = {}, {}
  for _, m in ipairs(names) do
    local g = al[m]
    if g and g ~= m and o[g] and not o[m] then
      member[m] = true
      grp[g] = (grp[g] or 0) + (v[m] or 0)
    end
  end
  local part, sum = {}, 0
  for _, m in ipairs(names) do
    if member[m] then
      part[m] = 0
    else
      part[m] = math.max(o[m] or 0, (v[m] or 0) + (grp[m] or 0))
    end
    sum = sum + part[m]
  end
  return part, names, math.max(f, sum)
end

local ep = redis.call('GET', KEYS[1])
local known = ARGV[1]
local contribute = false
local created = 0
if not ep then
  ep = ARGV[2]
  redis.call('SET', KEYS[1], ep)
  contribute, created = true, 1
elseif known ~= ep then
  contribute = true
end
if not contribute then return {ep, 0, 0} end
-- Who has added its counts to this epoch (the cluster's view says
-- re-seeding until every process it last saw has: redis_usage.go).
local sk = KEYS[1] .. ':seeded'
redis.call('HSET', sk, ARGV[3], ep)
redis.call('EXPIRE', sk, 600)
local n = tonumber(ARGV[5])
local me = ARGV[3]
local prevs = {}
for j = 1, tonumber(ARGV[6]) do prevs[j] = ARGV[6 + j] end
local a = 7 + #prevs
for i = 1, n do
  local own, seen, np = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local dk, uk, hk = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  if redis.call('HGET', hk, 'ep') ~= ep then redis.call('DEL', hk) end
  local before, _, base = seed_parts(redis.call('HGETALL', hk))
  redis.call('HSET', hk, 'ep', ep)
  if seen > (tonumber(redis.call('HGET', hk, 'f') or '0') or 0) then redis.call('HSET', hk, 'f', seen) end
  redis.call('HINCRBY', hk, 'o:' .. me, own)
  for _, prev in ipairs(prevs) do
    if prev ~= me then
      local cur = redis.call('HGET', hk, 'a:' .. prev)
      if not cur or me < cur then redis.call('HSET', hk, 'a:' .. prev, me) end
    end
  end
  for j = 1, np do
    local p, x = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    if x > (tonumber(redis.call('HGET', hk, 'v:' .. p) or '0') or 0) then redis.call('HSET', hk, 'v:' .. p, x) end
  end
  local after, names, nb = seed_parts(redis.call('HGETALL', hk))
  if nb ~= base then redis.call('INCRBY', dk, nb - base) end
  for _, p in ipairs(names) do
    local d = after[p] - (before[p] or 0)
    if d ~= 0 and redis.call('HINCRBY', uk, p, d) < 0 then redis.call('HSET', uk, p, 0) end
  end
  redis.call('EXPIRE', dk, ARGV[4])
  redis.call('EXPIRE', uk, ARGV[4])
  redis.call('EXPIRE', hk, ARGV[4])
end
for k = 1 + 3 * n + 1, #KEYS, 3 do
  local m = tonumber(ARGV[a])
  a = a + 1
  local w = win_open(KEYS[k], KEYS[k + 1])
  for j = 1, m do
    win_add(w, ARGV[a], ARGV[a + 1], win_slots(ARGV[a + 1]))
    a = a + 2
  end
  redis.call('PEXPIRE', KEYS[k], 180000)
  w.dirty = true
  win_close(w, nil, 180000)
  local t = tonumber(ARGV[a])
  a = a + 1
  for j = 1, t do
    redis.call('HSET', KEYS[k + 2], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  if t > 0 then redis.call('PEXPIRE', KEYS[k + 2], 180000) end
end
return {ep, 1, created}
`)

// stateScript raises a lane's cooldown or exhaustion (never lowers it) and
// publishes the event. The hash expires after both end, unless it records
// a stop or resume (stopScript): that one stays.
//
// KEYS: 1 lane state. ARGV: 1 field ("cool" or "exhausted"), 2 until ms,
// 3 channel, 4 message. Reply: 1 when raised, 0 when already later.
var stateScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
local u = tonumber(ARGV[2])
if u <= cur then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local c = tonumber(redis.call('HGET', KEYS[1], 'cool') or '0') or 0
local e = tonumber(redis.call('HGET', KEYS[1], 'exhausted') or '0') or 0
if redis.call('HEXISTS', KEYS[1], 'stopat') == 0 then
  redis.call('PEXPIREAT', KEYS[1], math.max(c, e) + 1000)
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`)

// heartbeatScript records this process alive until now + ttl and returns
// how many processes are alive (this one included), 1 when this process
// was not counted alive until now (its first heartbeat, or its last one
// expired or was lost with Redis's state), else 0, and the cluster's epoch
// ("" when Redis has none: it restarted empty). With a limits prefix it
// also renews this process's limits registration (written again whole:
// Redis may have lost it) for twice the ttl, and reports the first lane
// whose limits a live process registered otherwise (limitsScript refuses
// that at start; a running process is told and keeps its registration).
// With view lanes, and when the epoch is the one this process joined, it
// also reads the cluster's view (viewLua: Redis's now, the live processes'
// names, each lane's day count and window, the token windows of the lanes
// with TPM), so that one
// round trip does everything a heartbeat reads.
//
// It also deletes this process's fix mark (deadFixScript: set only by a
// process started on this process's own Local store file after it died; a
// heartbeat of it delivered after that start deletes it): a process that
// beats after the mark may be alive, and a later charge of it then adds
// its day units again (the safe side).
//
// KEYS: 1 processes (zset), 2 epoch, 3 this process's fix mark, then per
// view lane: window, day count; then per view lane: use of the day; then
// per view lane with TPM: token window.
// ARGV: 1 process, 2 ttl ms, 3 now ms (0: TIME), 4 the epoch this process
// joined ("": no view), 5 window ms, 6 rounding ms (1000), 7 view lanes n
// (0: no view), 8 when the call was made (ms, on the scripts' clock, as
// early as it may have been: Redis.sentClock; 0: now), 9 prefix of the
// per-process limits hashes ("": no limits), then (lane, value) pairs.
// The process's liveness counts from ARGV 8, never from a later now: a
// call delivered late (written to the socket before a partition, run when
// it heals, after the process took its call for failed and may have begun
// its outage's share) renews the entry only as of when it was made (never
// lowering a later one's), and prunes only the entries expired by then;
// one older than the TTL renews nothing (see redis_join.go).
// Reply: {live, added, epoch, lane, theirs, process} (the last three ""
// without a conflict), then, with a view, viewLua's reply. The processes
// zset lives procsLife after the last heartbeat (an expired entry is
// pruned by the next heartbeat): a process joining after an outage of
// any length that Redis survived sees the heartbeats of the processes of
// the outage as overdue (redis_join.go).
var heartbeatScript = redis.NewScript(clockLua + tokensLua + viewLua + `
local now = clock(ARGV[3])
local ttl = tonumber(ARGV[2])
local at = tonumber(ARGV[8]) or 0
if at <= 0 or at > now then at = now end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', at)
local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
local added = 0
if old <= now then added = 1 end
if at + ttl > now and at + ttl > old then redis.call('ZADD', KEYS[1], at + ttl, ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], math.max(ttl * 2, ` + procsLife + `))
redis.call('DEL', KEYS[3])
local ep = redis.call('GET', KEYS[2]) or ''
local out = {redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'), added, ep, '', '', ''}
if ARGV[9] ~= '' then
  local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
  local found = false
  for _, p in ipairs(live) do
    if p ~= ARGV[1] and not found then
      for i = 10, #ARGV, 2 do
        local v = redis.call('HGET', ARGV[9] .. p, ARGV[i])
        if v and v ~= ARGV[i + 1] then
          out[4], out[5], out[6] = ARGV[i], v, p
          found = true
          break
        end
      end
    end
  end
  local mine = ARGV[9] .. ARGV[1]
  redis.call('DEL', mine)
  for i = 10, #ARGV, 2 do redis.call('HSET', mine, ARGV[i], ARGV[i + 1]) end
  redis.call('PEXPIRE', mine, ttl * 2)
end
local n = tonumber(ARGV[7])
if n == 0 or ARGV[4] == '' or ep ~= ARGV[4] then return out end
return view(out, 4, n, now, tonumber(ARGV[5]), tonumber(ARGV[6]), KEYS[1])
`)

// limitsScript registers this process's limits of each lane, for expiry ms
// (Heartbeat renews it); it refuses when a live process (its heartbeat not
// expired) registered other limits for one of the lanes.
//
// KEYS: 1 processes (zset). ARGV: 1 process, 2 now ms (0: TIME), 3 prefix
// of the per-process limits hashes, 4 expiry ms (0: only check, write
// nothing), then (lane, value) pairs.
// Reply: {} when registered (or, checking, no conflict), else {lane,
// theirs, process}.
var limitsScript = redis.NewScript(clockLua + `
local now = clock(ARGV[2])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
for _, p in ipairs(live) do
  if p ~= ARGV[1] then
    for i = 5, #ARGV, 2 do
      local v = redis.call('HGET', ARGV[3] .. p, ARGV[i])
      if v and v ~= ARGV[i + 1] then return {ARGV[i], v, p} end
    end
  end
end
if tonumber(ARGV[4]) == 0 then return {} end
local mine = ARGV[3] .. ARGV[1]
redis.call('DEL', mine)
for i = 5, #ARGV, 2 do redis.call('HSET', mine, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', mine, tonumber(ARGV[4]))
return {}
`)

// formatText returns a conflict's registration theirs and this process's
// limits mine for its message: without the window format when theirs has
// this one, else with both formats (an older slideshowd registers none:
// format 1).
func formatText(theirs, mine string) (string, string) {
	if t, ok := strings.CutSuffix(theirs, windowFormat); ok {
		return t, mine
	}
	if !strings.Contains(theirs, ", window format ") {
		theirs += ", window format 1 (an older slideshowd: all processes of a cluster must run the same version)"
	}
	return theirs, mine + windowFormat
}
