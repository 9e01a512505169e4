package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The cluster's changes, kept in the Local store.
//
// A change of the shared state made by another process (a key disabled or
// enabled, a lane stopped or resumed, a cooldown or exhaustion raised)
// reaches this process through Watch, by pub/sub or by a re-read of the
// shared state (after a lost subscription, a version change, a reconnect
// after an outage). Watch writes each one to the Local store before it
// reports it (keepLocal), and OpenRedis makes the Local store agree with
// the shared state once it joined (agreeLocal). So the process's data
// directory says what the cluster says (slideshowd keys and lanes with no
// daemon read it), and a later join never shares again, from the Local
// store, a change the cluster had superseded (publishLocal pushes the
// Local disables and stops into a Redis that lost them: an enable or
// resume made on another process would otherwise be undone when Redis
// restarts empty).
//
// An enable is kept with its time too (EnableTimes: Bolt and Memory keep
// it until the key is disabled again), by the process that made it, by
// every process that applied it and by every process that joins after it
// (agreeLocal copies the cluster's enable times). When Redis lost its
// state, each process shares the enables it keeps, with their times, as
// pending changes (publishEnables: at its join, and when it finds the
// cluster's epoch gone), so that a disable older than the enable, shared
// from the Local store of a process that was stopped when the key was
// enabled, loses to it whichever comes first (the conflict rule of
// redis_pending.go). An enable made on a data directory with no daemon
// while Redis was unreachable is shared the same way when a process on
// that data directory joins.
//
// A lane's resume is kept with its time the same way (ResumeTimes: Bolt and
// Memory keep it until the lane is stopped again), by the process that made
// it (ResumeLane, also while Redis is unreachable), by every process that
// applied it and by every process that joins after it (agreeLocal copies
// the time Redis recorded for the lane's last change of its stop when that
// change was a resume); publishResumes shares it as a pending change at its
// time, at a join and when the cluster's epoch is gone, unless Redis
// recorded a change of the lane's stop as late. So a resume made while
// Redis was unreachable by a process that stopped before it answered, or
// by slideshowd lanes resume on a data directory with no daemon and Redis
// not taking it, reaches the cluster when a process on that data directory
// joins. A stop has no time in the Local store: shared from there
// (publishLocal) or from a running process's view (seedView), it counts
// from the oldest time, so a kept resume wins over it even when the stop
// came later (the lane is stopped again by its next request if its project
// still has no quota).

// EnableTimes is a Local store that keeps when each key was enabled, until
// it is disabled again (Bolt and Memory implement it), so that an enable
// takes part in the conflict rule of changes shared at a join as a
// disable does (DisabledKey.At). Implementations are safe for concurrent
// use.
type EnableTimes interface {
	// EnableKeyAt enables the key as EnableKey does and records at as the
	// time of its enable; DisableKey forgets it.
	EnableKeyAt(ctx context.Context, keyID string, at time.Time) error
	// KeysEnabled returns, by key id, the time of each key's last enable
	// not followed by a disable (none: empty or nil).
	KeysEnabled(ctx context.Context) (map[string]time.Time, error)
}

// ResumeTimes is a Local store that keeps when each lane was resumed (its
// stop cleared), until it is stopped again (a SetLaneState with Stopped
// set forgets it; Bolt and Memory implement it), so that a resume takes
// part in the conflict rule of changes shared at a join. Implementations
// are safe for concurrent use.
type ResumeTimes interface {
	// ResumeLaneAt clears the lane's stop (LaneState.Stopped and Config;
	// its cooldown and exhaustion stay) and records at as the time of its
	// resume. An invalid lane is an error wrapping ErrInvalid.
	ResumeLaneAt(ctx context.Context, l LaneID, at time.Time) error
	// LanesResumed returns, by lane, the time of each lane's last resume
	// not followed by a stop (none: empty or nil).
	LanesResumed(ctx context.Context) (map[LaneID]time.Time, error)
}

// resumeLocal clears the lane's stop in the Local store, recording at when
// it keeps resume times; call with localMu held.
func (s *Redis) resumeLocal(ctx context.Context, l LaneID, at time.Time) error {
	if rt, ok := s.Local.(ResumeTimes); ok {
		return rt.ResumeLaneAt(ctx, l, at)
	}
	states, err := s.Local.LaneStates(ctx)
	if err != nil {
		return err
	}
	for _, st := range states {
		if st.Lane == l && st.Stopped != "" {
			st.Stopped, st.Config = "", ""
			return s.Local.SetLaneState(ctx, st)
		}
	}
	return nil
}

// stopTimes returns, for the lanes of RedisOptions.Projects that have one,
// the time Redis recorded for the last change of the lane's stop (a stop
// or a resume; Unix ms) and whether the lane is stopped there.
func (s *Redis) stopTimes(ctx context.Context) (map[LaneID]int64, map[LaneID]bool, error) {
	cmds := make([]*redis.SliceCmd, len(s.lanes))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, l := range s.lanes {
			cmds[i] = p.HMGet(ctx, s.stateKey(l), "stopat", "stopped")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, unavailable(err)
	}
	ats, stopped := make(map[LaneID]int64), make(map[LaneID]bool)
	for i, l := range s.lanes {
		v := cmds[i].Val()
		if len(v) < 2 {
			continue
		}
		sv, _ := v[0].(string)
		if ms, err := strconv.ParseInt(sv, 10, 64); err == nil {
			ats[l] = ms
		}
		if r, _ := v[1].(string); r != "" {
			stopped[l] = true
		}
	}
	return ats, stopped, nil
}

// publishResumes shares the resumes the Local store keeps (ResumeTimes) of
// the lanes of RedisOptions.Projects that Redis has no change of the
// lane's stop as late as: each as a pending change at its time, so a later
// change recorded meanwhile wins (see redis_pending.go). A lane stopped in
// the Local store is skipped (a file an older slideshowd stopped the lane
// in after the resume).
func (s *Redis) publishResumes(ctx context.Context) error {
	rt, ok := s.Local.(ResumeTimes)
	if !ok {
		return nil
	}
	res, err := rt.LanesResumed(ctx)
	if err != nil || len(res) == 0 {
		return err
	}
	states, err := s.Local.LaneStates(ctx)
	if err != nil {
		return err
	}
	stoppedHere := make(map[LaneID]bool)
	for _, st := range states {
		stoppedHere[st.Lane] = st.Stopped != ""
	}
	ats, _, err := s.stopTimes(ctx)
	if err != nil {
		return err
	}
	for _, l := range s.lanes {
		at, ok := res[l]
		if !ok || stoppedHere[l] {
			continue
		}
		at = at.Truncate(time.Millisecond)
		if ms, ok := ats[l]; ok && ms >= at.UnixMilli() {
			continue // Redis has this change or a later one
		}
		if err := s.pushNoted(ctx, pendingOp{kind: "resumed", lane: l, at: at}); err != nil {
			return err
		}
	}
	return nil
}

// publishKept shares the enables and the resumes the Local store keeps
// with their times (publishEnables, publishResumes).
func (s *Redis) publishKept(ctx context.Context) error {
	if err := s.publishEnables(ctx); err != nil {
		return err
	}
	return s.publishResumes(ctx)
}

// enableLocal enables the key in the Local store, recording at when it
// keeps enable times.
func (s *Redis) enableLocal(ctx context.Context, keyID string, at time.Time) error {
	if et, ok := s.Local.(EnableTimes); ok {
		return et.EnableKeyAt(ctx, keyID, at)
	}
	return s.Local.EnableKey(ctx, keyID)
}

// publishEnables shares the enables the Local store keeps (EnableTimes)
// that Redis has no change of as late: each as a pending change at its
// time, so a later change recorded meanwhile wins (see redis_pending.go).
func (s *Redis) publishEnables(ctx context.Context) error {
	et, ok := s.Local.(EnableTimes)
	if !ok {
		return nil
	}
	en, err := et.KeysEnabled(ctx)
	if err != nil || len(en) == 0 {
		return err
	}
	ats, err := s.rdb.HGetAll(ctx, s.keysAtKey()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable(err)
	}
	for _, id := range slices.Sorted(maps.Keys(en)) {
		at := en[id].Truncate(time.Millisecond)
		if ms, err := strconv.ParseInt(ats[id], 10, 64); err == nil && ms >= at.UnixMilli() {
			continue // Redis has this change or a later one
		}
		if err := s.pushNoted(ctx, pendingOp{kind: "enabled", keyID: id, at: at}); err != nil {
			return err
		}
	}
	return nil
}

// keepLocal writes ev, a change of the shared state made by another
// process or found by a re-read, to the Local store. A key disabled keeps
// the Local record when the key is disabled there already (its reason,
// time and fingerprint); otherwise its time is the change's (ev.At; the
// Local clock's now when zero), as is an enable's and a resume's. A lane's
// state is read, changed and written under localMu, so that it does not
// race with SetLaneState; a cooldown or exhaustion only raises the Local
// time. Other kinds write nothing.
func (s *Redis) keepLocal(ctx context.Context, ev SharedEvent) error {
	switch ev.Kind {
	case "disabled":
		local, err := s.Local.DisabledKeys(ctx)
		if err != nil {
			return err
		}
		for _, d := range local {
			if d.KeyID == ev.KeyID {
				return nil
			}
		}
		at := ev.At
		if at.IsZero() {
			at = s.localNow()
		}
		return s.Local.DisableKey(ctx, DisabledKey{KeyID: ev.KeyID, Reason: ev.Reason, At: at})
	case "enabled":
		at := ev.At
		if at.IsZero() {
			at = s.localNow()
		}
		return s.enableLocal(ctx, ev.KeyID, at)
	case "stopped", "resumed", "cool", "exhausted":
	default:
		return nil
	}
	if err := checkLane(ev.Lane); err != nil {
		return err
	}
	s.localMu.Lock()
	defer s.localMu.Unlock()
	if ev.Kind == "resumed" {
		at := ev.At
		if at.IsZero() {
			at = s.localNow()
		}
		return s.resumeLocal(ctx, ev.Lane, at)
	}
	states, err := s.Local.LaneStates(ctx)
	if err != nil {
		return err
	}
	st := LaneState{Lane: ev.Lane}
	for _, x := range states {
		if x.Lane == ev.Lane {
			st = x
		}
	}
	was := st
	switch ev.Kind {
	case "stopped":
		st.Stopped, st.Config = ev.Reason, ev.Config
	case "cool":
		st.CoolUntil = later(st.CoolUntil, ev.Until)
	case "exhausted":
		st.ExhaustedUntil = later(st.ExhaustedUntil, ev.Until)
	}
	if sameLaneState(st, was) {
		return nil
	}
	return s.Local.SetLaneState(ctx, st)
}

// sameLaneState reports whether a and b hold the same state.
func sameLaneState(a, b LaneState) bool {
	return a.Lane == b.Lane && a.CoolUntil.Equal(b.CoolUntil) && a.ExhaustedUntil.Equal(b.ExhaustedUntil) &&
		a.Stopped == b.Stopped && a.Config == b.Config
}

// agreeLocal makes the Local store agree with the shared state as this
// process reads it once it joined (after publishLocal): a key disabled in
// the Local store that the cluster enabled since is enabled there, a key
// the cluster has disabled is disabled there (a Local record of a disabled
// key is kept), and each lane of RedisOptions.Projects gets the merged
// state LaneStates returns (the cluster's stop, the later of each time);
// a lane whose last change of its stop in Redis is a resume keeps that
// change's time as its resume time unless the Local one is as late.
func (s *Redis) agreeLocal(ctx context.Context) error {
	local, err := s.Local.DisabledKeys(ctx)
	if err != nil {
		return err
	}
	merged, err := s.DisabledKeys(ctx)
	if err != nil {
		return err
	}
	in := make(map[string]bool, len(local))
	for _, d := range local {
		in[d.KeyID] = true
	}
	keep := make(map[string]bool, len(merged))
	for _, d := range merged {
		keep[d.KeyID] = true
		if !in[d.KeyID] {
			if err := s.Local.DisableKey(ctx, d); err != nil {
				return fmt.Errorf("keeping key %s disabled by the cluster: %w", d.KeyID, err)
			}
		}
	}
	// The cluster's enable times (the last change of a key not disabled
	// is its enable): kept where the Local store has none as late.
	ats, err := s.rdb.HGetAll(ctx, s.keysAtKey()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable(err)
	}
	var en map[string]time.Time
	et, times := s.Local.(EnableTimes)
	if times {
		if en, err = et.KeysEnabled(ctx); err != nil {
			return err
		}
	}
	for _, d := range local {
		if !keep[d.KeyID] {
			at := s.localNow()
			if ms, err := strconv.ParseInt(ats[d.KeyID], 10, 64); err == nil {
				at = time.UnixMilli(ms)
			}
			if err := s.enableLocal(ctx, d.KeyID, at); err != nil {
				return fmt.Errorf("keeping key %s enabled by the cluster: %w", d.KeyID, err)
			}
		}
	}
	if times {
		for _, id := range slices.Sorted(maps.Keys(ats)) {
			ms, err := strconv.ParseInt(ats[id], 10, 64)
			if err != nil || keep[id] || (!en[id].IsZero() && en[id].UnixMilli() >= ms) {
				continue
			}
			if err := et.EnableKeyAt(ctx, id, time.UnixMilli(ms)); err != nil {
				return fmt.Errorf("keeping key %s's enable by the cluster: %w", id, err)
			}
		}
	}
	s.localMu.Lock()
	defer s.localMu.Unlock()
	lstates, err := s.Local.LaneStates(ctx)
	if err != nil {
		return err
	}
	mstates, err := s.LaneStates(ctx)
	if err != nil {
		return err
	}
	lby := make(map[LaneID]LaneState, len(lstates))
	for _, st := range lstates {
		lby[st.Lane] = st
	}
	mby := make(map[LaneID]LaneState, len(mstates))
	for _, st := range mstates {
		mby[st.Lane] = st
	}
	for _, l := range s.lanes {
		want, ok := mby[l]
		if !ok {
			want = LaneState{Lane: l}
		}
		have, ok := lby[l]
		if !ok {
			have = LaneState{Lane: l}
		}
		if sameLaneState(want, have) {
			continue
		}
		if err := s.Local.SetLaneState(ctx, want); err != nil {
			return fmt.Errorf("keeping lane %s's state from the cluster: %w", l, err)
		}
	}
	rt, ok := s.Local.(ResumeTimes)
	if !ok {
		return nil
	}
	stopAt, stopped, err := s.stopTimes(ctx)
	if err != nil {
		return err
	}
	res, err := rt.LanesResumed(ctx)
	if err != nil {
		return err
	}
	for _, l := range s.lanes {
		ms, ok := stopAt[l]
		if !ok || stopped[l] || (!res[l].IsZero() && res[l].UnixMilli() >= ms) {
			continue
		}
		if err := rt.ResumeLaneAt(ctx, l, time.UnixMilli(ms)); err != nil {
			return fmt.Errorf("keeping lane %s's resume by the cluster: %w", l, err)
		}
	}
	return nil
}
