package scheduler

import (
	"strings"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
)

// Summary is a snapshot of the scheduler: queues, running jobs and the
// quota use of every lane. It never holds a secret.
type Summary struct {
	Time         time.Time      `json:"time"`
	Classes      []ClassSummary `json:"classes"`
	DisabledKeys []DisabledKey  `json:"disabled_keys"`
}

// DisabledKey is a key out of service.
type DisabledKey struct {
	ID      string    `json:"id"`
	Project string    `json:"project"`
	Reason  string    `json:"reason"`
	Since   time.Time `json:"since,omitzero"` // zero when unknown
}

// ClassSummary describes one class.
type ClassSummary struct {
	Name        string `json:"name"`
	Concurrency int    `json:"concurrency"`
	Running     int    `json:"running"`
	// Queued by priority; Delayed counts jobs waiting out a retry backoff.
	QueuedHigh   int `json:"queued_high"`
	QueuedNormal int `json:"queued_normal"`
	QueuedLow    int `json:"queued_low"`
	Delayed      int `json:"delayed"`
	// Day totals over enabled lanes.
	Day          string `json:"day"`
	DayUsed      int    `json:"day_used"`
	DayLimit     int    `json:"day_limit"`
	DayRemaining int    `json:"day_remaining"`
	RPMLimit     int    `json:"rpm_limit"`
	Keys         int    `json:"keys"` // enabled keys
	Critical     bool   `json:"critical"`
	// DayResetsAt is the next Pacific midnight: when every lane's day
	// count starts again.
	DayResetsAt time.Time `json:"day_resets_at"`
	// Wait says why the class's queued jobs wait for quota; nil when they
	// do not (or nothing is queued).
	Limits bucket.Limits `json:"limits"`
	Wait   *Wait         `json:"wait,omitempty"`
	Lanes  []LaneSummary `json:"lanes"`
}

// LaneSummary describes one lane: a project on a class.
type LaneSummary struct {
	Project      string   `json:"project"`
	Keys         []string `json:"keys"`
	DisabledKeys []string `json:"disabled_keys,omitempty"`
	Stopped      string   `json:"stopped,omitempty"` // why the lane is stopped, e.g. ReasonNoQuota
	// Reason says in words why a lane that is not enabled serves nothing:
	// its Stopped reason, or the reasons of its disabled keys, e.g. "out of
	// credit" or "expired (key2); leaked (key3)". "" for an enabled lane.
	Reason         string    `json:"reason,omitempty"`
	Enabled        bool      `json:"enabled"`
	RPMUsed        int       `json:"rpm_used"` // requests in the last 60 s
	RPMLimit       int       `json:"rpm_limit"`
	TPMUsed        int       `json:"tpm_used,omitempty"`
	TPMLimit       int       `json:"tpm_limit,omitempty"`
	DayUsed        int       `json:"day_used"`
	DayLimit       int       `json:"day_limit"`
	CoolUntil      time.Time `json:"cool_until,omitzero"`
	ExhaustedUntil time.Time `json:"exhausted_until,omitzero"`
}

// Summary returns a snapshot at the current time. It works before Run.
func (s *Scheduler) Summary() Summary {
	now := time.Now()
	sum := Summary{Time: now, DisabledKeys: []DisabledKey{}}
	keys := s.pool.Keys()
	why := make(map[string]string)
	for _, k := range keys {
		if k.Disabled != "" {
			why[k.ID] = k.Disabled
			sum.DisabledKeys = append(sum.DisabledKeys, DisabledKey{ID: k.ID, Project: k.Project, Reason: k.Disabled, Since: s.disabledSince(k.ID)})
		}
	}
	for _, r := range s.order {
		u := r.class.Usage(now)
		cs := ClassSummary{
			Name: r.name, Limits: u.Limits,
			Day: u.Day, DayUsed: u.Used, DayLimit: u.Limit, DayRemaining: u.Remaining,
			RPMLimit: u.RPMLimit, Critical: u.Critical, DayResetsAt: bucket.NextMidnight(now, s.cfg.Location),
		}
		if w, ok := r.classWait(now); ok {
			cs.Wait = &w
		}
		r.mu.Lock()
		cs.Running = r.running
		cs.Concurrency = r.concurrencyLocked()
		cs.QueuedLow = r.queues[level(PriorityLow)].live
		cs.QueuedNormal = r.queues[level(PriorityNormal)].live
		cs.QueuedHigh = r.queues[level(PriorityHigh)].live
		cs.Delayed = len(r.delayed)
		r.mu.Unlock()
		for _, lu := range u.Lanes {
			cs.Keys += len(lu.Keys)
			cs.Lanes = append(cs.Lanes, LaneSummary{
				Project: lu.Project, Keys: lu.Keys, DisabledKeys: lu.DisabledKeys, Stopped: lu.Stopped, Enabled: lu.Enabled,
				RPMUsed: lu.RPMUsed, RPMLimit: u.Limits.RPM, TPMUsed: lu.TPMUsed, TPMLimit: u.Limits.TPM,
				DayUsed: lu.DayUsed, DayLimit: u.Limits.RPD, CoolUntil: lu.CoolUntil, ExhaustedUntil: lu.ExhaustedUntil,
				Reason: laneReason(lu, why),
			})
		}
		sum.Classes = append(sum.Classes, cs)
	}
	return sum
}

// laneReason says why a lane that is not enabled serves nothing.
func laneReason(lu bucket.LaneUsage, why map[string]string) string {
	if lu.Enabled {
		return ""
	}
	if lu.Stopped != "" {
		return lu.Stopped
	}
	var order []string
	byReason := make(map[string][]string)
	for _, id := range lu.DisabledKeys {
		r := why[id]
		if byReason[r] == nil {
			order = append(order, r)
		}
		byReason[r] = append(byReason[r], id)
	}
	if len(order) == 1 {
		return order[0]
	}
	parts := make([]string, len(order))
	for i, r := range order {
		parts[i] = r + " (" + strings.Join(byReason[r], ", ") + ")"
	}
	return strings.Join(parts, "; ")
}
