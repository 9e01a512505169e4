package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/sourcegraph/conc/pool"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// ClassConfig describes one model class.
type ClassConfig struct {
	// Name of the class, e.g. "text" or "image".
	Name string
	// Limits each project has on this class.
	Limits bucket.Limits
	// Concurrency is the most jobs of this class running at once. Default
	// (0): sized by Little's law from the lanes' RPM and the observed call
	// latency, so that the workers never bound what the quota allows. The
	// window lets a lane start at most RPM requests in any 60 s, so with
	// calls lasting L at most RPM x ceil(L / 60 s) of them are in flight at
	// once (the whole minute at once with the default Burst); the class gets
	// the sum over its lanes (projects), with L the longest of its last 64
	// calls (e.g. 5 image lanes at 20 RPM with 10 s calls: 100; with 70 s
	// calls: 200). Summary.Classes[].Concurrency shows the current figure.
	// Set it to bound the work in flight below that.
	Concurrency int
	// Burst is how many requests a lane may start at once after an idle
	// spell (see bucket.ClassConfig.Burst). Default RPM: the whole minute at
	// once; the window still holds the lane to RPM in any 60 s.
	Burst int
	// WindowMargin is added to the time each request counts from in its
	// lane's 60 s window (see bucket.ClassConfig.WindowMargin): the window
	// slot is stamped when the dispatcher hands the request to a worker, and
	// the margin covers the time until it reaches the API, so that the API's
	// own window never sees more than RPM. It costs about
	// WindowMargin / (60 s + WindowMargin) of a saturated lane's throughput.
	// Default 0 (none); must be >= 0 and under a minute.
	WindowMargin time.Duration
	// Model is the model the class calls, e.g. "gemini-3-pro-image-preview";
	// optional. A lane stopped because its project has no quota on the
	// class's model (ScopeNoQuota) stays stopped across restarts until the
	// class's Model or Limits change.
	Model string
	// Probe makes each lane send one request alone until one succeeds (see
	// bucket.ClassConfig.Probe): a project that cannot serve then costs
	// one request per class. Default false.
	Probe bool
}

// stopConfig is the configuration a lane stop is recorded under: the stop
// is dropped at start-up when the class's model or limits differ from it.
func (cc ClassConfig) stopConfig() string {
	return fmt.Sprintf("model=%s rpm=%d rpd=%d tpm=%d", cc.Model, cc.Limits.RPM, cc.Limits.RPD, cc.Limits.TPM)
}

// Config describes a Scheduler. Field comments give the defaults.
type Config struct {
	// Classes are the model classes; at least one.
	Classes []ClassConfig
	// Keys are the API keys by id, with their projects; at least one.
	Keys []bucket.Key
	// Store keeps counters, cooldowns and disabled keys. Default: store.NewMemory().
	Store store.Store
	// Logger; default zerolog.Nop().
	Logger zerolog.Logger
	// Observer receives events; default none.
	Observer Observer
	// Classifier maps work errors to outcomes; default DefaultClassifier.
	Classifier Classifier
	// MaxAttempts is the retry budget: the most times a job is tried after
	// transient failures. Default 5. Rate limits and disabled keys do not
	// spend it: the job moves to another lane, paced by the quota.
	MaxAttempts int
	// Critical is the fraction of a class's day at which it becomes critical. Default 0.9.
	Critical float64
	// Protect is the lowest priority still dispatched while a class is
	// critical; lower ones wait for the next day. Default PriorityHigh.
	// Set to PriorityLow to turn daily protection off.
	Protect *Priority
	// Aging is how long a queued job waits before it counts one priority
	// higher, so low priority cannot starve: a low job waits at most about
	// 2 x Aging behind a stream of high ones, and a high job gets ahead of
	// everything queued less than 2 x Aging before it. Default 5m.
	Aging time.Duration
	// BackoffBase and BackoffMax bound transient-retry backoff (exponential
	// with jitter). Defaults 1s and 1m.
	BackoffBase, BackoffMax time.Duration
	// Cooldown is how long a lane rests after a 429 that gave no retry delay
	// and no scope, or a per-minute one when the lane's window log is empty
	// (a per-minute 429 otherwise rests the lane until its window log frees
	// a slot, plus the class's WindowMargin). Default 30s.
	Cooldown time.Duration
	// ShutdownGrace is how long running jobs may go on after Run's context
	// ends before their contexts are cancelled. Default 0: at once.
	ShutdownGrace time.Duration
	// Location of the quota day. Default America/Los_Angeles.
	Location *time.Location
	// Seed for backoff jitter; 0: random.
	Seed uint64
	// Fingerprints maps key ids to a one-way fingerprint of their secrets
	// (never the secrets). A key disabled by an API answer is stored with
	// its fingerprint; at New, a stored disabled key whose fingerprint
	// differs from the one given here (its secret was replaced since) is
	// enabled again. Keys without one here, or stored without one, stay as
	// stored. Default none.
	Fingerprints map[string]string
}

func (c *Config) withDefaults() {
	if c.Store == nil {
		c.Store = store.NewMemory()
	}
	if c.Classifier == nil {
		c.Classifier = DefaultClassifier
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.Critical == 0 {
		c.Critical = 0.9
	}
	if c.Protect == nil {
		p := PriorityHigh
		c.Protect = &p
	}
	if c.Aging == 0 {
		c.Aging = 5 * time.Minute
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = time.Minute
	}
	if c.Cooldown == 0 {
		c.Cooldown = 30 * time.Second
	}
	if c.Location == nil {
		c.Location = bucket.Pacific
	}
}

// Validate reports the first problem with the configuration, naming the field and value.
func (c Config) Validate() error {
	c.withDefaults()
	for i, cl := range c.Classes {
		if cl.Concurrency < 0 {
			return fmt.Errorf("classes[%d] (%s).concurrency: %d: must be > 0", i, cl.Name, cl.Concurrency)
		}
	}
	if c.MaxAttempts < 0 {
		return fmt.Errorf("max_attempts: %d: must be > 0", c.MaxAttempts)
	}
	if c.Aging < 0 {
		return fmt.Errorf("aging: %v: must be > 0", c.Aging)
	}
	if c.BackoffBase < 0 || c.BackoffMax < c.BackoffBase {
		return fmt.Errorf("backoff: base %v, max %v: need 0 < base <= max", c.BackoffBase, c.BackoffMax)
	}
	if c.ShutdownGrace < 0 {
		return fmt.Errorf("shutdown_grace: %v: must be >= 0", c.ShutdownGrace)
	}
	return c.bucketConfig().Validate()
}

func (c Config) bucketConfig() bucket.Config {
	bc := bucket.Config{Keys: c.Keys, Location: c.Location, Critical: c.Critical}
	_, sharedTPM := c.Store.(sharedTokens)
	for _, cl := range c.Classes {
		bc.Classes = append(bc.Classes, bucket.ClassConfig{Name: cl.Name, Limits: cl.Limits, Burst: cl.Burst, WindowMargin: cl.WindowMargin, Probe: cl.Probe,
			SharedTPM: sharedTPM})
	}
	return bc
}

// Scheduler runs jobs on the lanes of its classes. Submit and Do may be
// called before Run (jobs wait) and from any goroutine; Summary works
// without Run. It is safe for concurrent use. The zero value is not usable.
type Scheduler struct {
	cfg     Config
	pool    *bucket.Pool
	store   store.Store
	ledger  *ledger
	log     zerolog.Logger
	classes map[string]*runner
	order   []*runner
	nextID  atomic.Uint64

	mu      sync.Mutex
	state   int // 0 new, 1 running, 2 stopped
	stopped chan struct{}

	rngMu sync.Mutex
	rng   *rand.Rand

	keysMu       sync.Mutex
	disabledKeys map[string]disabledInfo // by key id
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// New checks cfg, builds a Scheduler and restores its state (today's
// counters, cooldowns, exhausted lanes, disabled keys) from cfg.Store.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	cfg.withDefaults()
	p, err := bucket.New(cfg.bucketConfig())
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Scheduler{
		cfg:     cfg,
		pool:    p,
		store:   cfg.Store,
		ledger:  newLedger(cfg.Store, cfg.Classes),
		log:     cfg.Logger.With().Str("component", "scheduler").Logger(),
		classes: make(map[string]*runner),
		stopped: make(chan struct{}),
		rng:     rand.New(rand.NewPCG(seed, seed^0x5eed)),

		disabledKeys: make(map[string]disabledInfo),
	}
	s.ledger.log = s.log
	for _, cc := range cfg.Classes {
		r := newRunner(s, cc, p.Class(cc.Name))
		s.classes[cc.Name] = r
		s.order = append(s.order, r)
	}
	if err := s.restore(context.Background()); err != nil {
		return nil, fmt.Errorf("scheduler: restoring state: %w", err)
	}
	return s, nil
}

// restore loads today's counters and the lanes' windows (through the
// ledger), lane states and disabled keys.
func (s *Scheduler) restore(ctx context.Context) error {
	now := time.Now()
	if err := s.ledger.restore(ctx, s.classes, s.cfg.Location, now); err != nil {
		return err
	}
	states, err := s.store.LaneStates(ctx)
	if err != nil {
		return err
	}
	for _, ls := range states {
		r := s.classes[ls.Lane.Class]
		if r == nil {
			continue
		}
		if ls.CoolUntil.After(now) {
			r.class.CoolDown(ls.Lane.Project, ls.CoolUntil)
		}
		if ls.ExhaustedUntil.After(now) {
			r.class.ExhaustUntil(ls.Lane.Project, ls.ExhaustedUntil)
		}
		if ls.Stopped == "" {
			continue
		}
		if ls.Config == r.cfg.stopConfig() {
			r.class.Stop(ls.Lane.Project, ls.Stopped)
			continue
		}
		// The class's configuration changed since: the lane serves again.
		s.log.Info().Str("class", r.name).Str("project", ls.Lane.Project).Str("reason", ls.Stopped).
			Msg("lane stopped under another configuration of the class: resumed")
		ls.Stopped, ls.Config = "", ""
		if err := s.store.SetLaneState(ctx, ls); err != nil {
			return err
		}
	}
	disabled, err := s.store.DisabledKeys(ctx)
	if err != nil {
		return err
	}
	for _, d := range disabled {
		if fp := s.cfg.Fingerprints[d.KeyID]; fp != "" && d.Fingerprint != "" && fp != d.Fingerprint {
			// Its secret was replaced since it was disabled: try the new one.
			if err := s.store.EnableKey(ctx, d.KeyID); err != nil {
				return err
			}
			s.log.Info().Str("key", d.KeyID).Str("reason", d.Reason).Time("disabled_at", d.At).
				Msg("key enabled: its secret changed since it was disabled")
			continue
		}
		if _, ok := s.pool.KeyProject(d.KeyID); ok {
			s.setDisabled(d.KeyID, d.Reason, d.At)
		}
	}
	return nil
}

// Run dispatches jobs until ctx ends. Then it stops dispatching, gives
// running jobs Config.ShutdownGrace to finish before cancelling them, ends
// every queued job with ErrClosed, waits for every goroutine it started,
// settles the quota ledger (when the Store is a store.Ledger: the daily
// units reserved and not used are given back, so the stored count of every
// lane equals the requests it sent, and every lane's window log is stored
// for the next process) and returns nil, or the error of settling (the
// stored counts then over-count by the unused units). Run may be called
// once; a second call returns ErrClosed.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.state != stateNew {
		s.mu.Unlock()
		return ErrClosed
	}
	s.state = stateRunning
	s.mu.Unlock()

	// Work contexts end ShutdownGrace after ctx.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	s.startSharedDays(ctx)
	var wg sync.WaitGroup
	for _, r := range s.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.dispatch(ctx, workCtx)
		}()
	}
	var shared sync.WaitGroup
	if sh, ok := s.store.(sharedStore); ok {
		shared.Go(func() { s.runShared(ctx, sh) })
	}
	shared.Go(func() { s.ledger.runMidnights(ctx, s.classList(), s.cfg.Location) }) // ledger.go
	<-ctx.Done()
	shared.Wait()

	s.mu.Lock()
	s.state = stateStopped
	close(s.stopped)
	s.mu.Unlock()

	var grace *time.Timer
	if s.cfg.ShutdownGrace > 0 {
		grace = time.AfterFunc(s.cfg.ShutdownGrace, cancelWork)
	} else {
		cancelWork()
	}
	wg.Wait() // dispatchers return after their workers
	if grace != nil {
		grace.Stop()
	}
	for _, r := range s.order {
		r.closeQueued()
	}
	classes := make([]*bucket.Class, len(s.order))
	for i, r := range s.order {
		classes[i] = r.class
	}
	if err := s.ledger.settle(context.Background(), classes, time.Now()); err != nil {
		s.log.Error().Err(err).Msg("settling the quota ledger failed: unused daily units stay counted")
		return err
	}
	return nil
}

// Submit queues a job and returns its handle. The job leaves the queue, and
// never runs, if ctx ends first; while it runs, ctx is its work's context.
// A job whose ctx deadline falls before the earliest time its class could
// start it fails at once with a *NoCapacityError.
func (s *Scheduler) Submit(ctx context.Context, j Job) (*Handle, error) {
	r := s.classes[j.Class]
	if r == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownClass, j.Class)
	}
	if j.Work == nil {
		return nil, errors.New("scheduler: job has no Work")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	t := &task{
		job:      j,
		id:       s.nextID.Add(1),
		ctx:      ctx,
		enqueued: now,
		queuedAt: now,
		heapIdx:  -1,
	}
	t.handle = &Handle{id: t.id, class: j.Class, run: r, t: t, done: make(chan struct{})}
	if d, ok := ctx.Deadline(); ok {
		t.deadline = d
		earliest := r.class.Earliest(now, j.Tokens)
		if !earliest.IsZero() && j.Priority < *s.cfg.Protect && s.cfg.Critical < 1 && r.class.Critical(now) {
			// Daily protection holds the job until the next quota day.
			if midnight := bucket.NextMidnight(now, s.cfg.Location); midnight.After(earliest) {
				earliest = midnight
			}
		}
		if earliest.IsZero() || earliest.After(d) {
			err := &NoCapacityError{Class: j.Class, Earliest: earliest, Deadline: d}
			t.handle.finish(StateFailed, err, nil)
			return t.handle, nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateStopped {
		return nil, ErrClosed
	}
	if ctx.Done() != nil {
		t.stop = context.AfterFunc(ctx, func() { r.cancelQueued(t) })
	}
	r.enqueue(t, now)
	submitted(ctx, t.handle)
	return t.handle, nil
}

// Do submits a job and waits for it to end; it returns the job's error. If
// ctx ends first, the job leaves the queue (or its work is cancelled) and Do
// returns ctx.Err().
func (s *Scheduler) Do(ctx context.Context, j Job) error {
	h, err := s.Submit(ctx, j)
	if err != nil {
		return err
	}
	select {
	case <-h.Done():
		return h.Err()
	case <-ctx.Done():
		<-h.Done() // the cancellation hook ends it promptly
		return h.Err()
	}
}

// EnableKey puts a disabled key back into service on every class, durably;
// enabling an enabled key is not an error. It returns an error wrapping
// ErrUnknownKey for a key not configured. With a shared Store whose Redis is
// unreachable, the key is enabled here and the change reaches the other
// processes when Redis answers (KeyStatus.ClusterPending): not an error.
func (s *Scheduler) EnableKey(ctx context.Context, keyID string) error {
	if _, ok := s.pool.KeyProject(keyID); !ok {
		return fmt.Errorf("%w: %q", ErrUnknownKey, keyID)
	}
	if err := s.store.EnableKey(ctx, keyID); err != nil {
		if !errors.Is(err, store.ErrPending) {
			return fmt.Errorf("scheduler: enabling key %q: %w", keyID, err)
		}
		s.log.Warn().Err(err).Str("key", keyID).Msg("key enabled here; the other processes learn it when Redis answers")
	}
	s.setEnabled(keyID)
	for _, r := range s.order {
		r.signal()
	}
	return nil
}

// ResumeLane puts a stopped lane (the project on the class; see
// ScopeNoQuota) back into service, durably; with a shared Store
// (store.Redis) every process of the cluster resumes it (while Redis is
// unreachable: when it answers again, LaneSummary.ClusterPending; not an
// error). Resuming a lane that is not stopped is not an error; an unknown
// class (ErrUnknownClass) or project (ErrUnknownLane) is. It is safe for
// concurrent use, before and while Run runs.
func (s *Scheduler) ResumeLane(ctx context.Context, class, project string) error {
	r := s.classes[class]
	if r == nil {
		return fmt.Errorf("%w: %q", ErrUnknownClass, class)
	}
	if !r.class.Resume(project) {
		return fmt.Errorf("%w: class %q has no lane of project %q", ErrUnknownLane, class, project)
	}
	now := time.Now()
	if err := r.persistLane(ctx, project, now); err != nil {
		return fmt.Errorf("scheduler: resuming lane %s/%s: %w", project, class, err)
	}
	r.signal()
	ls, shared := s.store.(laneResumer)
	if rt, ok := s.store.(store.ResumeTimes); ok && !shared {
		// A data directory alone (slideshowd lanes resume with no
		// daemon): the resume's time, so that a process joining a cluster
		// on this data directory later shares it (store.ResumeTimes).
		if err := rt.ResumeLaneAt(ctx, store.LaneID{Project: project, Class: class}, now); err != nil {
			return fmt.Errorf("scheduler: resuming lane %s/%s: %w", project, class, err)
		}
	}
	if shared {
		// The other processes of the cluster resume it too.
		err := ls.ResumeLane(ctx, store.LaneID{Project: project, Class: class})
		switch {
		case errors.Is(err, store.ErrPending):
			s.log.Warn().Err(err).Str("class", class).Str("project", project).Msg("lane resumed here; the other processes learn it when Redis answers")
		case err != nil:
			return fmt.Errorf("scheduler: resuming lane %s/%s in the cluster (resumed here): %w", project, class, err)
		}
	}
	return nil
}

// Pool returns the quota state the scheduler dispatches on (read it; do not
// acquire from it while the scheduler runs).
func (s *Scheduler) Pool() *bucket.Pool { return s.pool }

func (s *Scheduler) emit(e Event) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Observe(e)
	}
}

// backoff returns the delay before transient retry n (1-based): exponential
// from BackoffBase, capped at BackoffMax, with jitter in [d/2, d].
func (s *Scheduler) backoff(n int) time.Duration {
	d := s.cfg.BackoffBase
	for i := 1; i < n && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.BackoffMax)
	s.rngMu.Lock()
	j := s.rng.Int64N(int64(d)/2 + 1)
	s.rngMu.Unlock()
	return d/2 + time.Duration(j)
}

// runner is the queue, pool and dispatcher of one class.
type runner struct {
	s     *Scheduler
	name  string
	cfg   ClassConfig
	class *bucket.Class
	wake  chan struct{}

	wakes atomic.Int64 // dispatcher wake-ups, for tests

	// The class's wait for quota (see wait.go); waiting is set while wait is.
	waitMu       sync.Mutex
	wait         *Wait
	waitReported bool
	waiting      atomic.Bool

	// summedRPM is the RPM of all the class's lanes: the most requests the
	// window lets the class start in any 60 s.
	summedRPM int

	mu      sync.Mutex
	queues  [3]deque // by priority: low, normal, high
	delayed delayHeap
	running int
	// The latencies of the last calls (a ring) and the longest of them,
	// for the default Concurrency.
	latencies  [64]time.Duration
	latNext    int
	latLongest time.Duration
}

func newRunner(s *Scheduler, cc ClassConfig, c *bucket.Class) *runner {
	projects := map[string]bool{}
	for _, k := range s.cfg.Keys {
		projects[k.Project] = true
	}
	return &runner{s: s, name: cc.Name, cfg: cc, class: c, wake: make(chan struct{}, 1),
		summedRPM: cc.Limits.RPM * len(projects)}
}

// concurrencyLocked is the most jobs that may run at once: Concurrency when
// set, else the lanes' summed RPM times the number of 60 s windows the
// longest recent call spans (Little's law under the window). r.mu is held.
func (r *runner) concurrencyLocked() int {
	if r.cfg.Concurrency > 0 {
		return r.cfg.Concurrency
	}
	windows := max(1, int((r.latLongest+time.Minute-1)/time.Minute))
	return max(1, r.summedRPM*windows)
}

// observeLatency records how long one call of the class lasted.
func (r *runner) observeLatency(d time.Duration) {
	if r.cfg.Concurrency > 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.latencies[r.latNext]
	r.latencies[r.latNext] = d
	r.latNext = (r.latNext + 1) % len(r.latencies)
	switch {
	case d >= r.latLongest:
		r.latLongest = d
	case old == r.latLongest:
		r.latLongest = slices.Max(r.latencies[:])
	}
}

func level(p Priority) int { return int(min(max(p, PriorityLow), PriorityHigh) - PriorityLow) }

func (r *runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *runner) enqueue(t *task, now time.Time) {
	r.mu.Lock()
	q := &r.queues[level(t.job.Priority)]
	ahead := 0
	for i := level(t.job.Priority); i < len(r.queues); i++ {
		ahead += r.queues[i].live
	}
	q.pushBack(t)
	if !t.canceled { // its context may have ended already: then it has no start
		t.handle.start.Store(r.estimate(now, t.job.Tokens, ahead).UnixNano())
	}
	r.mu.Unlock()
	r.signal()
}

// estimate guesses when a job with ahead jobs before it starts: when a lane
// is free for it, plus the time the class's summed RPM needs for those ahead.
func (r *runner) estimate(now time.Time, tokens, ahead int) time.Time {
	at := r.class.Earliest(now, tokens)
	if at.IsZero() {
		at = now
	}
	if rpm := max(1, r.class.RPMLimit(now)); ahead > 0 {
		at = at.Add(time.Duration(ahead) * time.Minute / time.Duration(rpm))
	}
	return at
}

// requeue puts a task back at the head of its priority, or in the delay
// heap until notBefore.
func (r *runner) requeue(t *task, notBefore time.Time) {
	now := time.Now()
	est := r.class.Earliest(now, t.job.Tokens)
	if notBefore.After(est) {
		est = notBefore
	}
	r.mu.Lock()
	t.queuedAt = now
	t.handle.state.Store(int32(StateQueued))
	t.handle.start.Store(est.UnixNano())
	if t.ctx.Done() != nil {
		t.stop = context.AfterFunc(t.ctx, func() { r.cancelQueued(t) })
	}
	if notBefore.After(now) {
		t.notBefore = notBefore
		r.delayed.push(t)
	} else {
		r.queues[level(t.job.Priority)].pushFront(t)
	}
	r.mu.Unlock()
	r.signal()
}

// cancelQueued ends a queued task whose context ended.
func (r *runner) cancelQueued(t *task) { r.withdraw(t, nil) }

// withdraw takes t out of the queue if it is still queued and ends it with
// cause (nil: its context's error); it reports whether it did.
func (r *runner) withdraw(t *task, cause error) bool {
	r.mu.Lock()
	if t.canceled || t.handle.State() != StateQueued {
		r.mu.Unlock()
		return false
	}
	t.canceled = true
	if t.heapIdx >= 0 {
		i := t.heapIdx
		last := len(r.delayed) - 1
		r.delayed.swap(i, last)
		r.delayed[last] = nil
		r.delayed = r.delayed[:last]
		if i < last {
			r.delayed.down(i)
			r.delayed.up(i)
		}
		t.heapIdx = -1
	} else {
		r.queues[level(t.job.Priority)].live--
	}
	r.mu.Unlock()
	err := cause
	if err == nil {
		err = t.ctx.Err()
	}
	if t.lastErr != nil {
		err = fmt.Errorf("%w (last attempt: %v)", err, t.lastErr)
	}
	t.handle.finish(StateCanceled, err, func() {
		r.s.emit(Event{Kind: EventFinished, Time: time.Now(), Class: r.name, JobID: t.id, JobName: t.job.Name,
			Priority: t.job.Priority, Attempt: t.attempts, Outcome: "canceled", Err: err, Final: true})
	})
	r.signal()
	return true
}

// closeQueued ends every queued job with ErrClosed after Run stopped.
func (r *runner) closeQueued() {
	r.mu.Lock()
	var ts []*task
	for i := range r.queues {
		for r.queues[i].n > 0 {
			if t := r.queues[i].popFront(); !t.canceled {
				ts = append(ts, t)
			}
		}
	}
	for len(r.delayed) > 0 {
		ts = append(ts, r.delayed.pop())
	}
	for _, t := range ts {
		t.canceled = true // out of the queue: a racing cancellation hook leaves it alone
	}
	r.mu.Unlock()
	for _, t := range ts {
		if t.stop != nil {
			t.stop()
		}
		t.handle.finish(StateFailed, ErrClosed, func() {
			r.s.emit(Event{Kind: EventFinished, Time: time.Now(), Class: r.name, JobID: t.id, JobName: t.job.Name,
				Priority: t.job.Priority, Attempt: t.attempts, Outcome: "closed", Err: ErrClosed, Final: true})
		})
	}
}

// pick returns the next task to dispatch: among the heads of the priority
// queues, the highest effective priority (priority plus one level per Aging
// waited), then the oldest. While the class
// is critical, queues below Protect are passed over; held reports that some
// were.
func (r *runner) pick(now time.Time, critical bool) (best *task, held bool) {
	var bestEff int64
	for i := len(r.queues) - 1; i >= 0; i-- {
		t := r.queues[i].front()
		if t == nil {
			continue
		}
		if critical && t.job.Priority < *r.s.cfg.Protect {
			held = true
			continue
		}
		eff := int64(i) + int64(now.Sub(t.enqueued)/r.s.cfg.Aging)
		if best == nil || eff > bestEff || (eff == bestEff && t.enqueued.Before(best.enqueued)) {
			best, bestEff = t, eff
		}
	}
	return best, held
}

// dispatch is the class's dispatcher loop. It sleeps until the earliest of:
// a signal (new job, finished job, cancellation, key enabled), the time a
// lane has capacity, the end of a backoff, shutdown. With nothing to do it
// sets no timer.
func (r *runner) dispatch(ctx, workCtx context.Context) {
	// The pool bounds a set Concurrency; the default one, which follows the
	// observed latency, is bounded by r.running against concurrencyLocked.
	workers := pool.New()
	if r.cfg.Concurrency > 0 {
		workers = workers.WithMaxGoroutines(r.cfg.Concurrency)
	}
	defer workers.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		wait := r.dispatchReady(workers, workCtx)
		var tc <-chan time.Time
		if !wait.IsZero() {
			timer.Reset(time.Until(wait))
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-tc:
		}
		r.wakes.Add(1)
		timer.Stop()
	}
}

// dispatchReady starts every job it can now and returns when to look again
// (zero: only on a signal).
func (r *runner) dispatchReady(workers *pool.Pool, workCtx context.Context) time.Time {
	for {
		now := time.Now()
		r.mu.Lock()
		for len(r.delayed) > 0 && !r.delayed[0].notBefore.After(now) {
			t := r.delayed.pop()
			r.queues[level(t.job.Priority)].pushFront(t)
		}
		var wait time.Time
		if len(r.delayed) > 0 {
			wait = r.delayed[0].notBefore
		}
		if r.running >= r.concurrencyLocked() {
			r.mu.Unlock()
			return wait
		}
		critical := r.s.cfg.Critical < 1 && *r.s.cfg.Protect > PriorityLow && r.class.Critical(now)
		t, held := r.pick(now, critical)
		if t == nil {
			r.mu.Unlock()
			if held {
				// Protected jobs wait for the next quota day.
				midnight := bucket.NextMidnight(now, r.s.cfg.Location)
				wait = earliest(wait, midnight)
				r.noteWait(now, midnight, 0, true)
			} else {
				r.noteIdle()
			}
			return wait
		}
		lease, ok, next := r.s.ledger.acquire(r.class, now, t.job.Tokens, r.demandLocked())
		if !ok {
			r.mu.Unlock()
			switch {
			case next.IsZero():
				r.failHead(t, r.noLaneError(t))
				continue
			case !t.deadline.IsZero() && next.After(t.deadline):
				r.failHead(t, &NoCapacityError{Class: r.name, Earliest: next, Deadline: t.deadline})
				continue
			}
			t.handle.start.Store(next.UnixNano())
			r.noteWait(now, next, t.job.Tokens, false)
			return earliest(wait, next)
		}
		r.queues[level(t.job.Priority)].popFront()
		r.running++
		t.handle.state.Store(int32(StateRunning)) // under r.mu: cancelQueued now leaves it alone
		r.mu.Unlock()

		if t.stop != nil && !t.stop() {
			// The job's context ended just now: its cancellation hook is
			// running and will find it no longer queued; end it here.
			// The lease's record was never written: give it back too.
			r.s.ledger.abandon(r.class, lease, now)
			r.mu.Lock()
			r.running--
			r.mu.Unlock()
			r.endCanceled(t, t.ctx.Err())
			continue
		}
		slot, err := r.s.ledger.commit(context.Background(), r.class, lease, now)
		if err != nil && r.refused(err, lease, now) {
			// Another process holds the lane's shared capacity: the lane
			// waits, the job tries again at once (on another lane if one
			// can serve).
			r.mu.Lock()
			r.running--
			r.mu.Unlock()
			r.requeue(t, time.Time{})
			continue
		}
		if err != nil {
			r.s.log.Error().Err(err).Str("class", r.name).Str("project", lease.Project).
				Msg("recording daily units failed; retrying the job later")
			r.mu.Lock()
			r.running--
			r.mu.Unlock()
			r.requeue(t, now.Add(r.s.cfg.BackoffBase))
			continue
		}
		t.attempts++
		t.handle.start.Store(0)
		r.s.emit(Event{Kind: EventDispatched, Time: now, Class: r.name, JobID: t.id, JobName: t.job.Name,
			Priority: t.job.Priority, KeyID: lease.KeyID, Project: lease.Project, Attempt: t.attempts,
			Waited: now.Sub(t.queuedAt)})
		r.noteDispatched(now)
		workers.Go(func() { r.run(workCtx, t, lease, slot) })
	}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func (r *runner) noLaneError(t *task) error {
	if tpm := r.class.Limits().TPM; tpm > 0 && t.job.Tokens > tpm {
		return &PermanentError{Err: fmt.Errorf("job needs %d input tokens, above the class %q TPM of %d", t.job.Tokens, r.name, tpm)}
	}
	return fmt.Errorf("%w: class %q: %s", ErrNoLanes, r.name, r.outOfService())
}

// outOfService says why each lane of the class serves nothing, e.g.
// `project p1: out of credit (keys k1, k2); project p2: no quota on this
// model`.
func (r *runner) outOfService() string {
	reasons := make(map[string]string)
	for _, k := range r.s.pool.Keys() {
		if k.Disabled != "" {
			reasons[k.ID] = k.Disabled
		}
	}
	var parts []string
	for _, lu := range r.class.Usage(time.Now()).Lanes {
		if lu.Enabled {
			continue
		}
		if lu.Stopped != "" {
			parts = append(parts, fmt.Sprintf("project %s: %s", lu.Project, lu.Stopped))
			continue
		}
		// Group the keys by reason, in key order.
		var order []string
		byReason := make(map[string][]string)
		for _, id := range lu.DisabledKeys {
			why := reasons[id]
			if byReason[why] == nil {
				order = append(order, why)
			}
			byReason[why] = append(byReason[why], id)
		}
		for _, why := range order {
			parts = append(parts, fmt.Sprintf("project %s: %s (keys %s)", lu.Project, why, strings.Join(byReason[why], ", ")))
		}
	}
	if len(parts) == 0 {
		return "no lane"
	}
	return strings.Join(parts, "; ")
}

// failHead removes the head task t and fails it.
func (r *runner) failHead(t *task, err error) {
	r.mu.Lock()
	q := &r.queues[level(t.job.Priority)]
	if q.front() == t {
		q.popFront()
	} else if !t.canceled {
		// A requeued job went in front of t since it was picked: t is
		// still queued; mark it so it is dropped when met.
		t.canceled = true
		q.live--
	}
	r.mu.Unlock()
	if t.stop != nil {
		t.stop()
	}
	t.handle.finish(StateFailed, err, func() {
		r.s.emit(Event{Kind: EventFinished, Time: time.Now(), Class: r.name, JobID: t.id, JobName: t.job.Name,
			Priority: t.job.Priority, Attempt: t.attempts, Outcome: "no_capacity", Err: err, Final: true})
	})
}

func (r *runner) endCanceled(t *task, err error) {
	t.handle.finish(StateCanceled, err, func() {
		r.s.emit(Event{Kind: EventFinished, Time: time.Now(), Class: r.name, JobID: t.id, JobName: t.job.Name,
			Priority: t.job.Priority, Attempt: t.attempts, Outcome: "canceled", Err: err, Final: true})
	})
	r.signal()
}

// wakeups returns how often the dispatchers have woken (for tests).
func (s *Scheduler) wakeups() int64 {
	var n int64
	for _, r := range s.order {
		n += r.wakes.Load()
	}
	return n
}
