package pipeline

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/internal/redact"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// DefaultMaxActive is Config.MaxActive's default.
const DefaultMaxActive = 64

// requeueAfter is how long a job cut short while Run goes on (a store or
// file error) waits before it is worked again.
const requeueAfter = time.Minute

// Config describes a Pipeline. Field comments give the defaults.
type Config struct {
	// Store keeps the job records (JSON, one per job); required.
	Store store.Store
	// Gemini makes the calls, through its scheduler; required.
	Gemini *gemini.Client
	// DataDir holds each job's files under jobs/<id>/: the slides' images,
	// analysis.json and image-01.png...; required.
	DataDir string
	// Logger; default zerolog.Nop().
	Logger zerolog.Logger
	// Secrets are removed from the client content the pipeline logs (a
	// job's source, cut to 80 bytes), as are API-key-shaped strings and URL
	// user information (see internal/redact). Default none.
	Secrets []string
	// MaxActive is the most jobs in progress at once; the others wait,
	// stored, highest priority first. A job in progress whose every
	// queued call waits for the next Pacific day gives its slot up until
	// its quota comes back (parked: see park.go). Default
	// DefaultMaxActive.
	MaxActive int
	// AspectRatio and ImageSize of generated images (see
	// gemini.ImageOptions). Defaults "9:16" and "1K".
	AspectRatio, ImageSize string
	// ShutdownGrace is how long steps already running may go on after Run's
	// context ends before their contexts are cancelled. Default 0: at once.
	// Give the scheduler the same grace.
	ShutdownGrace time.Duration
	// Retention is how long a job that ended (done or failed) is kept after
	// its end (Status.UpdatedAt); Run then deletes its record and its
	// directory, and Status and ImagePath answer ErrNotFound. With
	// Retention set, Run also removes at start the job directories that
	// have no record. A job that Retry reopens is not final and is not
	// deleted; its retention starts again when it ends again. Default 0:
	// jobs are kept for ever.
	Retention time.Duration
	// OnChange, when set, is called with a job's status after each change
	// is stored. It runs on the pipeline's goroutines: it must be quick and
	// must not call back into the Pipeline.
	OnChange func(Status)
}

func (c *Config) withDefaults() {
	if c.MaxActive == 0 {
		c.MaxActive = DefaultMaxActive
	}
	if c.AspectRatio == "" {
		c.AspectRatio = "9:16"
	}
	if c.ImageSize == "" {
		c.ImageSize = "1K"
	}
}

// Validate reports the first problem with the configuration, naming the field.
func (c Config) Validate() error {
	c.withDefaults()
	switch {
	case c.Store == nil:
		return errors.New("pipeline: store: none")
	case c.Gemini == nil:
		return errors.New("pipeline: gemini: none")
	case c.DataDir == "":
		return errors.New("pipeline: data_dir: empty")
	case c.MaxActive < 0:
		return fmt.Errorf("pipeline: max_active: %d: must be > 0", c.MaxActive)
	case c.ShutdownGrace < 0:
		return fmt.Errorf("pipeline: shutdown_grace: %v: must be >= 0", c.ShutdownGrace)
	case c.Retention < 0:
		return fmt.Errorf("pipeline: retention: %v: must be >= 0 (0 keeps jobs for ever)", c.Retention)
	}
	if err := (gemini.ImageOptions{AspectRatio: c.AspectRatio, Size: c.ImageSize}).Validate(); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	return nil
}

// Pipeline runs slideshow jobs: Submit stores a job durably, Run works the
// stored jobs to their end. Safe for concurrent use; Submit, Status,
// ImagePath, Wait and List work before Run (jobs then wait for it). The zero
// value is not usable: build one with New.
type Pipeline struct {
	cfg     Config
	log     zerolog.Logger
	redact  redact.Redactor // of the client content logged
	jobsDir string

	submitMu sync.Mutex // one keyed Submit at a time: they are idempotent
	retryMu  sync.Mutex // one Retry at a time

	// inProgress is the jobs Run works at once (at most MaxActive): a
	// queued job waits for a slot while it is MaxActive.
	inProgress atomic.Int32

	mu       sync.Mutex
	state    int // stateNew, stateRunning, stateStopped
	active   map[string]*job
	queue    [3][]*job                  // waiting for a slot, by priority level (low, normal, high)
	parked   []*job                     // active, waiting for their quota without a slot (park.go)
	waiters  map[string][]chan struct{} // Wait: closed when the job ends
	released map[string][]chan struct{} // Retry: closed when the job leaves active
	creating map[string]bool            // Submit: directory made, record not stored yet
	holds    map[string]int             // Hold: callers keeping the job from retention
	recheck  []string                   // jobs released by their last Hold after an expiry passed them by
	// endedQueued holds jobs Cancel ended while they were queued, for Run's
	// retention (Run drains it when woken).
	endedQueued []record
	wake        chan struct{}
	probe       diskProbe // DiskHealth's last result
	// nextExpiry is when Run's retention timer fires; zero when it is not
	// set (nothing final to expire, Retention 0, or Run not running).
	nextExpiry time.Time
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// New checks cfg and builds a Pipeline; it creates DataDir/jobs.
func New(cfg Config) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.withDefaults()
	jobsDir := filepath.Join(cfg.DataDir, "jobs")
	if err := mkdirSync(jobsDir); err != nil {
		return nil, fmt.Errorf("pipeline: data dir: %w", err)
	}
	// A jobs/ that cannot be written would answer every submit with an
	// error: refuse to start instead.
	if err := probeDir(jobsDir); err != nil {
		return nil, err
	}
	return &Pipeline{
		cfg:      cfg,
		log:      cfg.Logger.With().Str("component", "pipeline").Logger(),
		redact:   redact.New(cfg.Secrets...),
		jobsDir:  jobsDir,
		active:   make(map[string]*job),
		waiters:  make(map[string][]chan struct{}),
		released: make(map[string][]chan struct{}),
		creating: make(map[string]bool),
		holds:    make(map[string]int),
		wake:     make(chan struct{}, 1),
	}, nil
}

// Run works jobs until ctx ends. On start it resumes every stored job that
// is not done or failed, skipping the steps whose output is stored. A job
// cut short while Run goes on (a store or file error) is worked again a
// minute later. When ctx ends it starts nothing new, gives running steps
// Config.ShutdownGrace, and leaves the unfinished work stored for the next
// Run; it returns when every goroutine it started has ended. Run may be
// called once.
//
// With Config.Retention set, Run deletes the jobs that ended Retention ago
// or more, at start and then as they come due: it keeps one timer, set to
// the earliest moment a kept job expires, and none when no job is final.
// At start it also removes job directories that have no record.
func (p *Pipeline) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.state != stateNew {
		p.mu.Unlock()
		return ErrClosed
	}
	p.state = stateRunning
	p.mu.Unlock()

	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	defer func() {
		p.mu.Lock()
		p.state = stateStopped
		p.mu.Unlock()
		if p.cfg.ShutdownGrace > 0 {
			t := time.AfterFunc(p.cfg.ShutdownGrace, cancelWork)
			defer t.Stop()
		} else {
			cancelWork()
		}
		wg.Wait()
	}()

	ret := &retention{p: p}
	defer ret.stop()
	if err := p.resume(ctx, ret.keep); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if p.cfg.Retention > 0 {
		p.removeOrphans(ctx)
		ret.expire(ctx)
	}
	type ended struct {
		j      *job
		final  bool
		parked bool
	}
	running := 0
	working := make(map[*job]bool) // the jobs in progress
	parkTick := time.NewTicker(parkEvery)
	defer parkTick.Stop()
	done := make(chan ended, p.cfg.MaxActive)
	var (
		requeueMu sync.Mutex
		requeues  = make(map[*time.Timer]bool) // pending; a timer removes itself when it fires
	)
	defer func() {
		requeueMu.Lock()
		defer requeueMu.Unlock()
		for t := range requeues {
			if t.Stop() {
				wg.Done()
			}
		}
	}()
	for {
		for running < p.cfg.MaxActive {
			j := p.next()
			if j == nil {
				break
			}
			running++
			p.inProgress.Store(int32(running))
			working[j] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				final, parked := p.work(workCtx, ctx, j)
				done <- ended{j, final, parked}
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-parkTick.C:
			p.parkWaiting(working)
			p.readmit()
		case e := <-done:
			running--
			p.inProgress.Store(int32(running))
			delete(working, e.j)
			if e.parked {
				continue
			}
			if e.final {
				if rec := e.j.snapshot(); p.cfg.Retention > 0 {
					ret.keep(rec.ID, rec.UpdatedAt)
					ret.arm()
				}
			}
			if !e.final && ctx.Err() == nil {
				// Cut short by an error that is not the job's (its stored
				// state is the last good one): work it again later rather
				// than leave it in progress until the next start.
				rec := e.j.snapshot()
				p.log.Warn().Str("job", rec.ID).Dur("after", requeueAfter).Msg("job interrupted; working it again later")
				wg.Add(1)
				requeueMu.Lock()
				var t *time.Timer
				t = time.AfterFunc(requeueAfter, func() {
					defer wg.Done()
					requeueMu.Lock()
					delete(requeues, t)
					requeueMu.Unlock()
					p.enqueueUnlessFinal(rec)
				})
				requeues[t] = true
				requeueMu.Unlock()
			}
		case <-p.wake:
			if running >= p.cfg.MaxActive {
				// A job queued for a slot (a submit): the jobs in
				// progress that wait for the next day give theirs up now.
				p.parkWaiting(working)
			}
			p.mu.Lock()
			ended := p.endedQueued
			p.endedQueued = nil
			p.mu.Unlock()
			for _, rec := range ended {
				ret.keep(rec.ID, rec.UpdatedAt)
			}
			rechecked := p.cfg.Retention > 0 && ret.recheck()
			if rechecked {
				ret.expire(ctx)
			} else if len(ended) > 0 {
				ret.arm()
			}
		case <-ret.C():
			ret.fired()
			ret.expire(ctx)
		}
	}
}

// resume queues the stored jobs that are not final and passes the final
// ones to kept, with their ends.
func (p *Pipeline) resume(ctx context.Context, kept func(id string, ended time.Time)) error {
	var recs []record
	err := p.cfg.Store.Jobs(ctx, func(jr store.JobRecord) bool {
		var r record
		if err := json.Unmarshal(jr.Data, &r); err != nil {
			p.log.Error().Str("job", jr.ID).Err(err).Msg("unreadable job record; skipped")
			return true
		}
		if !r.State.Final() {
			recs = append(recs, r)
		} else {
			kept(r.ID, r.UpdatedAt)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("pipeline: reading stored jobs: %w", err)
	}
	slices.SortFunc(recs, func(a, b record) int { return a.CreatedAt.Compare(b.CreatedAt) })
	for _, r := range recs {
		if p.enqueue(r) {
			p.log.Info().Str("job", r.ID).Str("state", string(r.State)).Msg("resuming job")
		}
	}
	return nil
}

// enqueueUnlessFinal queues a job cut short earlier, unless it has ended
// since (Cancel); rec is its last known record.
func (p *Pipeline) enqueueUnlessFinal(rec record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if stored, err := p.load(context.Background(), rec.ID); err == nil {
		if stored.State.Final() {
			return
		}
		rec = stored
	}
	p.enqueueLocked(rec)
}

// enqueue queues a job unless it is already active; it reports whether it did.
func (p *Pipeline) enqueue(r record) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enqueueLocked(r)
}

func (p *Pipeline) enqueueLocked(r record) bool {
	if _, ok := p.active[r.ID]; ok {
		return false
	}
	j := &job{p: p, rec: r, dir: filepath.Join(p.jobsDir, r.ID)}
	p.active[r.ID] = j
	lv := priorityLevel(r.Priority)
	p.queue[lv] = append(p.queue[lv], j)
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return true
}

// next pops the next queued job, highest priority first.
func (p *Pipeline) next() *job {
	p.mu.Lock()
	defer p.mu.Unlock()
	for lv := len(p.queue) - 1; lv >= 0; lv-- {
		if len(p.queue[lv]) > 0 {
			j := p.queue[lv][0]
			p.queue[lv][0] = nil
			p.queue[lv] = p.queue[lv][1:]
			return j
		}
	}
	return nil
}

func priorityLevel(s string) int {
	pr, _ := scheduler.ParsePriority(s)
	return int(pr - scheduler.PriorityLow)
}

// release forgets an active job and, when it is final, wakes its waiters.
func (p *Pipeline) release(j *job, final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.active, j.rec.ID)
	for _, ch := range p.released[j.rec.ID] {
		close(ch)
	}
	delete(p.released, j.rec.ID)
	if final {
		for _, ch := range p.waiters[j.rec.ID] {
			close(ch)
		}
		delete(p.waiters, j.rec.ID)
	}
}

// Submit validates r, stores the job (its record and the slides' images)
// durably and queues it; it returns the job's id. Invalid input gives an
// *InputError naming the field. With r.Key set, Submit is idempotent: a job
// already stored under that key keeps its id and is not submitted again;
// a different request under a stored key is a *KeyReusedError (wrapping
// ErrKeyReused) and submits nothing.
func (p *Pipeline) Submit(ctx context.Context, r Request) (string, error) {
	id, _, err := p.SubmitKeyed(ctx, r)
	return id, err
}

// SubmitKeyed is Submit that also reports whether r.Key named a job already
// stored (existed true: that job's id, nothing submitted), so a client
// re-running a batch can tell a job of an earlier run from its own.
func (p *Pipeline) SubmitKeyed(ctx context.Context, r Request) (id string, existed bool, err error) {
	id, err = p.submit(ctx, r, &existed)
	return id, existed, err
}

func (p *Pipeline) submit(ctx context.Context, r Request, existed *bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	pr, err := validate(r)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	stopped := p.state == stateStopped
	p.mu.Unlock()
	if stopped {
		return "", ErrClosed
	}

	var id, digest string
	if r.Key != "" {
		// One keyed Submit at a time, so a key maps to one job.
		p.submitMu.Lock()
		defer p.submitMu.Unlock()
		id = keyID(r.Key)
		digest = requestDigest(r, pr)
		jr, err := p.cfg.Store.Job(ctx, id)
		if err == nil {
			var old record
			if err := json.Unmarshal(jr.Data, &old); err != nil {
				return "", fmt.Errorf("pipeline: job %s: unreadable record: %w", id, err)
			}
			// Records written before digests were stored have none: they
			// match any request, as before.
			if old.Digest != "" && old.Digest != digest {
				return "", &KeyReusedError{Key: r.Key, ID: id}
			}
			*existed = true
			return id, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("pipeline: %w", err)
		}
	} else {
		id = randomID()
	}
	// Marked as being created under p.mu, before its directory exists: the
	// retention (deleteExpired, removeOrphan) leaves it alone, and a keyed
	// Submit waits here until an expired job of the same id is gone.
	p.mu.Lock()
	p.creating[id] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.creating, id)
		p.mu.Unlock()
	}()
	dir := filepath.Join(p.jobsDir, id)
	if err := mkdirSync(dir); err != nil {
		_ = os.Remove(dir)
		return "", p.diskError(fmt.Errorf("pipeline: job %s: %w", id, err))
	}
	// Nothing half-written stays: the folder goes when the job is not
	// stored.
	stored := false
	defer func() {
		if !stored {
			if err := os.RemoveAll(dir); err != nil {
				p.log.Warn().Str("job", id).Err(err).Msg("cannot remove the folder of a job not stored")
			}
		}
	}()
	now := time.Now().UTC()
	rec := record{
		V: recordVersion, ID: id, Key: r.Key, Digest: digest, Source: r.Source, Priority: pr.String(),
		Images: r.Images, State: JobQueued, Attempts: 1, CreatedAt: now, UpdatedAt: now,
		ImageStates: make([]ImageStatus, r.Images),
	}
	for i := range rec.ImageStates {
		rec.ImageStates[i] = ImageStatus{N: i + 1, State: ImagePending}
	}
	for i, s := range r.Slides {
		sr := slideRecord{Text: s.Text}
		if len(s.Image) > 0 {
			sr.MIME = imageMIME(s)
			sr.File = fmt.Sprintf("slide-%02d%s", i+1, extension(sr.MIME))
			if err := writeFileAtomic(dir, sr.File, s.Image); err != nil {
				return "", p.diskError(fmt.Errorf("pipeline: job %s: %w", id, err))
			}
		}
		rec.Slides = append(rec.Slides, sr)
	}
	// Stored, reported and queued under p.mu, as in reopenLocked: a Run
	// starting meanwhile may find the record in the store, but cannot queue
	// it (and finish it) before this queues it from a record gone stale.
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.put(ctx, rec); err != nil {
		return "", p.diskError(err)
	}
	stored = true
	p.probed(nil)
	p.log.Info().Str("job", id).Str("source", p.redact.Excerpt(r.Source, 80)).Int("slides", len(r.Slides)).
		Int("images", r.Images).Str("priority", rec.Priority).Msg("job accepted")
	// Reported before it is queued, so OnChange never sees "queued" after
	// the job's progress.
	p.notify(rec)
	p.enqueueLocked(rec)
	return id, nil
}

// Retry reopens job id when it ended failed or canceled, so that Run works it again:
// its failed images, or its failed analysis and then its images, go back
// to pending and the job is queued; the analysis and images it finished are
// kept and never asked for again. The record counts the attempt
// (Status.Attempts, Status.RetriedAt) and is stored before Retry returns,
// so a reopened job survives a restart like a submitted one. A job that
// has just failed is reopened once its worker has let it go.
//
// Retry wraps ErrNotFailed when the job is queued, in progress or done,
// ErrNotFound when there is no such job, and returns ErrClosed after Run
// has returned, or ctx.Err().
func (p *Pipeline) Retry(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.retryMu.Lock()
	defer p.retryMu.Unlock()
	for {
		p.mu.Lock()
		if p.state == stateStopped {
			p.mu.Unlock()
			return ErrClosed
		}
		r, err := p.load(ctx, id)
		if err != nil {
			p.mu.Unlock()
			return err
		}
		if r.State != JobFailed && r.State != JobCanceled {
			p.mu.Unlock()
			return fmt.Errorf("%w: job %s is %s", ErrNotFailed, id, r.State)
		}
		if _, held := p.active[id]; !held {
			err := p.reopenLocked(ctx, r)
			p.mu.Unlock()
			return err
		}
		// Failed a moment ago: its worker is letting it go.
		ch := make(chan struct{})
		p.released[id] = append(p.released[id], ch)
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			p.mu.Lock()
			if ws := p.released[id]; slices.Contains(ws, ch) {
				p.released[id] = slices.DeleteFunc(ws, func(c chan struct{}) bool { return c == ch })
				if len(p.released[id]) == 0 {
					delete(p.released, id)
				}
			}
			p.mu.Unlock()
			return ctx.Err()
		}
	}
}

// reopenLocked stores the reopened record of a failed job that no worker
// holds, reports it and queues it. p.mu is held: the job cannot be queued
// by anyone else meanwhile, nor start before it is reported.
func (p *Pipeline) reopenLocked(ctx context.Context, r record) error {
	rec := r.reopened(time.Now().UTC())
	if err := p.put(ctx, rec); err != nil {
		return err
	}
	redo := 0
	for _, is := range rec.ImageStates {
		if is.State != ImageDone {
			redo++
		}
	}
	p.log.Info().Str("job", rec.ID).Int("attempt", rec.Attempts).Bool("analysis_kept", rec.Analysis != nil).
		Int("images_kept", len(rec.ImageStates)-redo).Int("images_to_make", redo).Str("previous_error", r.Error).
		Msg("failed job reopened")
	p.notify(rec)
	p.enqueueLocked(rec)
	return nil
}

func (p *Pipeline) put(ctx context.Context, rec record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("pipeline: job %s: encoding the record: %w", rec.ID, err)
	}
	if err := p.cfg.Store.PutJob(ctx, store.JobRecord{ID: rec.ID, Data: data}); err != nil {
		return fmt.Errorf("pipeline: job %s: storing the record: %w", rec.ID, err)
	}
	return nil
}

func (p *Pipeline) notify(rec record) {
	if p.cfg.OnChange != nil {
		p.cfg.OnChange(rec.status())
	}
}

var idPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

// keyID derives a job's id from a Request.Key.
func keyID(key string) string {
	sum := sha256.Sum256([]byte("slideshowd job key\x00" + key))
	return hex.EncodeToString(sum[:12])
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// load returns the stored record of id.
func (p *Pipeline) load(ctx context.Context, id string) (record, error) {
	if !idPattern.MatchString(id) {
		return record{}, fmt.Errorf("%w: job %q", ErrNotFound, excerpt(id))
	}
	jr, err := p.cfg.Store.Job(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return record{}, fmt.Errorf("%w: job %q", ErrNotFound, id)
	}
	if err != nil {
		return record{}, fmt.Errorf("pipeline: %w", err)
	}
	var r record
	if err := json.Unmarshal(jr.Data, &r); err != nil {
		return record{}, fmt.Errorf("pipeline: job %s: unreadable record: %w", id, err)
	}
	return r, nil
}

// Status returns the stored state of job id, with its wait for quota
// (Status.Wait) while it has one, or an error wrapping ErrNotFound.
func (p *Pipeline) Status(ctx context.Context, id string) (Status, error) {
	r, err := p.load(ctx, id)
	if err != nil {
		return Status{}, err
	}
	st := r.status()
	p.addLive(&st)
	return st, nil
}

// addLive fills in what is not stored from the job's calls in the
// scheduler: st.Wait, and which pending images have their call sent
// (running).
func (p *Pipeline) addLive(st *Status) {
	if st.State.Final() {
		return
	}
	p.mu.Lock()
	j := p.active[st.ID]
	p.mu.Unlock()
	if j != nil {
		for i := range j.running() {
			if i < len(st.Images) && st.Images[i].State == ImagePending {
				st.Images[i].State = ImageRunning
			}
		}
	}
	p.addWait(st)
}

// addWait fills in st.Wait from the job's calls in the scheduler.
func (p *Pipeline) addWait(st *Status) {
	p.mu.Lock()
	j := p.active[st.ID]
	started := j != nil && j.cancel != nil
	var parked *scheduler.Wait
	if j != nil && j.parkWait != nil {
		pw := *j.parkWait
		parked = &pw
	}
	p.mu.Unlock()
	switch {
	case j == nil:
	case parked != nil:
		// Parked (or parking): it gave up its slot until the next
		// Pacific day's quota, or the class takes its priority again.
		st.Wait = parked
	case started:
		st.Wait = j.waiting()
	case int(p.inProgress.Load()) >= p.cfg.MaxActive:
		// Queued behind MaxActive jobs in progress, which may themselves
		// wait for quota (until midnight, under daily protection): it
		// starts, highest priority first, when one of them ends.
		st.Wait = &scheduler.Wait{Kind: WaitSlot, Since: st.UpdatedAt,
			Reason: fmt.Sprintf("max_active: all %d slots taken by slideshows in progress; starts when one ends, highest priority first", p.cfg.MaxActive)}
	}
}

// WaitSlot is the Kind of a queued job's Wait while max_active jobs are
// in progress: it waits for one of them to end, not for quota. Its Class
// is "" and its Until zero (unknown).
const WaitSlot = "slot"

// ImagePath returns the file of image n (1-based) of job id. It wraps
// ErrNotFound when the job is unknown, n is out of range or the image is
// not done.
func (p *Pipeline) ImagePath(ctx context.Context, id string, n int) (string, error) {
	r, err := p.load(ctx, id)
	if err != nil {
		return "", err
	}
	if n < 1 || n > len(r.ImageStates) {
		return "", fmt.Errorf("%w: job %s has no image %d (it has %d)", ErrNotFound, id, n, len(r.ImageStates))
	}
	is := r.ImageStates[n-1]
	if is.State != ImageDone {
		return "", fmt.Errorf("%w: image %d of job %s is %s", ErrNotFound, n, id, is.State)
	}
	return filepath.Join(p.jobsDir, id, imageFile(n, is.MIMEType)), nil
}

// Wait blocks until job id is done or failed and returns its status, or
// until ctx ends (ctx.Err()). Jobs progress only while Run runs.
func (p *Pipeline) Wait(ctx context.Context, id string) (Status, error) {
	p.mu.Lock()
	r, err := p.load(ctx, id)
	if err != nil || r.State.Final() {
		p.mu.Unlock()
		return r.status(), err
	}
	ch := make(chan struct{})
	p.waiters[id] = append(p.waiters[id], ch)
	p.mu.Unlock()
	select {
	case <-ch:
		return p.Status(ctx, id)
	case <-ctx.Done():
		p.mu.Lock()
		ws := p.waiters[id]
		if i := slices.Index(ws, ch); i >= 0 {
			p.waiters[id] = slices.Delete(ws, i, i+1)
			if len(p.waiters[id]) == 0 {
				delete(p.waiters, id)
			}
		}
		p.mu.Unlock()
		return Status{}, ctx.Err()
	}
}

// List returns the status of every stored job, oldest first.
func (p *Pipeline) List(ctx context.Context) ([]Status, error) {
	var out []Status
	var bad error
	err := p.cfg.Store.Jobs(ctx, func(jr store.JobRecord) bool {
		var r record
		if err := json.Unmarshal(jr.Data, &r); err != nil {
			bad = fmt.Errorf("pipeline: job %s: unreadable record: %w", jr.ID, err)
			return false
		}
		out = append(out, r.status())
		return true
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Status) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Cancel stops job id and stores it as JobCanceled. A queued job leaves the
// queue; a running one has its calls' contexts cancelled: a request not yet
// sent is never sent and its quota units go back to the lane, one already
// sent counts (the scheduler refunds only what never left). Cancel returns
// once the canceled record is stored, with the job's status; what the job
// finished (its analysis, done images) is kept, and Retry reopens it.
//
// A job that ended first (done, failed or canceled) gives an error
// wrapping ErrFinal (the status is returned with it); an unknown job
// ErrNotFound; after Run has returned ErrClosed.
func (p *Pipeline) Cancel(ctx context.Context, id string) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	p.mu.Lock()
	if p.state == stateStopped {
		p.mu.Unlock()
		return Status{}, ErrClosed
	}
	r, err := p.load(ctx, id)
	if err != nil {
		p.mu.Unlock()
		return Status{}, err
	}
	if r.State.Final() {
		p.mu.Unlock()
		return r.status(), fmt.Errorf("%w: job %s is %s", ErrFinal, id, r.State)
	}
	j, active := p.active[id]
	if active {
		lv := priorityLevel(r.Priority)
		if i := slices.Index(p.queue[lv], j); i >= 0 {
			// Queued: take it out of the queue and store its end here.
			p.queue[lv] = slices.Delete(p.queue[lv], i, i+1)
			delete(p.active, id)
		} else if i := slices.Index(p.parked, j); i >= 0 {
			// Parked: likewise, out of the parked jobs.
			p.parked = slices.Delete(p.parked, i, i+1)
			delete(p.active, id)
		} else {
			// Running (or about to): its steps stop and it stores its
			// cancellation itself.
			j.canceled = true
			if j.cancel != nil {
				j.cancel()
			}
			ch := make(chan struct{})
			p.released[id] = append(p.released[id], ch)
			p.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return Status{}, ctx.Err()
			}
			st, err := p.Status(context.WithoutCancel(ctx), id)
			if err == nil && st.State != JobCanceled {
				return st, fmt.Errorf("%w: job %s is %s", ErrFinal, id, st.State)
			}
			return st, err
		}
	}
	// Queued, or not active at all (waiting to be worked again after an
	// error): store the end here.
	defer p.mu.Unlock()
	rec := r.canceled(time.Now().UTC())
	if err := p.put(ctx, rec); err != nil {
		if active { // still queued (a parked job too: it waits again), at the back
			p.active[id] = j
			if j.parkWait != nil && j.cancel == nil {
				p.parked = append(p.parked, j)
			} else {
				lv := priorityLevel(r.Priority)
				p.queue[lv] = append(p.queue[lv], j)
			}
		}
		return Status{}, err
	}
	p.log.Info().Str("job", id).Msg("job canceled while queued")
	p.notify(rec)
	for _, ch := range p.waiters[id] {
		close(ch)
	}
	delete(p.waiters, id)
	p.endedQueued = append(p.endedQueued, rec)
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return rec.status(), nil
}

// CancelStored stores job id of st as canceled, for a program that works
// on a data directory no Pipeline runs on (slideshowd jobs cancel without a
// daemon; the data directory's lock keeps a Pipeline away meanwhile). Its
// errors are those of Cancel.
func CancelStored(ctx context.Context, st store.Store, id string) (Status, error) {
	p := &Pipeline{cfg: Config{Store: st}}
	r, err := p.load(ctx, id)
	if err != nil {
		return Status{}, err
	}
	if r.State.Final() {
		return r.status(), fmt.Errorf("%w: job %s is %s", ErrFinal, id, r.State)
	}
	rec := r.canceled(time.Now().UTC())
	if err := p.put(ctx, rec); err != nil {
		return Status{}, err
	}
	return rec.status(), nil
}

// StoredStatus is Status over the job records of st (see CancelStored).
func StoredStatus(ctx context.Context, st store.Store, id string) (Status, error) {
	p := &Pipeline{cfg: Config{Store: st}}
	return p.Status(ctx, id)
}

// Filter selects jobs for Jobs. The zero value selects every job.
type Filter struct {
	// States keeps jobs in one of these states; none: every state.
	States []JobState
	// Priority keeps jobs of this priority ("high", "normal", "low"); "": all.
	Priority string
	// Since keeps jobs created at or after it; zero: all.
	Since time.Time
	// Limit is the most jobs in a page; 0 means DefaultPageSize, and it is
	// capped at MaxPageSize.
	Limit int
	// Cursor continues a listing: the Next of the previous page; "" starts
	// with the newest job.
	Cursor string
}

// Page sizes of Jobs.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Page is one page of Jobs: the jobs newest first (by creation, then id),
// without their analyses, and the cursor of the next page ("" when this is
// the last).
type Page struct {
	Jobs []Status `json:"slideshows"`
	Next string   `json:"next_cursor,omitempty"`
}

// cursorPos is a position in the newest-first order: jobs strictly after
// it come next.
type cursorPos struct {
	created time.Time
	id      string
}

func (c cursorPos) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.created.UnixNano(), 10) + "." + c.id))
}

func decodeCursor(s string) (cursorPos, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		ns, id, ok := strings.Cut(string(b), ".")
		n, perr := strconv.ParseInt(ns, 10, 64)
		if ok && perr == nil && idPattern.MatchString(id) {
			return cursorPos{created: time.Unix(0, n).UTC(), id: id}, nil
		}
	}
	return cursorPos{}, &InputError{Field: "cursor", Value: quote(s), Reason: "not a cursor this server gave (next_cursor of a page)"}
}

// Check says whether Jobs takes f: every state one of the six, the
// priority "", "high", "normal" or "low", Limit not negative (above
// MaxPageSize it is capped) and the cursor "" or the Next of a page. Else
// it returns an *InputError naming the field and the value, as Jobs would;
// a client (slideshowd jobs) checks its arguments with it before asking.
func (f Filter) Check() error {
	for _, st := range f.States {
		switch st {
		case JobQueued, JobAnalyzing, JobGenerating, JobDone, JobFailed, JobCanceled:
		default:
			return &InputError{Field: "state", Value: quote(string(st)),
				Reason: "want queued, analyzing, generating, done, failed or canceled"}
		}
	}
	if f.Priority != "" {
		if _, ok := scheduler.ParsePriority(f.Priority); !ok {
			return &InputError{Field: "priority", Value: quote(f.Priority), Reason: `want "high", "normal" or "low"`}
		}
	}
	if f.Limit < 0 {
		return &InputError{Field: "limit", Value: strconv.Itoa(f.Limit), Reason: fmt.Sprintf("must be 1..%d", MaxPageSize)}
	}
	if f.Cursor != "" {
		if _, err := decodeCursor(f.Cursor); err != nil {
			return err
		}
	}
	return nil
}

// SinceReason is why a since filter is refused.
const SinceReason = "want an RFC 3339 time (2026-03-01T12:00:00Z) or a duration back from now (24h)"

// ParseSince reads the since filter of a listing (Filter.Since) as the
// HTTP API's ?since= and slideshowd jobs -since take it: an RFC 3339 time,
// or a Go duration back from now ("24h"; not negative). Anything else is an
// *InputError with Field "since", the value and SinceReason.
func ParseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, &InputError{Field: "since", Value: quote(v), Reason: SinceReason}
}

// Jobs returns one page of the stored jobs that pass f, newest first.
// It reads every record (the store keeps them by id, not by creation), so a
// page costs time in proportion to all jobs stored, but memory in
// proportion to the page: only the page's records are decoded whole. A bad f (unknown state or priority, a
// cursor not from Jobs) gives an *InputError naming the field.
func (p *Pipeline) Jobs(ctx context.Context, f Filter) (Page, error) {
	pg, err := StoredJobs(ctx, p.cfg.Store, f)
	for i := range pg.Jobs {
		p.addLive(&pg.Jobs[i])
	}
	return pg, err
}

// StoredJobs is Jobs over the job records of st, for a program that reads
// a data directory no Pipeline runs on (slideshowd jobs without a daemon).
func StoredJobs(ctx context.Context, st store.Store, f Filter) (Page, error) {
	if err := f.Check(); err != nil {
		return Page{}, err
	}
	limit := cmp.Or(f.Limit, DefaultPageSize)
	limit = min(limit, MaxPageSize)
	var after *cursorPos
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return Page{}, err
		}
		after = &c
	}
	newer := func(a, b cursorPos) int { // newest first
		return cmp.Or(b.created.Compare(a.created), cmp.Compare(b.id, a.id))
	}
	// Each record is first decoded for the fields that filter and order it
	// only; the newest limit+1 that pass are kept, newest first, with their
	// bytes, and only those are decoded whole: a page allocates in
	// proportion to its size, not to every job stored.
	type candidate struct {
		pos  cursorPos
		data []byte
	}
	var kept []candidate
	var bad error
	err := st.Jobs(ctx, func(jr store.JobRecord) bool {
		var r listFields
		if err := json.Unmarshal(jr.Data, &r); err != nil {
			bad = fmt.Errorf("pipeline: job %s: unreadable record: %w", jr.ID, err)
			return false
		}
		pos := cursorPos{r.CreatedAt, r.ID}
		switch {
		case len(f.States) > 0 && !slices.Contains(f.States, r.State),
			f.Priority != "" && r.Priority != f.Priority,
			!f.Since.IsZero() && r.CreatedAt.Before(f.Since),
			after != nil && newer(*after, pos) >= 0,
			len(kept) > limit && newer(kept[limit].pos, pos) <= 0:
			return true
		}
		i, _ := slices.BinarySearchFunc(kept, pos, func(c candidate, p cursorPos) int { return newer(c.pos, p) })
		kept = slices.Insert(kept, i, candidate{pos, jr.Data})
		if len(kept) > limit+1 {
			kept = kept[:limit+1]
		}
		return true
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return Page{}, err
	}
	out := make([]Status, 0, len(kept))
	for _, c := range kept {
		var r record
		if err := json.Unmarshal(c.data, &r); err != nil {
			return Page{}, fmt.Errorf("pipeline: job %s: unreadable record: %w", c.pos.id, err)
		}
		st := r.status()
		st.Analysis = nil
		out = append(out, st)
	}
	pg := Page{Jobs: out}
	if len(out) > limit {
		pg.Jobs = out[:limit]
		last := pg.Jobs[limit-1]
		pg.Next = cursorPos{last.CreatedAt, last.ID}.encode()
	}
	if pg.Jobs == nil {
		pg.Jobs = []Status{}
	}
	return pg, nil
}
