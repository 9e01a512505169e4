package httpapi

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/slideshowd/slideshowd/scheduler"
)

// Metrics holds the daemon's Prometheus metrics. It implements
// scheduler.Observer (set it as scheduler.Config.Observer) for the event
// counters and histograms, reads the scheduler's Summary at scrape time for
// the gauges (Attach), and counts the HTTP requests the handler of New serves.
//
// Labels are bounded: class, project and key come from the configuration
// (keys appear by id, never by secret), outcome and scope from the
// scheduler's fixed sets (anything else is counted as "other"), route from
// the handler's fixed patterns. Metrics is safe for concurrent use; the zero
// value is not usable: use NewMetrics.
type Metrics struct {
	gatherer prometheus.Gatherer

	calls         *prometheus.CounterVec
	rateLimited   *prometheus.CounterVec
	cooldowns     *prometheus.CounterVec
	exhaustions   *prometheus.CounterVec
	keysDisabled  *prometheus.CounterVec
	retries       *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	queueWait     *prometheus.HistogramVec
	httpRequests  *prometheus.CounterVec
	httpDurations *prometheus.HistogramVec
	diskFull      prometheus.Counter
	damagedImages *prometheus.CounterVec

	mu      sync.RWMutex
	summary func() scheduler.Summary
}

// Histogram buckets, in seconds. Calls: a text analysis takes seconds, an
// image tens of seconds. Queue waits: from immediate to a whole quota day.
var (
	latencyBuckets   = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300}
	queueWaitBuckets = []float64{0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}
	httpBuckets      = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5}
)

// NewMetrics creates the metrics and registers them, with the scrape-time
// collector, on reg. When reg is nil, NewMetrics uses a new registry that also
// holds the Go runtime and process collectors. When the registerer is also a
// prometheus.Gatherer (a *prometheus.Registry is both), Handler serves it at
// GET /metrics; otherwise set Config.Gatherer. It panics if the metrics are
// already registered on reg (prometheus.MustRegister).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = r
	}
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slideshowd_calls_total",
			Help: "Attempts of scheduled jobs that ended, by model class, key id and outcome (ok, rate_limited, key, transient, permanent, not_sent, canceled, closed, no_capacity).",
		}, []string{"class", "key", "outcome"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slideshowd_rate_limited_total",
			Help: "Requests rejected by a Gemini quota (HTTP 429), by model class, key id and scope (minute, day, unknown).",
		}, []string{"class", "key", "scope"}),
		cooldowns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slideshowd_lane_cooldowns_total",
			Help: "Times a lane (project, class) started cooling down after a per-minute or unscoped 429.",
		}, []string{"class", "project"}),
		exhaustions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slideshowd_lane_exhaustions_total",
			Help: "Times a lane (project, class) was marked out for the Pacific day after a per-day 429.",
		}, []string{"class", "project"}),
		keysDisabled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slideshowd_keys_disabled_total",
			Help: "Keys disabled on every class, by key id and reason (invalid, expired, leaked, out of credit, billing required, ...).",
		}, []string{"key", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slideshowd_retries_total",
			Help: "Jobs sent back to their queue for another attempt, by model class.",
		}, []string{"class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "slideshowd_call_duration_seconds",
			Help:    "How long one attempt of a job ran on its key, by model class.",
			Buckets: latencyBuckets,
		}, []string{"class"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "slideshowd_queue_wait_seconds",
			Help:    "How long a job waited in its queue before being dispatched (since it was last queued), by model class.",
			Buckets: queueWaitBuckets,
		}, []string{"class"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slideshowd_http_requests_total",
			Help: "HTTP requests served, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		httpDurations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "slideshowd_http_request_duration_seconds",
			Help:    "HTTP request latency, by route pattern.",
			Buckets: httpBuckets,
		}, []string{"route"}),
		diskFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "slideshowd_disk_full_total",
			Help: "Requests refused (HTTP 507) because a write to the data directory failed for lack of space.",
		}),
		damagedImages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slideshowd_damaged_images_total",
			Help: "Requests for a done image whose stored file was damaged (HTTP 500), by reason: missing, not_a_file, wrong_type.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.calls, m.rateLimited, m.cooldowns, m.exhaustions, m.keysDisabled, m.retries,
		m.latency, m.queueWait, m.httpRequests, m.httpDurations, m.diskFull, m.damagedImages, summaryCollector{m})
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	}
	return m
}

// Attach makes the scrape-time gauges read summary (typically the
// scheduler's Summary method). Until then, or with nil, they are absent.
func (m *Metrics) Attach(summary func() scheduler.Summary) {
	m.mu.Lock()
	m.summary = summary
	m.mu.Unlock()
}

// Observe implements scheduler.Observer. It only updates counters and
// histograms, so it is quick and never calls back into the scheduler.
func (m *Metrics) Observe(e scheduler.Event) {
	switch e.Kind {
	case scheduler.EventDispatched:
		m.queueWait.WithLabelValues(label(e.Class)).Observe(e.Waited.Seconds())
	case scheduler.EventFinished:
		m.calls.WithLabelValues(label(e.Class), keyLabel(e.KeyID), outcomeLabel(e.Outcome)).Inc()
		if e.KeyID != "" && e.Latency > 0 {
			m.latency.WithLabelValues(label(e.Class)).Observe(e.Latency.Seconds())
		}
		if e.Outcome == "rate_limited" {
			// One EventFinished per 429 answer; the scope is in the
			// classified error (the lane events that follow it are counted
			// separately, so a 429 is never counted twice here).
			scope := scheduler.ScopeUnknown
			var rl *scheduler.RateLimitedError
			if errors.As(e.Err, &rl) {
				scope = rl.Scope
			}
			m.rateLimited.WithLabelValues(label(e.Class), keyLabel(e.KeyID), scope.String()).Inc()
		}
	case scheduler.EventLaneCooled:
		m.cooldowns.WithLabelValues(label(e.Class), label(e.Project)).Inc()
	case scheduler.EventLaneExhausted:
		m.exhaustions.WithLabelValues(label(e.Class), label(e.Project)).Inc()
	case scheduler.EventKeyDisabled:
		m.keysDisabled.WithLabelValues(keyLabel(e.KeyID), reasonLabel(e.Reason)).Inc()
	case scheduler.EventRetry:
		m.retries.WithLabelValues(label(e.Class)).Inc()
	}
}

// observeHTTP counts one served request. route is the matched pattern (or
// "unmatched"), so its values are bounded by the handler's routes.
func (m *Metrics) observeHTTP(route, method string, code int, d time.Duration) {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
	default:
		method = "other"
	}
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.httpDurations.WithLabelValues(route).Observe(d.Seconds())
}

var knownOutcomes = map[string]bool{
	"ok": true, "rate_limited": true, "key": true, "transient": true, "permanent": true,
	"not_sent": true, "canceled": true, "closed": true, "no_capacity": true,
}

func outcomeLabel(o string) string {
	if knownOutcomes[o] {
		return o
	}
	return "other"
}

// label makes s a valid label value: Prometheus refuses (and the client
// library panics on) label values that are not UTF-8.
func label(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// keyLabel is the key id, or "none" for attempts that never had a key (a job
// cancelled or closed while queued).
func keyLabel(id string) string {
	if id == "" {
		return "none"
	}
	return label(id)
}

// reasonLabel keeps key-disable reasons (short words from the classifier)
// bounded in length.
func reasonLabel(r string) string {
	const max = 32
	if r == "" {
		return "unknown"
	}
	if len(r) > max {
		r = r[:max]
	}
	return label(r)
}

// summaryCollector exports the attached Summary as gauges at scrape time.
type summaryCollector struct{ m *Metrics }

var (
	descQueueDepth = prometheus.NewDesc("slideshowd_queue_depth",
		"Jobs waiting in a class's queue, by priority (high, normal, low) and delayed (waiting out a retry backoff).",
		[]string{"class", "priority"}, nil)
	descRunning = prometheus.NewDesc("slideshowd_running_jobs",
		"Jobs of a class running now.", []string{"class"}, nil)
	descConcurrency = prometheus.NewDesc("slideshowd_concurrency",
		"The most jobs of a class that may run at once.", []string{"class"}, nil)
	descKeys = prometheus.NewDesc("slideshowd_keys_enabled",
		"Enabled keys of a class.", []string{"class"}, nil)
	descClassRPMLimit = prometheus.NewDesc("slideshowd_rpm_limit",
		"Requests per minute a class may send over all enabled lanes.", []string{"class"}, nil)
	descDayUsed = prometheus.NewDesc("slideshowd_day_used",
		"Requests this process counted today (Pacific day) over the enabled lanes of a class (with redis_url, its own part: the cluster's is slideshowd_cluster_day_used).", []string{"class"}, nil)
	descClusterDayUsed = prometheus.NewDesc("slideshowd_cluster_day_used",
		"The day (Pacific) used by all the processes over the enabled lanes of a class, as daily protection counts it: per lane the larger of this process's use and the shared day count last read (only with redis_url).", []string{"class"}, nil)
	descDayLimit = prometheus.NewDesc("slideshowd_day_limit",
		"Requests allowed today over the enabled lanes of a class.", []string{"class"}, nil)
	descDayRemaining = prometheus.NewDesc("slideshowd_day_remaining",
		"Requests still available today over the enabled, non-exhausted lanes of a class (with redis_url, the cluster's: per lane RPD less the larger of this process's use and the shared day count).", []string{"class"}, nil)
	descCritical = prometheus.NewDesc("slideshowd_day_critical",
		"1 when a class has used its critical share of the day (only high priority is dispatched by default), else 0.", []string{"class"}, nil)
	descLaneRPMUsed = prometheus.NewDesc("slideshowd_lane_rpm_used",
		"Requests a lane started in the last 60 s.", []string{"class", "project"}, nil)
	descLaneRPMLimit = prometheus.NewDesc("slideshowd_lane_rpm_limit",
		"Requests per minute a lane allows.", []string{"class", "project"}, nil)
	descLaneTPMUsed = prometheus.NewDesc("slideshowd_lane_tpm_used",
		"Estimated input tokens a lane used in the last 60 s (only with a TPM limit).", []string{"class", "project"}, nil)
	descLaneTPMLimit = prometheus.NewDesc("slideshowd_lane_tpm_limit",
		"Input tokens per minute a lane allows (only with a TPM limit).", []string{"class", "project"}, nil)
	descLaneDayUsed = prometheus.NewDesc("slideshowd_lane_day_used",
		"Requests this process counted on a lane today (Pacific day) (with redis_url, its own part: the shared count is slideshowd_cluster_lane_day_used).", []string{"class", "project"}, nil)
	descLaneDayLimit = prometheus.NewDesc("slideshowd_lane_day_limit",
		"Requests a lane allows per Pacific day.", []string{"class", "project"}, nil)
	descLaneDayRemaining = prometheus.NewDesc("slideshowd_lane_day_remaining",
		"Requests a lane may still send today (0 when exhausted or disabled); with redis_url, the cluster's: RPD less the larger of this process's use and the shared day count last read.", []string{"class", "project"}, nil)
	descLaneEnabled = prometheus.NewDesc("slideshowd_lane_enabled",
		"1 when a lane has at least one enabled key, else 0.", []string{"class", "project"}, nil)
	descLaneCooldown = prometheus.NewDesc("slideshowd_lane_cooldown_seconds",
		"Seconds until a cooling lane may send again (0 when not cooling).", []string{"class", "project"}, nil)
	descLaneHeld = prometheus.NewDesc("slideshowd_lane_held_seconds",
		"Seconds until a lane the cluster holds (a grant refused with no 429: the shared window or token window full, the shared day full, or the share used while Redis is unreachable or, after it lost its state, recovering) asks again (0 when not held) (only with redis_url).",
		[]string{"class", "project"}, nil)
	descLaneExhausted = prometheus.NewDesc("slideshowd_lane_exhausted",
		"1 when a lane is out for the rest of the Pacific day, else 0.", []string{"class", "project"}, nil)
	descLaneOut = prometheus.NewDesc("slideshowd_lane_out_of_service",
		"1 for each lane that serves nothing until an operator acts, by reason in words (out of credit, billing required, no quota on this model, expired, leaked, invalid, ...).",
		[]string{"class", "project", "reason"}, nil)
	descKeyDisabled = prometheus.NewDesc("slideshowd_key_disabled",
		"1 for each key that is disabled, by key id and reason.", []string{"key", "project", "reason"}, nil)
	// The cluster's view (redis_url set): labelled by class and project
	// only; process names are in /v1/usage, not in labels.
	descClusterProcesses = prometheus.NewDesc("slideshowd_cluster_processes",
		"Processes of the cluster alive (heartbeat not expired), as Redis shows them (only with redis_url).", nil, nil)
	descClusterUp = prometheus.NewDesc("slideshowd_cluster_view_up",
		"1 when Redis answered the cluster's view at this scrape, else 0 (only with redis_url).", nil, nil)
	descClusterReseeding = prometheus.NewDesc("slideshowd_cluster_reseeding",
		"1 while this process's view of the cluster is re-seeding: Redis lost the cluster's state (restarted empty) and not every process has put its day counts back yet; else 0 (only with redis_url, when Redis answered the view).", nil, nil)
	descClusterReseedWaiting = prometheus.NewDesc("slideshowd_cluster_reseed_waiting",
		"Processes this process waits for in a re-seed: those it last saw alive that have not put their day counts back yet (0 when not re-seeding, or when not known) (only with redis_url, when Redis answered the view).", nil, nil)
	descClusterWindow = prometheus.NewDesc("slideshowd_cluster_lane_window_used",
		"Slots in a lane's shared 60 s window, granted to all the processes (sent or not; at most RPM) (only with redis_url).",
		[]string{"class", "project"}, nil)
	descClusterTokens = prometheus.NewDesc("slideshowd_cluster_lane_tokens_used",
		"Input tokens in a lane's shared TPM window: the grants' budgets, actual counts above the estimates added (at most TPM by the estimates) (only with redis_url and tpm).",
		[]string{"class", "project"}, nil)
	descClusterDay = prometheus.NewDesc("slideshowd_cluster_lane_day_used",
		"A lane's shared day count (Pacific day): day units granted to all the processes, less those given back (only with redis_url).",
		[]string{"class", "project"}, nil)
)

var summaryDescs = []*prometheus.Desc{
	descQueueDepth, descRunning, descConcurrency, descKeys, descClassRPMLimit,
	descDayUsed, descClusterDayUsed, descDayLimit, descDayRemaining, descCritical,
	descLaneRPMUsed, descLaneRPMLimit, descLaneTPMUsed, descLaneTPMLimit,
	descLaneDayUsed, descLaneDayLimit, descLaneDayRemaining,
	descLaneEnabled, descLaneCooldown, descLaneHeld, descLaneExhausted, descLaneOut, descKeyDisabled,
	descClusterProcesses, descClusterUp, descClusterReseeding, descClusterReseedWaiting,
	descClusterWindow, descClusterDay, descClusterTokens,
}

func (c summaryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range summaryDescs {
		ch <- d
	}
}

func (c summaryCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.RLock()
	f := c.m.summary
	c.m.mu.RUnlock()
	if f == nil {
		return
	}
	s := f()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		for i := range labels {
			labels[i] = label(labels[i])
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, cs := range s.Classes {
		gauge(descQueueDepth, float64(cs.QueuedHigh), cs.Name, "high")
		gauge(descQueueDepth, float64(cs.QueuedNormal), cs.Name, "normal")
		gauge(descQueueDepth, float64(cs.QueuedLow), cs.Name, "low")
		gauge(descQueueDepth, float64(cs.Delayed), cs.Name, "delayed")
		gauge(descRunning, float64(cs.Running), cs.Name)
		gauge(descConcurrency, float64(cs.Concurrency), cs.Name)
		gauge(descKeys, float64(cs.Keys), cs.Name)
		gauge(descClassRPMLimit, float64(cs.RPMLimit), cs.Name)
		gauge(descDayUsed, float64(cs.DayUsed), cs.Name)
		if s.Cluster != nil {
			gauge(descClusterDayUsed, float64(max(cs.ClusterDayUsed, cs.DayUsed)), cs.Name)
		}
		gauge(descDayLimit, float64(cs.DayLimit), cs.Name)
		gauge(descDayRemaining, float64(cs.DayRemaining), cs.Name)
		gauge(descCritical, boolGauge(cs.Critical), cs.Name)
		for _, l := range cs.Lanes {
			gauge(descLaneRPMUsed, float64(l.RPMUsed), cs.Name, l.Project)
			gauge(descLaneRPMLimit, float64(l.RPMLimit), cs.Name, l.Project)
			if l.TPMLimit > 0 {
				gauge(descLaneTPMUsed, float64(l.TPMUsed), cs.Name, l.Project)
				gauge(descLaneTPMLimit, float64(l.TPMLimit), cs.Name, l.Project)
			}
			gauge(descLaneDayUsed, float64(l.DayUsed), cs.Name, l.Project)
			gauge(descLaneDayLimit, float64(l.DayLimit), cs.Name, l.Project)
			exhausted := l.ExhaustedUntil.After(s.Time)
			remaining := 0
			if l.Enabled && !exhausted {
				used := l.DayUsed
				if s.Cluster != nil {
					used = max(used, l.ClusterDayUsed) // the cluster's day left
				}
				remaining = max(l.DayLimit-used, 0)
			}
			gauge(descLaneDayRemaining, float64(remaining), cs.Name, l.Project)
			gauge(descLaneEnabled, boolGauge(l.Enabled), cs.Name, l.Project)
			cool := 0.0
			if l.CoolUntil.After(s.Time) {
				cool = l.CoolUntil.Sub(s.Time).Seconds()
			}
			gauge(descLaneCooldown, cool, cs.Name, l.Project)
			if s.Cluster != nil {
				held := 0.0
				if l.HeldUntil.After(s.Time) {
					held = l.HeldUntil.Sub(s.Time).Seconds()
				}
				gauge(descLaneHeld, held, cs.Name, l.Project)
			}
			gauge(descLaneExhausted, boolGauge(exhausted), cs.Name, l.Project)
			if !l.Enabled && l.Reason != "" {
				gauge(descLaneOut, 1, cs.Name, l.Project, reasonLabel(l.Reason))
			}
		}
	}
	for _, k := range s.DisabledKeys {
		gauge(descKeyDisabled, 1, keyLabel(k.ID), k.Project, reasonLabel(k.Reason))
	}
	if c := s.Cluster; c != nil {
		gauge(descClusterUp, boolGauge(c.Error == ""))
		if c.Error == "" {
			gauge(descClusterProcesses, float64(len(c.Processes)))
			gauge(descClusterReseeding, boolGauge(c.Reseeding))
			gauge(descClusterReseedWaiting, float64(len(c.ReseedWaiting)))
		}
		for _, l := range c.Lanes {
			gauge(descClusterWindow, float64(l.WindowUsed), l.Class, l.Project)
			gauge(descClusterDay, float64(l.DayUsed), l.Class, l.Project)
			if l.TPMLimit > 0 {
				gauge(descClusterTokens, float64(l.TokensUsed), l.Class, l.Project)
			}
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
