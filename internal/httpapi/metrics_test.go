package httpapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/scheduler"
)

func TestMetricsObserveCounters(t *testing.T) {
	rl := func(s scheduler.Scope) error {
		return fmt.Errorf("wrapped: %w", &scheduler.RateLimitedError{Scope: s, Quota: "q"})
	}
	tests := []struct {
		name   string
		events []scheduler.Event
		metric func(m *Metrics) prometheus.Collector
		want   float64
	}{
		{"ok call", []scheduler.Event{{Kind: scheduler.EventFinished, Class: "text", KeyID: "key1", Outcome: "ok"}},
			func(m *Metrics) prometheus.Collector { return m.calls.WithLabelValues("text", "key1", "ok") }, 1},
		{"queued cancel has key none", []scheduler.Event{{Kind: scheduler.EventFinished, Class: "image", Outcome: "canceled", Final: true}},
			func(m *Metrics) prometheus.Collector { return m.calls.WithLabelValues("image", "none", "canceled") }, 1},
		{"unknown outcome is other", []scheduler.Event{{Kind: scheduler.EventFinished, Class: "text", KeyID: "key1", Outcome: "surprise"}},
			func(m *Metrics) prometheus.Collector { return m.calls.WithLabelValues("text", "key1", "other") }, 1},
		{"429 per minute", []scheduler.Event{
			{Kind: scheduler.EventFinished, Class: "text", KeyID: "key2", Outcome: "rate_limited", Err: rl(scheduler.ScopeMinute)},
			{Kind: scheduler.EventLaneCooled, Class: "text", KeyID: "key2", Project: "p2", Scope: scheduler.ScopeMinute},
		}, func(m *Metrics) prometheus.Collector { return m.rateLimited.WithLabelValues("text", "key2", "minute") }, 1},
		{"429 per day", []scheduler.Event{
			{Kind: scheduler.EventFinished, Class: "image", KeyID: "key2", Outcome: "rate_limited", Err: rl(scheduler.ScopeDay)},
			{Kind: scheduler.EventLaneExhausted, Class: "image", KeyID: "key2", Project: "p2", Scope: scheduler.ScopeDay},
		}, func(m *Metrics) prometheus.Collector { return m.rateLimited.WithLabelValues("image", "key2", "day") }, 1},
		{"429 without a typed error", []scheduler.Event{
			{Kind: scheduler.EventFinished, Class: "image", KeyID: "key1", Outcome: "rate_limited", Err: errors.New("429")},
		}, func(m *Metrics) prometheus.Collector {
			return m.rateLimited.WithLabelValues("image", "key1", "unknown")
		}, 1},
		{"cooldowns by project", []scheduler.Event{
			{Kind: scheduler.EventLaneCooled, Class: "text", KeyID: "key2", Project: "p2"},
			{Kind: scheduler.EventLaneCooled, Class: "text", KeyID: "key3", Project: "p2"},
		}, func(m *Metrics) prometheus.Collector { return m.cooldowns.WithLabelValues("text", "p2") }, 2},
		{"exhaustions by project", []scheduler.Event{
			{Kind: scheduler.EventLaneExhausted, Class: "image", KeyID: "key2", Project: "p2"},
		}, func(m *Metrics) prometheus.Collector { return m.exhaustions.WithLabelValues("image", "p2") }, 1},
		{"key disabled", []scheduler.Event{{Kind: scheduler.EventKeyDisabled, Class: "text", KeyID: "key4", Reason: "leaked"}},
			func(m *Metrics) prometheus.Collector { return m.keysDisabled.WithLabelValues("key4", "leaked") }, 1},
		{"long reason is cut", []scheduler.Event{{Kind: scheduler.EventKeyDisabled, KeyID: "key4", Reason: strings.Repeat("x", 100)}},
			func(m *Metrics) prometheus.Collector {
				return m.keysDisabled.WithLabelValues("key4", strings.Repeat("x", 32))
			}, 1},
		{"invalid UTF-8 in a label", []scheduler.Event{{Kind: scheduler.EventLaneCooled, Class: "te\xffxt", Project: "p\xfe"}},
			func(m *Metrics) prometheus.Collector { return m.cooldowns.WithLabelValues("te\uFFFDxt", "p\uFFFD") }, 1},
		{"reason cut inside a rune", []scheduler.Event{{Kind: scheduler.EventKeyDisabled, KeyID: "key4", Reason: strings.Repeat("x", 31) + "é"}},
			func(m *Metrics) prometheus.Collector {
				return m.keysDisabled.WithLabelValues("key4", strings.Repeat("x", 31)+"\uFFFD")
			}, 1},
		{"retries", []scheduler.Event{{Kind: scheduler.EventRetry, Class: "text"}, {Kind: scheduler.EventRetry, Class: "text"}},
			func(m *Metrics) prometheus.Collector { return m.retries.WithLabelValues("text") }, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			for _, e := range tt.events {
				m.Observe(e)
			}
			if got := testutil.ToFloat64(tt.metric(m)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMetricsRateLimitedCountedOncePer429(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	m.Observe(scheduler.Event{Kind: scheduler.EventFinished, Class: "text", KeyID: "key1", Outcome: "rate_limited",
		Err: &scheduler.RateLimitedError{Scope: scheduler.ScopeMinute}})
	m.Observe(scheduler.Event{Kind: scheduler.EventLaneCooled, Class: "text", KeyID: "key1", Project: "key1", Scope: scheduler.ScopeMinute})
	if n := testutil.CollectAndCount(m.rateLimited); n != 1 {
		t.Fatalf("%d rate-limited series, want 1", n)
	}
	if got := testutil.ToFloat64(m.rateLimited.WithLabelValues("text", "key1", "minute")); got != 1 {
		t.Fatalf("rate limited = %v, want 1", got)
	}
}

func TestMetricsHistograms(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Observe(scheduler.Event{Kind: scheduler.EventDispatched, Class: "image", Waited: 3 * time.Second})
	m.Observe(scheduler.Event{Kind: scheduler.EventFinished, Class: "image", KeyID: "key1", Outcome: "ok", Latency: 12 * time.Second})
	// An attempt that never ran on a key has no latency to record.
	m.Observe(scheduler.Event{Kind: scheduler.EventFinished, Class: "image", Outcome: "canceled"})
	want := `
# HELP slideshowd_queue_wait_seconds How long a job waited in its queue before being dispatched (since it was last queued), by model class.
# TYPE slideshowd_queue_wait_seconds histogram
slideshowd_queue_wait_seconds_bucket{class="image",le="0.001"} 0
slideshowd_queue_wait_seconds_bucket{class="image",le="0.01"} 0
slideshowd_queue_wait_seconds_bucket{class="image",le="0.1"} 0
slideshowd_queue_wait_seconds_bucket{class="image",le="0.5"} 0
slideshowd_queue_wait_seconds_bucket{class="image",le="1"} 0
slideshowd_queue_wait_seconds_bucket{class="image",le="5"} 1
slideshowd_queue_wait_seconds_bucket{class="image",le="15"} 1
slideshowd_queue_wait_seconds_bucket{class="image",le="60"} 1
slideshowd_queue_wait_seconds_bucket{class="image",le="300"} 1
slideshowd_queue_wait_seconds_bucket{class="image",le="900"} 1
slideshowd_queue_wait_seconds_bucket{class="image",le="3600"} 1
slideshowd_queue_wait_seconds_bucket{class="image",le="14400"} 1
slideshowd_queue_wait_seconds_bucket{class="image",le="86400"} 1
slideshowd_queue_wait_seconds_bucket{class="image",le="+Inf"} 1
slideshowd_queue_wait_seconds_sum{class="image"} 3
slideshowd_queue_wait_seconds_count{class="image"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "slideshowd_queue_wait_seconds"); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(m.latency); got != 1 {
		t.Errorf("latency series = %d, want 1", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "slideshowd_call_duration_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 1 || h.GetSampleSum() != 12 {
				t.Errorf("latency count %d sum %v, want 1 and 12", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
}

func TestMetricsSummaryGauges(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sum := scheduler.Summary{
		Time: now,
		Classes: []scheduler.ClassSummary{{
			Name: "text", Concurrency: 8, Running: 3, QueuedHigh: 1, QueuedNormal: 4, QueuedLow: 2, Delayed: 5,
			DayUsed: 150, DayLimit: 18000, DayRemaining: 8900, RPMLimit: 1800, Keys: 2, Critical: true,
			Lanes: []scheduler.LaneSummary{
				{Project: "p1", Keys: []string{"key1"}, Enabled: true, RPMUsed: 7, RPMLimit: 900, TPMUsed: 1000, TPMLimit: 5000,
					DayUsed: 100, DayLimit: 9000, CoolUntil: now.Add(30 * time.Second)},
				{Project: "p2", Keys: []string{"key2"}, Enabled: true, RPMUsed: 0, RPMLimit: 900, TPMLimit: 5000,
					DayUsed: 50, DayLimit: 9000, ExhaustedUntil: now.Add(time.Hour)},
				{Project: "p4", Keys: []string{"key4"}, RPMLimit: 900, TPMLimit: 5000, DayLimit: 9000,
					Stopped: scheduler.ReasonNoQuota, Reason: scheduler.ReasonNoQuota},
			},
		}},
		DisabledKeys: []scheduler.DisabledKey{{ID: "key3", Project: "p3", Reason: "leaked"}},
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)

	if n, err := testutil.GatherAndCount(reg, "slideshowd_queue_depth"); err != nil || n != 0 {
		t.Fatalf("before Attach: %d queue series (err %v), want none", n, err)
	}
	m.Attach(func() scheduler.Summary { return sum })

	want := `
# HELP slideshowd_queue_depth Jobs waiting in a class's queue, by priority (high, normal, low) and delayed (waiting out a retry backoff).
# TYPE slideshowd_queue_depth gauge
slideshowd_queue_depth{class="text",priority="delayed"} 5
slideshowd_queue_depth{class="text",priority="high"} 1
slideshowd_queue_depth{class="text",priority="low"} 2
slideshowd_queue_depth{class="text",priority="normal"} 4
# HELP slideshowd_running_jobs Jobs of a class running now.
# TYPE slideshowd_running_jobs gauge
slideshowd_running_jobs{class="text"} 3
# HELP slideshowd_day_remaining Requests still available today over the enabled, non-exhausted lanes of a class (with redis_url, the cluster's: per lane RPD less the larger of this process's use and the shared day count).
# TYPE slideshowd_day_remaining gauge
slideshowd_day_remaining{class="text"} 8900
# HELP slideshowd_day_critical 1 when a class has used its critical share of the day (only high priority is dispatched by default), else 0.
# TYPE slideshowd_day_critical gauge
slideshowd_day_critical{class="text"} 1
# HELP slideshowd_lane_rpm_used Requests a lane started in the last 60 s.
# TYPE slideshowd_lane_rpm_used gauge
slideshowd_lane_rpm_used{class="text",project="p1"} 7
slideshowd_lane_rpm_used{class="text",project="p2"} 0
slideshowd_lane_rpm_used{class="text",project="p4"} 0
# HELP slideshowd_lane_tpm_used Estimated input tokens a lane used in the last 60 s (only with a TPM limit).
# TYPE slideshowd_lane_tpm_used gauge
slideshowd_lane_tpm_used{class="text",project="p1"} 1000
slideshowd_lane_tpm_used{class="text",project="p2"} 0
slideshowd_lane_tpm_used{class="text",project="p4"} 0
# HELP slideshowd_lane_day_remaining Requests a lane may still send today (0 when exhausted or disabled); with redis_url, the cluster's: RPD less the larger of this process's use and the shared day count last read.
# TYPE slideshowd_lane_day_remaining gauge
slideshowd_lane_day_remaining{class="text",project="p1"} 8900
slideshowd_lane_day_remaining{class="text",project="p2"} 0
slideshowd_lane_day_remaining{class="text",project="p4"} 0
# HELP slideshowd_lane_cooldown_seconds Seconds until a cooling lane may send again (0 when not cooling).
# TYPE slideshowd_lane_cooldown_seconds gauge
slideshowd_lane_cooldown_seconds{class="text",project="p1"} 30
slideshowd_lane_cooldown_seconds{class="text",project="p2"} 0
slideshowd_lane_cooldown_seconds{class="text",project="p4"} 0
# HELP slideshowd_lane_exhausted 1 when a lane is out for the rest of the Pacific day, else 0.
# TYPE slideshowd_lane_exhausted gauge
slideshowd_lane_exhausted{class="text",project="p1"} 0
slideshowd_lane_exhausted{class="text",project="p2"} 1
slideshowd_lane_exhausted{class="text",project="p4"} 0
# HELP slideshowd_lane_out_of_service 1 for each lane that serves nothing until an operator acts, by reason in words (out of credit, billing required, no quota on this model, expired, leaked, invalid, ...).
# TYPE slideshowd_lane_out_of_service gauge
slideshowd_lane_out_of_service{class="text",project="p4",reason="no quota on this model"} 1
# HELP slideshowd_key_disabled 1 for each key that is disabled, by key id and reason.
# TYPE slideshowd_key_disabled gauge
slideshowd_key_disabled{key="key3",project="p3",reason="leaked"} 1
`
	names := []string{"slideshowd_queue_depth", "slideshowd_running_jobs", "slideshowd_day_remaining", "slideshowd_day_critical",
		"slideshowd_lane_rpm_used", "slideshowd_lane_tpm_used", "slideshowd_lane_day_remaining", "slideshowd_lane_cooldown_seconds",
		"slideshowd_lane_exhausted", "slideshowd_lane_out_of_service", "slideshowd_key_disabled"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// Every gauge is described, so the registry's consistency checks pass
	// (Gather would fail on an undescribed metric).
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	m.Attach(nil)
	if n, _ := testutil.GatherAndCount(reg, "slideshowd_running_jobs"); n != 0 {
		t.Errorf("after Attach(nil): %d series, want 0", n)
	}
}

// TestMetricsCluster: the cluster's view gives gauges labelled by class and
// project only (process names stay out of labels); Redis not answering
// sets slideshowd_cluster_view_up to 0; without a cluster, none of them.
func TestMetricsCluster(t *testing.T) {
	sum := scheduler.Summary{Time: time.Now(), Cluster: &scheduler.ClusterSummary{
		Name: "c", Process: "host-1-aa", Processes: []string{"host-1-aa", "host-2-bb"}, Day: "2026-03-01",
		Lanes: []scheduler.ClusterLaneUsage{{Class: "image", Project: "p1", WindowUsed: 7, RPMLimit: 20, DayUsed: 120, DayLimit: 250,
			Processes: []scheduler.ClusterProcessLane{{Process: "host-1-aa", Alive: true, WindowUsed: 7, DayUsed: 100}, {Process: "host-3-cc", DayUsed: 20}}},
			{Class: "text", Project: "p1", WindowUsed: 3, RPMLimit: 900, DayUsed: 3, DayLimit: 9000, TokensUsed: 2500, TPMLimit: 4000,
				Processes: []scheduler.ClusterProcessLane{{Process: "host-1-aa", Alive: true, WindowUsed: 3, DayUsed: 3, TokensUsed: 2500}}}},
	}}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Attach(func() scheduler.Summary { return sum })
	want := `
# HELP slideshowd_cluster_processes Processes of the cluster alive (heartbeat not expired), as Redis shows them (only with redis_url).
# TYPE slideshowd_cluster_processes gauge
slideshowd_cluster_processes 2
# HELP slideshowd_cluster_view_up 1 when Redis answered the cluster's view at this scrape, else 0 (only with redis_url).
# TYPE slideshowd_cluster_view_up gauge
slideshowd_cluster_view_up 1
# HELP slideshowd_cluster_lane_window_used Slots in a lane's shared 60 s window, granted to all the processes (sent or not; at most RPM) (only with redis_url).
# TYPE slideshowd_cluster_lane_window_used gauge
slideshowd_cluster_lane_window_used{class="image",project="p1"} 7
slideshowd_cluster_lane_window_used{class="text",project="p1"} 3
# HELP slideshowd_cluster_lane_day_used A lane's shared day count (Pacific day): day units granted to all the processes, less those given back (only with redis_url).
# TYPE slideshowd_cluster_lane_day_used gauge
slideshowd_cluster_lane_day_used{class="image",project="p1"} 120
slideshowd_cluster_lane_day_used{class="text",project="p1"} 3
# HELP slideshowd_cluster_lane_tokens_used Input tokens in a lane's shared TPM window: the grants' budgets, actual counts above the estimates added (at most TPM by the estimates) (only with redis_url and tpm).
# TYPE slideshowd_cluster_lane_tokens_used gauge
slideshowd_cluster_lane_tokens_used{class="text",project="p1"} 2500
`
	names := []string{"slideshowd_cluster_processes", "slideshowd_cluster_view_up", "slideshowd_cluster_lane_window_used", "slideshowd_cluster_lane_day_used", "slideshowd_cluster_lane_tokens_used"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	sum.Cluster = &scheduler.ClusterSummary{Name: "c", Error: "Redis did not answer: dial tcp 127.0.0.1:6379: connection refused"}
	want = `
# HELP slideshowd_cluster_view_up 1 when Redis answered the cluster's view at this scrape, else 0 (only with redis_url).
# TYPE slideshowd_cluster_view_up gauge
slideshowd_cluster_view_up 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	sum.Cluster = nil
	if n, _ := testutil.GatherAndCount(reg, names...); n != 0 {
		t.Errorf("without a cluster: %d cluster series, want 0", n)
	}
}

// TestMetricsLaneHeld: a lane the cluster holds (a grant refused, no 429)
// is in slideshowd_lane_held_seconds, not in the cooldown gauge; a lane
// cooling after a 429 the other way round. Without a cluster, no held
// series.
func TestMetricsLaneHeld(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sum := scheduler.Summary{Time: now, Cluster: &scheduler.ClusterSummary{Name: "c", Process: "host-1-aa", Day: "2026-12-01"},
		Classes: []scheduler.ClassSummary{{Name: "image", Lanes: []scheduler.LaneSummary{
			{Project: "p1", Enabled: true, RPMLimit: 20, DayLimit: 250, HeldUntil: now.Add(13 * time.Second), Held: scheduler.HoldWindow},
			{Project: "p2", Enabled: true, RPMLimit: 20, DayLimit: 250, CoolUntil: now.Add(20 * time.Second)},
		}}}}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Attach(func() scheduler.Summary { return sum })
	want := `
# HELP slideshowd_lane_cooldown_seconds Seconds until a cooling lane may send again (0 when not cooling).
# TYPE slideshowd_lane_cooldown_seconds gauge
slideshowd_lane_cooldown_seconds{class="image",project="p1"} 0
slideshowd_lane_cooldown_seconds{class="image",project="p2"} 20
# HELP slideshowd_lane_held_seconds Seconds until a lane the cluster holds (a grant refused with no 429: the shared window or token window full, the shared day full, or the share used while Redis is unreachable or, after it lost its state, recovering) asks again (0 when not held) (only with redis_url).
# TYPE slideshowd_lane_held_seconds gauge
slideshowd_lane_held_seconds{class="image",project="p1"} 13
slideshowd_lane_held_seconds{class="image",project="p2"} 0
`
	names := []string{"slideshowd_lane_cooldown_seconds", "slideshowd_lane_held_seconds"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	sum.Cluster = nil
	if n, _ := testutil.GatherAndCount(reg, "slideshowd_lane_held_seconds"); n != 0 {
		t.Errorf("without a cluster: %d held series, want 0", n)
	}
}

// TestMetricsWithScheduler wires Metrics into a real scheduler: one job
// gets a 429 on its first key and succeeds on the second.
func TestMetricsWithScheduler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		m := NewMetrics(reg)
		s, err := scheduler.New(scheduler.Config{
			Classes:  []scheduler.ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 100}, Concurrency: 2}},
			Keys:     []bucket.Key{{ID: "key1", Project: "key1"}, {ID: "key2", Project: "key2"}},
			Observer: m,
			Seed:     1,
		})
		if err != nil {
			t.Fatal(err)
		}
		m.Attach(s.Summary)
		ctx, stop := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()

		var attempts atomic.Int32
		var limited string // the project of the lane that answered 429
		err = s.Do(ctx, scheduler.Job{Class: "text", Work: func(ctx context.Context, l scheduler.Lease) error {
			if attempts.Add(1) == 1 {
				limited = l.Project
				return &scheduler.RateLimitedError{Scope: scheduler.ScopeMinute, RetryAfter: 20 * time.Second}
			}
			time.Sleep(2 * time.Second) // the call's latency, in the bubble's virtual time
			return nil
		}})
		if err != nil {
			t.Fatalf("job: %v", err)
		}
		sum := 0.0
		for _, k := range []string{"key1", "key2"} {
			sum += testutil.ToFloat64(m.calls.WithLabelValues("text", k, "ok"))
			sum += testutil.ToFloat64(m.calls.WithLabelValues("text", k, "rate_limited"))
		}
		if sum != 2 {
			t.Errorf("calls = %v, want 2", sum)
		}
		if n := testutil.CollectAndCount(m.rateLimited); n != 1 {
			t.Errorf("rate-limited series = %d, want 1", n)
		}
		other := map[string]string{"key1": "key2", "key2": "key1"}[limited]
		want := fmt.Sprintf(`
# HELP slideshowd_lane_cooldowns_total Times a lane (project, class) started cooling down after a per-minute or unscoped 429.
# TYPE slideshowd_lane_cooldowns_total counter
slideshowd_lane_cooldowns_total{class="text",project=%[1]q} 1
# HELP slideshowd_day_used Requests this process counted today (Pacific day) over the enabled lanes of a class (with redis_url, its own part: the cluster's is slideshowd_cluster_day_used).
# TYPE slideshowd_day_used gauge
slideshowd_day_used{class="text"} 2
# HELP slideshowd_lane_cooldown_seconds Seconds until a cooling lane may send again (0 when not cooling).
# TYPE slideshowd_lane_cooldown_seconds gauge
slideshowd_lane_cooldown_seconds{class="text",project=%[1]q} 18
slideshowd_lane_cooldown_seconds{class="text",project=%[2]q} 0
`, limited, other)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
			"slideshowd_lane_cooldowns_total", "slideshowd_day_used", "slideshowd_lane_cooldown_seconds"); err != nil {
			t.Error(err)
		}
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestMetricsSummaryInvalidUTF8(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Attach(func() scheduler.Summary {
		return scheduler.Summary{
			Classes:      []scheduler.ClassSummary{{Name: "text", Lanes: []scheduler.LaneSummary{{Project: "p\xff"}}}},
			DisabledKeys: []scheduler.DisabledKey{{ID: "k\xff", Project: "p\xff"}},
		}
	})
	if n, err := testutil.GatherAndCount(reg, "slideshowd_lane_day_used", "slideshowd_key_disabled"); err != nil || n != 2 {
		t.Fatalf("%d series, err %v", n, err)
	}
}

// TestMetricsClusterDay: with redis_url the class's day used by the
// cluster is a gauge of its own next to this process's slideshowd_day_used,
// and a lane's day remaining is the cluster's (RPD less the shared count),
// not RPD less this process's use; without redis_url neither changes.
func TestMetricsClusterDay(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sum := scheduler.Summary{Time: now, Cluster: &scheduler.ClusterSummary{Name: "c", Process: "host-1-aa", Day: "2026-12-01"},
		Classes: []scheduler.ClassSummary{{Name: "image", DayUsed: 54, DayLimit: 1000, ClusterDayUsed: 336, DayRemaining: 664,
			Lanes: []scheduler.LaneSummary{
				{Project: "p1", Enabled: true, RPMLimit: 20, DayLimit: 500, DayUsed: 30, ClusterDayUsed: 184},
				{Project: "p2", Enabled: true, RPMLimit: 20, DayLimit: 500, DayUsed: 24, ClusterDayUsed: 152},
			}}}}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Attach(func() scheduler.Summary { return sum })
	want := `
# HELP slideshowd_day_used Requests this process counted today (Pacific day) over the enabled lanes of a class (with redis_url, its own part: the cluster's is slideshowd_cluster_day_used).
# TYPE slideshowd_day_used gauge
slideshowd_day_used{class="image"} 54
# HELP slideshowd_cluster_day_used The day (Pacific) used by all the processes over the enabled lanes of a class, as daily protection counts it: per lane the larger of this process's use and the shared day count last read (only with redis_url).
# TYPE slideshowd_cluster_day_used gauge
slideshowd_cluster_day_used{class="image"} 336
# HELP slideshowd_day_remaining Requests still available today over the enabled, non-exhausted lanes of a class (with redis_url, the cluster's: per lane RPD less the larger of this process's use and the shared day count).
# TYPE slideshowd_day_remaining gauge
slideshowd_day_remaining{class="image"} 664
# HELP slideshowd_lane_day_used Requests this process counted on a lane today (Pacific day) (with redis_url, its own part: the shared count is slideshowd_cluster_lane_day_used).
# TYPE slideshowd_lane_day_used gauge
slideshowd_lane_day_used{class="image",project="p1"} 30
slideshowd_lane_day_used{class="image",project="p2"} 24
# HELP slideshowd_lane_day_remaining Requests a lane may still send today (0 when exhausted or disabled); with redis_url, the cluster's: RPD less the larger of this process's use and the shared day count last read.
# TYPE slideshowd_lane_day_remaining gauge
slideshowd_lane_day_remaining{class="image",project="p1"} 316
slideshowd_lane_day_remaining{class="image",project="p2"} 348
`
	names := []string{"slideshowd_day_used", "slideshowd_cluster_day_used", "slideshowd_day_remaining", "slideshowd_lane_day_used", "slideshowd_lane_day_remaining"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	sum.Cluster = nil
	for i := range sum.Classes[0].Lanes {
		sum.Classes[0].Lanes[i].ClusterDayUsed = 0
	}
	if n, _ := testutil.GatherAndCount(reg, "slideshowd_cluster_day_used"); n != 0 {
		t.Errorf("without a cluster: %d cluster day series, want 0", n)
	}
	want = `
# HELP slideshowd_lane_day_remaining Requests a lane may still send today (0 when exhausted or disabled); with redis_url, the cluster's: RPD less the larger of this process's use and the shared day count last read.
# TYPE slideshowd_lane_day_remaining gauge
slideshowd_lane_day_remaining{class="image",project="p1"} 470
slideshowd_lane_day_remaining{class="image",project="p2"} 476
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "slideshowd_lane_day_remaining"); err != nil {
		t.Error(err)
	}
}
