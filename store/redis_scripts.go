package store

import "github.com/redis/go-redis/v9"

// The Redis ledger's scripts. Each runs atomically in Redis: every
// check-and-take is one script, never a read, a decision and a write. Times
// are Unix milliseconds; "now" is ARGV's clock when it is > 0 (tests drive a
// virtual clock), else Redis's TIME, so process clocks need not agree.

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
// shared window as sent at the grant's expiry plus the margin, and Units day
// units, or refuses it whole.
//
// With TPM (ARGV 14 > 0) it also adds the process's overrun to its latest
// grant's entry in the lane's token window, refuses when the window's live
// budgets plus the grant's tokens would pass TPM, and records the grant's
// budget (see redis_tokens.go).
//
// KEYS: 1 epoch, 2 window (zset), 3 day count, 4 lane state (hash), 5 use
// (hash: process -> units of the day), 6 processes (zset), 7 the disabled
// keys' version, 8 token window (hash).
// ARGV: 1 epoch, 2 member prefix, 3 covers, 4 units, 5 ttl ms, 6 rpm, 7 rpd,
// 8 margin ms, 9 day key ttl s, 10 now ms (0: Redis TIME), 11 process,
// 12 window ms (60000; shorter in tests), 13 tokens, 14 tpm (0: none),
// 15 the field of the process's latest grant in the token window ("" for
// none), 16 its overrun to add, 17 partial (1: when the window has room for
// at least one slot but not for covers, grant one slot), 18.. the
// settlement of the lane's previous grant (settleLua), applied before
// anything else is checked.
//
// Replies: {"ok", dayCount, now, windowCount, keysVersion, covers granted};
// {"epoch", current or ""};
// {"exhausted"|"cool", until, now}; {"window"|"tpm", freeAt, now};
// {"day", dayCount, now}.
var grantScript = redis.NewScript(clockLua + tokensLua + settleLua + `
local ep = redis.call('GET', KEYS[1])
if ep ~= ARGV[1] then return {'epoch', ep or ''} end
settle(KEYS[2], 18)
local now = clock(ARGV[10])
local tpm, tneed = tonumber(ARGV[14]), tonumber(ARGV[13])
local tsum, tlive = 0, {}
if tpm > 0 then
  tok_fix(KEYS[8], ARGV[15], tonumber(ARGV[16]), now, tonumber(ARGV[12]))
  tsum, tlive = tok_live(KEYS[8], now, tonumber(ARGV[12]))
end
local st = redis.call('HMGET', KEYS[4], 'cool', 'exhausted')
local ex = tonumber(st[2] or '0') or 0
if ex > now then return {'exhausted', tostring(ex), tostring(now)} end
local cool = tonumber(st[1] or '0') or 0
if cool > now then return {'cool', tostring(cool), tostring(now)} end
local covers, units = tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl, rpm, rpd, margin = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local win = tonumber(ARGV[12])
-- A slot counts in every window that may hold its send: stored at the
-- grant's expiry plus the margin, it is live while its score > now - 60 s.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - win)
local live = redis.call('ZCARD', KEYS[2])
if live + covers > rpm and live < rpm and ARGV[17] == '1' then covers = 1 end
if live + covers > rpm then
  local k = math.min(live, live + covers - rpm)
  local e = redis.call('ZRANGE', KEYS[2], k - 1, k - 1, 'WITHSCORES')
  return {'window', tostring(math.floor(tonumber(e[2])) + win + 1), tostring(now)}
end
if tpm > 0 and tsum + tneed > tpm then
  return {'tpm', tostring(tok_free_at(tlive, tsum, tneed, tpm, win)), tostring(now)}
end
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
if used + units > rpd then return {'day', tostring(used), tostring(now)} end
if units > 0 then
  used = redis.call('INCRBY', KEYS[3], units)
  redis.call('EXPIRE', KEYS[3], ARGV[9])
  redis.call('HINCRBY', KEYS[5], ARGV[11], units)
  redis.call('EXPIRE', KEYS[5], ARGV[9])
end
local score = now + ttl + margin
local args = {}
for i = 1, covers do
  args[#args + 1] = score
  args[#args + 1] = ARGV[2] .. i
end
redis.call('ZADD', KEYS[2], unpack(args))
redis.call('PEXPIRE', KEYS[2], ttl + margin + win + 1000)
if tpm > 0 then tok_take(KEYS[8], ARGV[2], score, tneed, ttl + margin + win + 1000) end
return {'ok', tostring(used), tostring(now), tostring(live + covers), redis.call('GET', KEYS[7]) or '0', tostring(covers)}
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
// has none (it started empty), and adds this process's own counts when it
// must: when it creates the epoch, or when it had joined an earlier one
// (Redis lost what the process had granted there). Per lane, the epoch's
// re-seed keeps the sum of the own counts added and the largest last shared
// count seen; the day count's re-seeded part is the larger of the two
// (never below what the live processes sent, nor below what any of them
// saw, and not their sum: the counts seen already hold the others' units),
// and the grants of the new epoch come on top of it.
//
// KEYS: 1 epoch, then per lane: day count, use, re-seed (hash: ep, own,
// seen); then per lane with grants: window, token window.
// ARGV: 1 known epoch ("" for none), 2 candidate epoch, 3 process, 4 day key
// ttl s, 5 lanes n, then per lane: own count, last seen; then per lane with
// grants: slots count, then (score, member) pairs, then token entries
// count, then (field, "score tokens") pairs.
// Reply: {epoch, contributed (0/1)}.
var seedScript = redis.NewScript(`
local ep = redis.call('GET', KEYS[1])
local known = ARGV[1]
local contribute = false
if not ep then
  ep = ARGV[2]
  redis.call('SET', KEYS[1], ep)
  contribute = true
elseif known ~= '' and known ~= ep then
  contribute = true
end
if not contribute then return {ep, 0} end
local n = tonumber(ARGV[5])
for i = 1, n do
  local own = tonumber(ARGV[5 + 2 * i - 1])
  local seen = tonumber(ARGV[5 + 2 * i])
  local dk, uk, hk = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  local sown, sseen = 0, 0
  local h = redis.call('HMGET', hk, 'ep', 'own', 'seen')
  if h[1] == ep then
    sown, sseen = tonumber(h[2] or '0') or 0, tonumber(h[3] or '0') or 0
  end
  local base = math.max(sown, sseen)
  sown, sseen = sown + own, math.max(sseen, seen)
  local nb = math.max(sown, sseen)
  if nb > base then redis.call('INCRBY', dk, nb - base) end
  if own > 0 then redis.call('HINCRBY', uk, ARGV[3], own) end
  redis.call('HSET', hk, 'ep', ep, 'own', sown, 'seen', sseen)
  redis.call('EXPIRE', dk, ARGV[4])
  redis.call('EXPIRE', uk, ARGV[4])
  redis.call('EXPIRE', hk, ARGV[4])
end
local a = 6 + 2 * n
for k = 1 + 3 * n + 1, #KEYS, 2 do
  local m = tonumber(ARGV[a])
  a = a + 1
  for j = 1, m do
    redis.call('ZADD', KEYS[k], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  redis.call('PEXPIRE', KEYS[k], 180000)
  local t = tonumber(ARGV[a])
  a = a + 1
  for j = 1, t do
    redis.call('HSET', KEYS[k + 1], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  if t > 0 then redis.call('PEXPIRE', KEYS[k + 1], 180000) end
end
return {ep, 1}
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
// also reads the cluster's view (viewLua: Redis's now, each lane's day
// count and window, the token windows of the lanes with TPM), so that one
// round trip does everything a heartbeat reads.
//
// KEYS: 1 processes (zset), 2 epoch, then per view lane: window, day count;
// then per view lane with TPM: token window.
// ARGV: 1 process, 2 ttl ms, 3 now ms (0: TIME), 4 the epoch this process
// joined ("": no view), 5 window ms, 6 rounding ms (1000), 7 view lanes n
// (0: no view), 8 prefix of the per-process limits hashes ("": no
// limits), then (lane, value) pairs.
// Reply: {live, added, epoch, lane, theirs, process} (the last three ""
// without a conflict), then, with a view, viewLua's reply.
var heartbeatScript = redis.NewScript(clockLua + tokensLua + viewLua + `
local now = clock(ARGV[3])
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local added = redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
local ep = redis.call('GET', KEYS[2]) or ''
local out = {redis.call('ZCARD', KEYS[1]), added, ep, '', '', ''}
if ARGV[8] ~= '' then
  local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
  local found = false
  for _, p in ipairs(live) do
    if p ~= ARGV[1] and not found then
      for i = 9, #ARGV, 2 do
        local v = redis.call('HGET', ARGV[8] .. p, ARGV[i])
        if v and v ~= ARGV[i + 1] then
          out[4], out[5], out[6] = ARGV[i], v, p
          found = true
          break
        end
      end
    end
  end
  local mine = ARGV[8] .. ARGV[1]
  redis.call('DEL', mine)
  for i = 9, #ARGV, 2 do redis.call('HSET', mine, ARGV[i], ARGV[i + 1]) end
  redis.call('PEXPIRE', mine, ttl * 2)
end
local n = tonumber(ARGV[7])
if n == 0 or ARGV[4] == '' or ep ~= ARGV[4] then return out end
return view(out, 3, n, now, tonumber(ARGV[5]), tonumber(ARGV[6]))
`)

// limitsScript registers this process's limits of each lane, for expiry ms
// (Heartbeat renews it); it refuses when a live process (its heartbeat not
// expired) registered other limits for one of the lanes.
//
// KEYS: 1 processes (zset). ARGV: 1 process, 2 now ms (0: TIME), 3 prefix
// of the per-process limits hashes, 4 expiry ms, then (lane, value) pairs.
// Reply: {} when registered, else {lane, theirs, process}.
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
local mine = ARGV[3] .. ARGV[1]
redis.call('DEL', mine)
for i = 5, #ARGV, 2 do redis.call('HSET', mine, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', mine, tonumber(ARGV[4]))
return {}
`)
