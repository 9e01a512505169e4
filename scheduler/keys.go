package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// ReasonOperator is the reason of a key an operator disabled (DisableKey).
const ReasonOperator = "disabled by an operator"

// KeyStatus is what an operator sees of one key: never its secret.
type KeyStatus struct {
	ID      string `json:"id"`
	Project string `json:"project"`
	// Disabled is the reason the key is out of service; "" when enabled.
	Disabled string `json:"disabled,omitempty"`
	// DisabledSince is when it was disabled; zero when enabled or unknown.
	DisabledSince time.Time `json:"disabled_since,omitzero"`
	// ClusterPending, with a shared Store (store.Redis), says that the
	// key's last disable or enable here was made while Redis was
	// unreachable: this process applies it, the other processes learn it
	// when Redis answers again (store.ErrPending). False otherwise.
	ClusterPending bool `json:"cluster_pending,omitempty"`
	// Classes gives the state of the key's lane (its project) on each class.
	Classes []KeyClassState `json:"classes"`
}

// KeyClassState is the state of a key's lane on one class.
type KeyClassState struct {
	Class string `json:"class"`
	// State is "ok", "disabled" (this key), "stopped" (the lane has no
	// quota on this model; Reason says why), "cooling" (after a 429, its
	// own or another process's), "held" (with a shared Store: the cluster
	// refused a grant with no 429 behind it; Reason says why, one of the
	// Hold... words), "exhausted" (a per-day 429) or "day_used" (the
	// lane's RPD is spent).
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Until is when a cooling, held, exhausted or day_used lane serves
	// again (for day_used and HoldDay: the next Pacific midnight; a HoldDay
	// ends sooner when a heartbeat reads the lane's shared count below RPD,
	// see HoldDay); zero otherwise.
	Until time.Time `json:"until,omitzero"`
}

// disabledInfo is what the scheduler remembers of a disabled key.
type disabledInfo struct {
	reason string
	since  time.Time
}

// setDisabled takes a key out of service on every class and records when
// and why, replacing an earlier reason.
func (s *Scheduler) setDisabled(id, reason string, at time.Time) {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	s.pool.Disable(id, reason)
	s.disabledKeys[id] = disabledInfo{reason: reason, since: at}
}

// disableOnce takes a key out of service on every class, as setDisabled,
// unless it is out already (its reason and since are kept then); it reports
// whether this call took it out. The check and the change are one step under
// keysMu, so of the classes that find the same key unusable at once exactly
// one is told true: that one stores, logs and emits the disable.
func (s *Scheduler) disableOnce(id, reason string, at time.Time) bool {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if _, out := s.disabledKeys[id]; out {
		return false
	}
	s.pool.Disable(id, reason)
	s.disabledKeys[id] = disabledInfo{reason: reason, since: at}
	return true
}

// setEnabled puts a key back into service on every class and forgets when
// and why it was disabled.
func (s *Scheduler) setEnabled(id string) {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	s.pool.Enable(id)
	delete(s.disabledKeys, id)
}

func (s *Scheduler) disabledSince(id string) time.Time {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	return s.disabledKeys[id].since
}

// DisableKey takes a key out of service on every class, durably, with
// reason (ReasonOperator when empty). Jobs running on it finish; no new one
// starts on it until EnableKey. A key disabled this way has no fingerprint:
// a new secret in the configuration does not bring it back. It returns an
// error wrapping ErrUnknownKey for a key not configured. With a shared Store
// whose Redis is unreachable, the key is disabled here and the change
// reaches the other processes when Redis answers (KeyStatus.ClusterPending):
// that is not an error.
func (s *Scheduler) DisableKey(ctx context.Context, keyID, reason string) error {
	if reason == "" {
		reason = ReasonOperator
	}
	project, ok := s.pool.KeyProject(keyID)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownKey, keyID)
	}
	now := time.Now()
	if err := s.store.DisableKey(ctx, store.DisabledKey{KeyID: keyID, Reason: reason, At: now}); err != nil {
		if !errors.Is(err, store.ErrPending) {
			return fmt.Errorf("scheduler: disabling key %q: %w", keyID, err)
		}
		s.log.Warn().Err(err).Str("key", keyID).Msg("key disabled here; the other processes learn it when Redis answers")
	}
	s.setDisabled(keyID, reason, now)
	s.log.Warn().Str("key", keyID).Str("project", project).Str("reason", reason).Msg("key disabled by an operator")
	s.emit(Event{Kind: EventKeyDisabled, Time: now, KeyID: keyID, Project: project, Reason: reason})
	for _, r := range s.order {
		r.signal()
	}
	return nil
}

// Keys returns every configured key, in configuration order, with its
// project, why and since when it is disabled, and its lane's state on each
// class. It works before Run.
func (s *Scheduler) Keys() []KeyStatus {
	now := time.Now()
	keys := s.pool.Keys()
	type laneKey struct{ class, project string }
	lanes := make(map[laneKey]bucket.LaneUsage)
	for _, r := range s.order {
		for _, lu := range r.class.Usage(now).Lanes {
			lanes[laneKey{r.name, lu.Project}] = lu
		}
	}
	pending := make(map[string]bool)
	if ps, ok := s.store.(pendingStore); ok {
		ids, _ := ps.Pending()
		for _, id := range ids {
			pending[id] = true
		}
	}
	out := make([]KeyStatus, 0, len(keys))
	for _, k := range keys {
		ks := KeyStatus{ID: k.ID, Project: k.Project, Disabled: k.Disabled, Classes: []KeyClassState{}, ClusterPending: pending[k.ID]}
		if k.Disabled != "" {
			ks.DisabledSince = s.disabledSince(k.ID)
		}
		for _, r := range s.order {
			lu := lanes[laneKey{r.name, k.Project}]
			cs := KeyClassState{Class: r.name, State: "ok"}
			switch {
			case k.Disabled != "":
				cs.State = "disabled"
			case lu.Stopped != "":
				cs.State, cs.Reason = "stopped", lu.Stopped
			case lu.ExhaustedUntil.After(now):
				cs.State, cs.Until = "exhausted", lu.ExhaustedUntil
			case lu.CoolUntil.After(now) && !lu.HeldUntil.After(lu.CoolUntil):
				cs.State, cs.Until = "cooling", lu.CoolUntil
			case lu.HeldUntil.After(now):
				cs.State, cs.Reason, cs.Until = "held", lu.HeldReason, lu.HeldUntil
			case lu.DayUsed >= r.class.Limits().RPD:
				cs.State, cs.Until = "day_used", bucket.NextMidnight(now, s.cfg.Location)
			}
			ks.Classes = append(ks.Classes, cs)
		}
		out = append(out, ks)
	}
	return out
}
