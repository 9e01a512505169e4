package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Changes of the shared keys and lane stops while Redis is unreachable.
//
// A key disabled or enabled, or a lane stopped or resumed, while Redis is
// unreachable is stored in the Local store at once (the process applies it
// itself), and kept in memory as pending, in order. The heartbeat that
// reaches Redis again pushes the pending changes, in order, before the
// process leaves its outage: each one is written, bumps the shared state's
// version and is published, as if it were made then, so the other processes
// apply it (through pub/sub, or the re-read a version change causes).
//
// Conflicts: every change of a key or of a lane's stop records its time (on
// the process's clock, Unix ms) in Redis, and a pending change is written
// only when it is not older than the last one recorded for the same key or
// lane: the last change by time wins, and of two at the same millisecond
// the disable (or the stop) wins. So an operator who enabled a key on
// another process after this process disabled it during the outage keeps
// it enabled; a key disabled anywhere after this process's enable stays
// disabled. A change made while Redis answers is always written (Redis
// orders it after every recorded one). When a pending change loses, the
// process applies the winner itself (Watch reports it as a change of the
// shared state, with Process ResyncProcess).
//
// A lane's cooldown or exhaustion (a 429) set while Redis is unreachable is
// kept too, the latest of each per lane, and shared first when Redis
// answers, if it has not ended by then: times only ever rise in Redis, so
// there is nothing to order.
//
// Pending changes live in memory: a process stopped before Redis answered
// again has them in its Local store only, and shares what it can from
// there when it joins again (publishLocal: disabled keys, lane stops,
// cooldowns and exhaustion; publishEnables and publishResumes: enables
// and resumes, with their times; see redis_local.go).

// ErrPending: Redis is unreachable, so a change of a key or of a lane's stop
// is stored in this process only for now; it is kept and reaches the other
// processes when Redis answers again (the next heartbeat that reaches it).
// An error wrapping ErrPending also wraps ErrUnavailable.
var ErrPending = errors.New("store: redis: unreachable: the change is stored in this process and reaches the other processes when Redis answers")

// pendingOp is a change made while Redis was unreachable.
type pendingOp struct {
	kind   string // "disabled", "enabled" (keyID), "stopped", "resumed" (lane)
	keyID  string
	lane   LaneID
	reason string
	config string
	at     time.Time // local clock
	recAt  time.Time // "disabled": DisabledKey.At
}

// stopInfo is a lane's shared stop as this process last saw it.
type stopInfo struct{ reason, config string }

// pendingError is the error of a change kept pending: it wraps ErrPending
// and the error that made Redis unreachable.
func pendingError(cause string) error {
	for strings.HasPrefix(cause, ErrUnavailable.Error()+": ") { // said once, by the %w below
		cause = strings.TrimPrefix(cause, ErrUnavailable.Error()+": ")
	}
	return fmt.Errorf("%w (%w: %s)", ErrPending, ErrUnavailable, cause)
}

// change writes op to Redis now, or keeps it pending while Redis is
// unreachable (returning an error wrapping ErrPending). The Local store has
// it already.
func (s *Redis) change(ctx context.Context, op pendingOp) error {
	// This process's changes are ordered by their times: two in one
	// millisecond are a millisecond apart, so the later is not taken for
	// a tie with the earlier (see the conflict rule).
	s.f.mu.Lock()
	at := op.at.Truncate(time.Millisecond)
	if !at.After(s.f.lastOp) {
		at = s.f.lastOp.Add(time.Millisecond)
	}
	s.f.lastOp, op.at = at, at
	s.f.mu.Unlock()
	if s.queueIfDown(op, nil) {
		return pendingError(s.downReason())
	}
	bctx, cancel := context.WithTimeout(ctx, s.f.opTimeout)
	_, err := s.push(bctx, op, false)
	cancel()
	if err == nil {
		s.noteOp(op)
		return nil
	}
	if err = s.noAnswer(ctx, err); errors.Is(err, ErrUnavailable) {
		s.queueIfDown(op, err)
		return pendingError(err.Error())
	}
	return err
}

// noAnswer turns the error of a call bounded by opTimeout into one
// wrapping ErrUnavailable when Redis did not answer in time (ctx, the
// caller's, still going).
func (s *Redis) noAnswer(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: no answer within %v", ErrUnavailable, s.f.opTimeout)
	}
	return err
}

// queueIfDown appends op to the pending changes when Redis is unreachable
// (after marking it so when err is not nil) and reports whether it did.
// Pending changes exist only while the process is down: reconnect pushes
// them all before it ends the outage.
func (s *Redis) queueIfDown(op pendingOp, err error) bool {
	if err != nil {
		s.markDown(err)
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if !s.f.down {
		return false
	}
	s.f.ops = append(s.f.ops, op)
	return true
}

func (s *Redis) downReason() string {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.f.reason
}

// push writes op to Redis with its version bump and message; pending makes
// it yield to a later change (see the conflict rule above). It reports
// whether op was written.
func (s *Redis) push(ctx context.Context, op pendingOp, pending bool) (bool, error) {
	flag := "0"
	if pending {
		flag = "1"
	}
	at := op.at.UnixMilli()
	ev := SharedEvent{Process: s.process, Kind: op.kind, KeyID: op.keyID, Lane: op.lane, Reason: op.reason, Config: op.config, At: op.at.UTC()}
	var res int64
	var err error
	switch op.kind {
	case "disabled", "enabled":
		rec := disabledRecord(op.reason, op.recAt)
		msg, _ := json.Marshal(ev)
		res, err = keyScript.Run(ctx, s.rdb, []string{s.disabledKey(), s.keysVersionKey(), s.keysAtKey()},
			op.keyID, op.kind, rec, at, s.channel(), msg, flag).Int64()
	default:
		msg, _ := json.Marshal(ev)
		res, err = stopScript.Run(ctx, s.rdb, []string{s.stateKey(op.lane), s.keysVersionKey()},
			op.kind, op.reason, op.config, at, s.channel(), msg, flag).Int64()
	}
	if err != nil {
		return false, unavailable(err)
	}
	return res != 0, nil
}

// laneTimes is a lane's latest cooldown and exhaustion set while Redis was
// unreachable (zero: none).
type laneTimes struct{ cool, exhausted time.Time }

// keepTimes keeps st's cooldown and exhaustion, set while Redis is
// unreachable, for pushPending (the later of each wins), and reports
// whether st had one.
func (s *Redis) keepTimes(st LaneState) bool {
	if st.CoolUntil.IsZero() && st.ExhaustedUntil.IsZero() {
		return false
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.times == nil {
		s.f.times = make(map[LaneID]laneTimes)
	}
	t := s.f.times[st.Lane]
	if st.CoolUntil.After(t.cool) {
		t.cool = st.CoolUntil
	}
	if st.ExhaustedUntil.After(t.exhausted) {
		t.exhausted = st.ExhaustedUntil
	}
	s.f.times[st.Lane] = t
	return true
}

// pushTimes shares the cooldowns and exhaustion set while Redis was
// unreachable that have not ended yet (stateScript raises a lane's times,
// never lowers them: no conflict rule is needed), lane by lane; a lane
// whose push fails keeps its times for the next attempt.
func (s *Redis) pushTimes(ctx context.Context) error {
	s.f.mu.Lock()
	lanes := make([]LaneID, 0, len(s.f.times))
	for l := range s.f.times {
		lanes = append(lanes, l)
	}
	s.f.mu.Unlock()
	slices.SortFunc(lanes, compareLane)
	for _, l := range lanes {
		s.f.mu.Lock()
		t := s.f.times[l]
		s.f.mu.Unlock()
		if err := s.shareLive(ctx, l, t.cool, t.exhausted, s.localNow()); err != nil {
			return err
		}
		s.f.mu.Lock()
		if s.f.times[l] == t { // not raised meanwhile
			delete(s.f.times, l)
		}
		s.f.mu.Unlock()
	}
	return nil
}

// shareLive shares the lane's cooldown and exhaustion that end after now
// (shareTimes; nothing for times already over).
func (s *Redis) shareLive(ctx context.Context, l LaneID, cool, exhausted, now time.Time) error {
	st := LaneState{Lane: l}
	if cool.After(now) {
		st.CoolUntil = cool
	}
	if exhausted.After(now) {
		st.ExhaustedUntil = exhausted
	}
	return s.shareTimes(ctx, st)
}

// pushPending shares the cooldowns and exhaustion set meanwhile
// (pushTimes), then pushes the pending changes in order and ends the outage
// once none is left (changes made meanwhile are queued and pushed too).
// Call with f.recMu held.
func (s *Redis) pushPending(ctx context.Context) error {
	if err := s.pushTimes(ctx); err != nil {
		return err
	}
	for {
		s.f.mu.Lock()
		if len(s.f.ops) == 0 {
			s.f.down = false
			// At least one heartbeat's life, and never earlier than a
			// recovery already under way: an outage within the longer
			// recovery after an empty restart (newEpoch) must not cut it
			// short, since the slots lost with Redis's state are still
			// in the API's minute until then.
			s.f.recovers = later(s.f.recovers, s.localNow().Add(s.ttl))
			s.f.mu.Unlock()
			return nil
		}
		op := s.f.ops[0]
		s.f.mu.Unlock()
		if _, err := s.push(ctx, op, true); err != nil {
			return err
		}
		// Written or not, the shared state as this process now believes
		// it is op's: when op lost, Watch's re-read finds the winner
		// differs and reports it, so this process applies it too.
		s.noteOp(op)
		s.f.mu.Lock()
		s.f.ops = s.f.ops[1:]
		s.f.mu.Unlock()
	}
}

// noteOp records op's result as seen in the shared state (see noteShared).
func (s *Redis) noteOp(op pendingOp) {
	switch op.kind {
	case "disabled":
		s.noteShared(op.keyID, disabledRecord(op.reason, op.recAt))
	case "enabled":
		s.noteShared(op.keyID, "")
	case "stopped":
		s.noteStop(op.lane, &stopInfo{op.reason, op.config})
	case "resumed":
		s.noteStop(op.lane, nil)
	}
}

// noteStop records a lane's shared stop (nil: none) that this process made
// or heard of, so a re-read does not report it again.
func (s *Redis) noteStop(l LaneID, st *stopInfo) {
	s.f.keysMu.Lock()
	defer s.f.keysMu.Unlock()
	if s.f.stops == nil {
		s.f.stops = make(map[LaneID]stopInfo)
	}
	if st == nil {
		delete(s.f.stops, l)
	} else {
		s.f.stops[l] = *st
	}
}

// Pending returns the changes of keys and lane stops made here while Redis
// was unreachable and not yet pushed to it: the key ids and the lanes, in
// order, each once. Both are empty while Redis answers.
func (s *Redis) Pending() (keys []string, lanes []LaneID) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	seenK, seenL := map[string]bool{}, map[LaneID]bool{}
	for _, op := range s.f.ops {
		if op.keyID != "" && !seenK[op.keyID] {
			seenK[op.keyID] = true
			keys = append(keys, op.keyID)
		}
		if op.keyID == "" && !seenL[op.lane] {
			seenL[op.lane] = true
			lanes = append(lanes, op.lane)
		}
	}
	return keys, lanes
}

// ResumeLane clears the lane's shared stop in Redis and tells the other
// processes, which resume the lane too. The Local state's cooldown and
// exhaustion are the caller's (SetLaneState); ResumeLane clears the Local
// stop too and, when the Local store keeps resume times (ResumeTimes),
// records the resume's time there, so that a later join shares it if Redis
// did not get it (see redis_local.go). Resuming a lane that is not stopped
// in Redis is not an error and still tells them. While Redis is
// unreachable the resume is kept pending and an error wrapping ErrPending
// returned.
func (s *Redis) ResumeLane(ctx context.Context, l LaneID) error {
	if err := checkLane(l); err != nil {
		return err
	}
	at := s.localNow()
	s.localMu.Lock()
	err := s.resumeLocal(ctx, l, at)
	s.localMu.Unlock()
	if err != nil {
		return err
	}
	return s.change(ctx, pendingOp{kind: "resumed", lane: l, at: at})
}

// seedView puts back, in a Redis that lost its state (the epoch this
// process joined was gone), the disabled keys and lane stops this process
// last saw there, as changes of the oldest time: any change made since
// wins over them. Other processes do the same with their views.
func (s *Redis) seedView(ctx context.Context) error {
	var ops []pendingOp
	s.f.keysMu.Lock()
	for id, v := range s.f.disabled {
		var rec struct {
			Reason string    `json:"reason"`
			At     time.Time `json:"at"`
		}
		_ = json.Unmarshal([]byte(v), &rec)
		ops = append(ops, pendingOp{kind: "disabled", keyID: id, reason: rec.Reason, recAt: rec.At, at: time.UnixMilli(1)})
	}
	for l, st := range s.f.stops {
		ops = append(ops, pendingOp{kind: "stopped", lane: l, reason: st.reason, config: st.config, at: time.UnixMilli(1)})
	}
	s.f.keysMu.Unlock()
	slices.SortFunc(ops, func(a, b pendingOp) int {
		if c := strings.Compare(a.keyID, b.keyID); c != 0 {
			return c
		}
		return compareLane(a.lane, b.lane)
	})
	for _, op := range ops {
		if _, err := s.push(ctx, op, true); err != nil {
			return err
		}
	}
	return nil
}

// publishLocal shares, when the process joins, the keys disabled, the lane
// stops and the cooldowns and exhaustion not over yet that its Local store
// has and Redis does not: changes made while
// Redis was unreachable by a process that stopped before it answered again
// (or by the CLI, which could not reach it). Each is pushed as a pending
// change (see the conflict rule above): a key's disable at the time it was
// disabled (DisabledKey.At), so an enable the cluster recorded after it
// wins; a stop at the oldest time, so any change of the lane's stop the
// cluster recorded wins, and so does a resume another process keeps and
// shares later (a stop has no time in the Local store; a lane stop is
// learned again from the lane's next request anyway). Only the lanes of
// RedisOptions.Projects are pushed.
func (s *Redis) publishLocal(ctx context.Context) error {
	keys, err := s.Local.DisabledKeys(ctx)
	if err != nil {
		return err
	}
	states, err := s.Local.LaneStates(ctx)
	if err != nil {
		return err
	}
	shared, err := s.rdb.HGetAll(ctx, s.disabledKey()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable(err)
	}
	var ops []pendingOp
	for _, d := range keys {
		if _, ok := shared[d.KeyID]; ok {
			continue
		}
		at := d.At
		if at.IsZero() {
			at = time.UnixMilli(1)
		}
		ops = append(ops, pendingOp{kind: "disabled", keyID: d.KeyID, reason: d.Reason, recAt: d.At, at: at.Truncate(time.Millisecond)})
	}
	mine := make(map[LaneID]bool, len(s.lanes))
	for _, l := range s.lanes {
		mine[l] = true
	}
	now := s.localNow()
	for _, st := range states {
		if !mine[st.Lane] {
			continue
		}
		// Times only rise in Redis (stateScript): raised and published
		// when later than the shared ones.
		if err := s.shareLive(ctx, st.Lane, st.CoolUntil, st.ExhaustedUntil, now); err != nil {
			return err
		}
		if st.Stopped == "" {
			continue
		}
		stopped, err := s.rdb.HGet(ctx, s.stateKey(st.Lane), "stopped").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return unavailable(err)
		}
		if stopped != "" {
			continue
		}
		ops = append(ops, pendingOp{kind: "stopped", lane: st.Lane, reason: st.Stopped, config: st.Config, at: time.UnixMilli(1)})
	}
	for _, op := range ops {
		if err := s.pushNoted(ctx, op); err != nil {
			return err
		}
	}
	return nil
}

// pushNoted pushes op as a pending change (it yields to a later one, see
// the conflict rule above) and, when it is written, records it as seen in
// the shared state (noteOp).
func (s *Redis) pushNoted(ctx context.Context, op pendingOp) error {
	written, err := s.push(ctx, op, true)
	if written {
		s.noteOp(op)
	}
	return err
}

// keysAtKey holds, per key id, the time of its last change (disable or
// enable), for the conflict rule of pending changes.
func (s *Redis) keysAtKey() string { return s.key("disabledat") }

// keyScript disables or enables a key in the shared state, records the
// change's time, bumps the version and publishes the event. A pending
// change yields to a later one (a disable wins a tie).
//
// KEYS: 1 disabled keys (hash), 2 version, 3 change times (hash).
// ARGV: 1 key id, 2 "disabled" or "enabled", 3 the disabled record, 4 at
// ms, 5 channel, 6 message, 7 pending ("1" or "0").
// Reply: 1 written, 0 yielded (nothing done).
var keyScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '')
local at = tonumber(ARGV[4])
if ARGV[7] == '1' and cur and (at < cur or (at == cur and ARGV[2] == 'enabled')) then return 0 end
if ARGV[2] == 'disabled' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if not cur or at > cur then redis.call('HSET', KEYS[3], ARGV[1], ARGV[4]) end
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
`)

// stopScript stops or resumes a lane in the shared state (fields stopped,
// config and stopat of the lane's state hash, which then never expires),
// bumps the shared state's version and publishes the event. A pending
// change yields to a later one (a stop wins a tie). A stop already in place
// with the same reason and configuration is not published again.
//
// KEYS: 1 lane state (hash), 2 version. ARGV: 1 "stopped" or "resumed",
// 2 reason, 3 config, 4 at ms, 5 channel, 6 message, 7 pending ("1"/"0").
// Reply: 1 written, 2 already so, 0 yielded.
var stopScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'stopat') or '')
local at = tonumber(ARGV[4])
if ARGV[7] == '1' and cur and (at < cur or (at == cur and ARGV[1] == 'resumed')) then return 0 end
local t = at
if cur and cur > t then t = cur end
if ARGV[1] == 'stopped' then
  if redis.call('HGET', KEYS[1], 'stopped') == ARGV[2] and redis.call('HGET', KEYS[1], 'config') == ARGV[3] then
    return 2
  end
  redis.call('HSET', KEYS[1], 'stopped', ARGV[2], 'config', ARGV[3], 'stopat', t)
else
  redis.call('HDEL', KEYS[1], 'stopped', 'config')
  redis.call('HSET', KEYS[1], 'stopat', t)
end
redis.call('PERSIST', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
`)

// ShareOptions name the cluster a change made outside its processes goes to
// (ShareKeyChange, ShareLaneResume).
type ShareOptions struct {
	Client  *redis.Client // required; the caller closes it
	Cluster string        // required: RedisOptions.Cluster of the processes
	// Process names the author in the change's message, e.g. "slideshowd
	// keys on host". Required.
	Process string
}

func (o ShareOptions) ledger() (*Redis, error) {
	if o.Client == nil {
		return nil, fmt.Errorf("%w: ShareOptions.Client: nil", ErrInvalid)
	}
	if err := checkID("ShareOptions.Cluster", o.Cluster); err != nil {
		return nil, err
	}
	if o.Process == "" {
		return nil, fmt.Errorf("%w: ShareOptions.Process: empty", ErrInvalid)
	}
	return &Redis{rdb: o.Client, prefix: o.Cluster + ":", process: o.Process}, nil
}

// ShareKeyChange writes a key's disable (d's reason and time) or enable,
// made without a running Redis ledger (slideshowd keys on a data directory
// while no daemon answers), to the cluster's shared state, with its version
// bump and message, so the running processes apply it; it does not join the
// cluster. The change is recorded at at (the conflict rule of pending
// changes). An error wraps ErrUnavailable when Redis did not answer.
func ShareKeyChange(ctx context.Context, o ShareOptions, d DisabledKey, disable bool, at time.Time) error {
	s, err := o.ledger()
	if err != nil {
		return err
	}
	op := pendingOp{kind: "enabled", keyID: d.KeyID, at: at}
	if disable {
		op.kind, op.reason, op.recAt = "disabled", d.Reason, d.At
	}
	_, err = s.push(ctx, op, false)
	return err
}

// ShareLaneResume clears a lane's shared stop, made without a running Redis
// ledger (slideshowd lanes resume on a data directory), and tells the
// running processes, which resume it; see ShareKeyChange.
func ShareLaneResume(ctx context.Context, o ShareOptions, l LaneID, at time.Time) error {
	if err := checkLane(l); err != nil {
		return err
	}
	s, err := o.ledger()
	if err != nil {
		return err
	}
	_, err = s.push(ctx, pendingOp{kind: "resumed", lane: l, at: at}, false)
	return err
}
