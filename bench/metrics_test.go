package bench

import (
	"fmt"
	"sort"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/scheduler"
)

// laneID names a lane: a project on a class.
type laneID struct{ class, project string }

// maxWindow returns, per lane, the most requests slideshowd sent (whatever
// the answer) in any sliding 60 s window: a request sent at t counts during
// [t, t+60s), as the emulator and the bucket count it.
func maxWindow(reqs []request) map[laneID]int {
	times := map[laneID][]time.Time{}
	for _, r := range reqs {
		if r.project == "" {
			continue
		}
		id := laneID{r.class, r.project}
		times[id] = append(times[id], r.at)
	}
	out := map[laneID]int{}
	for id, ts := range times {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		lo, best := 0, 0
		for hi := range ts {
			for !ts[lo].Add(time.Minute).After(ts[hi]) {
				lo++
			}
			best = max(best, hi-lo+1)
		}
		out[id] = best
	}
	return out
}

// countRequests counts requests of class sent in [from, to) whose status
// passes keep (nil: all).
func countRequests(reqs []request, class string, from, to time.Time, keep func(request) bool) int {
	n := 0
	for _, r := range reqs {
		if r.class == class && !r.at.Before(from) && r.at.Before(to) && (keep == nil || keep(r)) {
			n++
		}
	}
	return n
}

func status(code int) func(request) bool { return func(r request) bool { return r.status == code } }

// capacityWait is the "capacity free -> dispatched" measure of one class.
//
// Definition: for each dispatch of a job on a lane at time d, the lane was
// free at f, the earliest time at or after the lane's previous dispatch (or
// the start) at which the lane could take a request under the quota rules
// the scheduler enforces: its pacing token, its sliding 60 s window, its
// daily count, its cooldown or day exhaustion after a 429, its keys being
// enabled. The job was ready at q, when it was (re)queued or, after a
// transient failure, when its retry backoff ended. Capacity was free
// for this job from max(f, q), and the measure is d - max(f, q). It counts
// every delay the scheduler adds once a lane could serve and a job waits:
// timer wake-up, dispatcher work, and a full worker pool.
//
// f is computed by replaying the recorded dispatches, cooldowns,
// exhaustions and disabled keys, in order, on a shadow bucket.Class per
// lane with the class's limits and burst (bucket is the quota model the scheduler
// dispatches on). A dispatch before f, or one the shadow would refuse,
// counts as early: the scheduler sent a request its own quota model did not
// allow.
type capacityWait struct {
	waits []time.Duration
	early int
}

func capacityWaits(evs []recEvent, class string, limits bucket.Limits, burst int, keyProject map[string]string, start time.Time) (capacityWait, error) {
	var cw capacityWait
	shadows := map[string]*bucket.Class{}
	prev := map[string]time.Time{}
	keys := map[string]map[string]bool{} // project -> enabled keys
	dead := map[string]time.Time{}       // project -> when its last key was disabled
	notBefore := map[uint64]time.Time{}  // job -> end of its retry backoff
	for k, p := range keyProject {
		if keys[p] == nil {
			keys[p] = map[string]bool{}
		}
		keys[p][k] = true
	}
	for p := range keys {
		pool, err := bucket.New(bucket.Config{
			Classes: []bucket.ClassConfig{{Name: class, Limits: limits, Burst: burst}},
			Keys:    []bucket.Key{{ID: p, Project: p}},
		})
		if err != nil {
			return cw, err
		}
		shadows[p] = pool.Class(class)
		prev[p] = start
	}
	for _, e := range evs {
		switch {
		case e.Kind == scheduler.EventKeyDisabled:
			p := keyProject[e.KeyID]
			if keys[p][e.KeyID] {
				delete(keys[p], e.KeyID)
				if len(keys[p]) == 0 {
					// No dispatch may follow, but leases taken at this
					// very instant may still be reported after it.
					dead[p] = e.Time
				}
			}
		case e.Class != class:
		case e.Kind == scheduler.EventRetry:
			notBefore[e.JobID] = e.Until
		case e.Kind == scheduler.EventLaneCooled:
			shadows[e.Project].CoolDown(e.Project, e.Until)
		case e.Kind == scheduler.EventLaneExhausted:
			shadows[e.Project].ExhaustUntil(e.Project, e.Until)
		case e.Kind == scheduler.EventDispatched:
			c := shadows[e.Project]
			if c == nil {
				return cw, fmt.Errorf("dispatch on unknown project %q", e.Project)
			}
			if d, ok := dead[e.Project]; ok && e.Time.After(d) {
				cw.early++
				cw.waits = append(cw.waits, 0)
				continue
			}
			f := c.Earliest(prev[e.Project], 0)
			q := e.Time.Add(-e.Waited)
			if nb := notBefore[e.JobID]; nb.After(q) {
				q = nb
			}
			from := f
			if q.After(from) {
				from = q
			}
			w := e.Time.Sub(from)
			_, ok, _ := c.Acquire(e.Time, 0)
			if f.IsZero() || w < 0 || !ok {
				cw.early++
				w = 0
			}
			prev[e.Project] = e.Time
			cw.waits = append(cw.waits, w)
		}
	}
	return cw, nil
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// perMinute buckets the requests of class with status 200 by lane and
// minute since from, over minutes minutes.
func perMinute(reqs []request, class string, from time.Time, minutes int, keep func(request) bool) map[string][]float64 {
	out := map[string][]float64{}
	for _, r := range reqs {
		if r.class != class || (keep != nil && !keep(r)) || r.project == "" {
			continue
		}
		m := int(r.at.Sub(from) / time.Minute)
		if m < 0 || m >= minutes {
			continue
		}
		if out[r.project] == nil {
			out[r.project] = make([]float64, minutes)
		}
		out[r.project][m]++
	}
	return out
}

func pct(n, d int) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f %%", 100*float64(n)/float64(d))
}

// dur formats a simulated duration compactly.
func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Millisecond:
		return d.String()
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}
