package scheduler

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// Summary is a snapshot of the scheduler: queues, running jobs and the
// quota use of every lane. It never holds a secret.
type Summary struct {
	Time         time.Time      `json:"time"`
	Classes      []ClassSummary `json:"classes"`
	DisabledKeys []DisabledKey  `json:"disabled_keys"`
	// Cluster is the cluster's view when the Store shares the quota with
	// other processes (store.Redis); nil otherwise.
	Cluster *ClusterSummary `json:"cluster,omitempty"`
}

// ClusterSummary is the shared quota of the processes of a cluster, as Redis
// holds it: the processes alive and, per lane, the shared window and day
// count with each process's part. Process names are not secret (host name,
// process id and a random suffix by default).
type ClusterSummary struct {
	Name      string   `json:"name"`      // the cluster (the prefix of its Redis keys)
	Process   string   `json:"process"`   // this process's name; "" when read without joining
	Processes []string `json:"processes"` // the processes alive (heartbeat within 15 s), sorted
	Day       string   `json:"day"`       // the Pacific day of the day counts
	// Error says why the view is missing (Redis did not answer within a
	// second); the other fields but Name, Process and Day are then empty.
	Error string             `json:"error,omitempty"`
	Lanes []ClusterLaneUsage `json:"lanes"`
	// Reseeding is true while Redis lost the cluster's state (restarted
	// empty) and not every process has put its counts back yet
	// (store.ClusterUsage.Reseeding): Processes may then miss live
	// processes, and each lane's DayUsed is at least this process's own
	// count and the last shared count it saw, RedisDayUsed being what
	// Redis holds. Absent (false) otherwise.
	Reseeding bool `json:"reseeding,omitempty"`
	// ReseedWaiting names, while Reseeding, the processes this process
	// last saw alive that have not re-seeded yet (absent when not known).
	ReseedWaiting []string `json:"reseed_waiting,omitempty"`
}

// ClusterLaneUsage is one lane's shared use. Window counts the slots granted
// to the processes whose latest possible send is less than 60 s ago (sent or
// not yet: the shared window the next grant is checked against, never more
// than RPMLimit); DayUsed is the shared day count (day units granted today,
// less those given back: it may exceed the requests sent by the units
// granted and not used yet).
type ClusterLaneUsage struct {
	Class      string `json:"class"`
	Project    string `json:"project"`
	WindowUsed int    `json:"window_used"`
	RPMLimit   int    `json:"rpm_limit"`
	DayUsed    int    `json:"day_used"`
	DayLimit   int    `json:"day_limit"`
	// TokensUsed is the input tokens in the lane's shared TPM window (the
	// grants' budgets, overruns added; at most TPMLimit); both are absent
	// (0) for a class without TPM.
	TokensUsed int64                `json:"tokens_used,omitempty"`
	TPMLimit   int                  `json:"tpm_limit,omitempty"`
	Processes  []ClusterProcessLane `json:"processes"`
	// RedisDayUsed is, while the cluster is Reseeding, the day count
	// Redis holds (day units; DayUsed is then raised to at least this
	// process's own count and the last count it saw); nil (absent)
	// otherwise.
	RedisDayUsed *int `json:"redis_day_used,omitempty"`
}

// ClusterProcessLane is one process's part of a lane's shared use. A
// process that is no longer alive keeps its part of the day count.
type ClusterProcessLane struct {
	Process    string `json:"process"`
	Alive      bool   `json:"alive"`
	WindowUsed int    `json:"window_used"`
	DayUsed    int    `json:"day_used"`
	// TokensUsed is the process's part of the lane's TokensUsed.
	TokensUsed int64 `json:"tokens_used,omitempty"`
}

// clusterViewer is a Store that can show the cluster's shared use
// (store.Redis).
type clusterViewer interface {
	Usage(ctx context.Context, day string) (store.ClusterUsage, error)
}

// ClusterTimeout bounds how long Summary waits for the cluster's view.
const ClusterTimeout = time.Second

// ClusterView converts the store's cluster usage to its summary.
func ClusterView(u store.ClusterUsage, day string, err error) *ClusterSummary {
	cs := &ClusterSummary{Name: u.Cluster, Process: u.Process, Day: day, Processes: []string{}, Lanes: []ClusterLaneUsage{}}
	if err != nil {
		cs.Error = "Redis did not answer: " + err.Error()
		return cs
	}
	cs.Processes = append(cs.Processes, u.Processes...)
	cs.Reseeding, cs.ReseedWaiting = u.Reseeding, u.ReseedWaiting
	for _, l := range u.Lanes {
		cl := ClusterLaneUsage{Class: l.Lane.Class, Project: l.Lane.Project, WindowUsed: l.Window, RPMLimit: l.RPM,
			DayUsed: l.Count, DayLimit: l.RPD, TokensUsed: l.Tokens, TPMLimit: l.TPM, Processes: []ClusterProcessLane{}}
		if u.Reseeding {
			n := l.Count
			cl.DayUsed, cl.RedisDayUsed = max(l.Count, l.Least), &n
		}
		var names []string
		for p := range l.ByProcess {
			names = append(names, p)
		}
		for p := range l.WindowByProcess {
			if _, ok := l.ByProcess[p]; !ok {
				names = append(names, p)
			}
		}
		for p := range l.TokensByProcess {
			if _, ok := l.ByProcess[p]; !ok && !slices.Contains(names, p) {
				names = append(names, p)
			}
		}
		if u.Reseeding && l.Own > 0 && !slices.Contains(names, u.Process) {
			names = append(names, u.Process)
		}
		slices.Sort(names)
		for _, p := range names {
			day := l.ByProcess[p]
			if p == u.Process && u.Reseeding {
				day = max(day, l.Own) // this process's own, not re-seeded yet
			}
			cl.Processes = append(cl.Processes, ClusterProcessLane{Process: p, Alive: slices.Contains(u.Processes, p),
				WindowUsed: l.WindowByProcess[p], DayUsed: day, TokensUsed: l.TokensByProcess[p]})
		}
		cs.Lanes = append(cs.Lanes, cl)
	}
	return cs
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
	Day      string `json:"day"`
	DayUsed  int    `json:"day_used"`
	DayLimit int    `json:"day_limit"`
	// DayRemaining is what the class can still send today over its
	// enabled lanes not out for the day: per lane RPD less its day used;
	// with a shared store (redis_url), less the larger of this process's
	// use and the lane's shared day count (the cluster's remaining, from
	// the counts ClusterDayUsed sums).
	DayRemaining int  `json:"day_remaining"`
	RPMLimit     int  `json:"rpm_limit"`
	Keys         int  `json:"keys"` // enabled keys
	Critical     bool `json:"critical"`
	// ClusterDayUsed, with a store shared with other processes (redis_url),
	// is the day used that daily protection compares with DayLimit: per
	// enabled lane the larger of this process's own use and the lane's
	// shared day count last read (the sum of the enabled lanes'
	// ClusterDayUsed). 0 (absent) without one, or while 0. DayUsed stays
	// this process's own use.
	ClusterDayUsed int `json:"cluster_day_used,omitempty"`
	// DayResetsAt is the next Pacific midnight (in UTC, as a Wait's
	// Until): when every lane's day count starts again.
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
	Reason   string `json:"reason,omitempty"`
	Enabled  bool   `json:"enabled"`
	RPMUsed  int    `json:"rpm_used"` // requests in the last 60 s
	RPMLimit int    `json:"rpm_limit"`
	// TPMUsed is the estimated (reconciled) input tokens of the last 60 s,
	// and TPMLimit the lane's TPM, only when the class has a TPM limit:
	// both 0 (absent) without one, and tpm_used absent while 0.
	TPMUsed  int `json:"tpm_used,omitempty"`
	TPMLimit int `json:"tpm_limit,omitempty"`
	DayUsed  int `json:"day_used"` // this process's own use today
	DayLimit int `json:"day_limit"`
	// ClusterDayUsed, with a store shared with other processes (redis_url),
	// is the lane's day used by the cluster as daily protection counts it:
	// the larger of DayUsed and the lane's shared day count last read (the
	// lane's part of the class's ClusterDayUsed and DayRemaining). 0
	// (absent) without one, or while 0.
	ClusterDayUsed int `json:"cluster_day_used,omitempty"`
	// CoolUntil is when a lane cooling down after a 429 (its own, or
	// another process's shared through Redis) may send again.
	CoolUntil time.Time `json:"cool_until,omitzero"`
	// HeldUntil is when a lane the cluster holds (a grant refused with no
	// 429: Held says why, one of the Hold... words) asks again: for
	// HoldDay, the next Pacific midnight, or sooner when a heartbeat reads
	// the lane's shared count below RPD (see HoldDay). Zero and "" when
	// not held.
	HeldUntil      time.Time `json:"held_until,omitzero"`
	Held           string    `json:"held,omitempty"`
	ExhaustedUntil time.Time `json:"exhausted_until,omitzero"`
	// ClusterPending, with a shared Store (store.Redis), says that the
	// lane's last stop or resume here was made while Redis was
	// unreachable: the other processes learn it when Redis answers again.
	ClusterPending bool `json:"cluster_pending,omitempty"`
}

// Summary returns a snapshot at the current time. It works before Run.
// With a shared Store (store.Redis) it asks Redis for the cluster's view
// (one round trip, at most ClusterTimeout).
func (s *Scheduler) Summary() Summary {
	now := time.Now()
	sum := Summary{Time: now, DisabledKeys: []DisabledKey{}}
	pendingLanes := make(map[store.LaneID]bool)
	if ps, ok := s.store.(pendingStore); ok {
		_, lanes := ps.Pending()
		for _, l := range lanes {
			pendingLanes[l] = true
		}
	}
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
			RPMLimit: u.RPMLimit, Critical: u.Critical, DayResetsAt: bucket.NextMidnight(now, s.cfg.Location).UTC(),
		}
		if s.ledger.shared {
			cs.ClusterDayUsed = u.SharedUsed
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
			if u.Limits.TPM == 0 {
				lu.TPMUsed = 0 // counted, but no limit to count it against
			}
			pending := pendingLanes[store.LaneID{Project: lu.Project, Class: r.name}]
			clusterDay := 0
			if s.ledger.shared {
				clusterDay = lu.SharedUsed
			}
			cs.Lanes = append(cs.Lanes, LaneSummary{
				Project: lu.Project, Keys: lu.Keys, DisabledKeys: lu.DisabledKeys, Stopped: lu.Stopped, Enabled: lu.Enabled,
				RPMUsed: lu.RPMUsed, RPMLimit: u.Limits.RPM, TPMUsed: lu.TPMUsed, TPMLimit: u.Limits.TPM,
				DayUsed: lu.DayUsed, DayLimit: u.Limits.RPD, ClusterDayUsed: clusterDay, CoolUntil: lu.CoolUntil, ExhaustedUntil: lu.ExhaustedUntil,
				HeldUntil: lu.HeldUntil, Held: lu.HeldReason,
				Reason: laneReason(lu, why), ClusterPending: pending,
			})
		}
		sum.Classes = append(sum.Classes, cs)
	}
	if cv, ok := s.store.(clusterViewer); ok {
		ctx, cancel := context.WithTimeout(context.Background(), ClusterTimeout)
		day := bucket.Day(now, s.cfg.Location)
		u, err := cv.Usage(ctx, day)
		cancel()
		sum.Cluster = ClusterView(u, day, err)
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
