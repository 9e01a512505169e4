package store

import (
	"context"
	"fmt"
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

// keepLocal writes ev, a change of the shared state made by another
// process or found by a re-read, to the Local store. A key disabled keeps
// the Local record when the key is disabled there already (its reason,
// time and fingerprint); otherwise its time is the change's (ev.At; the
// Local clock's now when zero). A lane's state is read, changed and written
// under localMu, so that it does not race with SetLaneState; a cooldown or
// exhaustion only raises the Local time. Other kinds write nothing.
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
		return s.Local.EnableKey(ctx, ev.KeyID)
	case "stopped", "resumed", "cool", "exhausted":
	default:
		return nil
	}
	if err := checkLane(ev.Lane); err != nil {
		return err
	}
	s.localMu.Lock()
	defer s.localMu.Unlock()
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
	case "resumed":
		st.Stopped, st.Config = "", ""
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
// state LaneStates returns (the cluster's stop, the later of each time).
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
	for _, d := range local {
		if !keep[d.KeyID] {
			if err := s.Local.EnableKey(ctx, d.KeyID); err != nil {
				return fmt.Errorf("keeping key %s enabled by the cluster: %w", d.KeyID, err)
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
	return nil
}
