package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// The harness of the simulated day: the real scheduler, the gemini client
// (genai SDK) and the emulator through its in-process transport, in one
// testing/synctest bubble. A recorder keeps every scheduler event and every
// HTTP request the SDK sent, in one sequence, for the checks and the report.

const (
	textModel  = gemini.DefaultTextModel
	imageModel = gemini.DefaultImageModel
	textClass  = gemini.DefaultTextClass
	imageClass = gemini.DefaultImageClass
)

// scale is the size of a simulated day: the per-project limits both the
// emulator and the scheduler are configured with.
type scale struct {
	name        string
	text, image bucket.Limits
	callers     int // goroutines calling the client at once, at most
}

// published are the old plan's published limits (GEMINI.md).
var published = scale{name: "published limits", text: bucket.Limits{RPM: 1000, RPD: 10_000}, image: bucket.Limits{RPM: 20, RPD: 250}, callers: 2000}

// small keeps the published shape (minutes of full-rate work a day allows:
// 10 for text, 12.5 for image) at a hundredth of the text and a tenth of
// the image limits, so the whole bench package runs in `make test`.
var small = scale{name: "small (text /100, image /10)", text: bucket.Limits{RPM: 10, RPD: 100}, image: bucket.Limits{RPM: 2, RPD: 25}, callers: 1000}

func dayScale() scale {
	if *fullDay {
		return published
	}
	return small
}

// simKey is a key of the stack. An Invalid key is unknown to the emulator,
// which answers 400 API_KEY_INVALID.
type simKey struct {
	ID, Project string
	Invalid     bool
}

func (k simKey) secret() string { return "AIza-sim-secret-" + k.ID }

// keysIn returns n keys spread over projects projects (key i in project i mod projects).
func keysIn(n, projects int) []simKey {
	ks := make([]simKey, n)
	for i := range ks {
		ks[i] = simKey{ID: fmt.Sprintf("k%d", i+1), Project: fmt.Sprintf("p%d", i%projects+1)}
	}
	return ks
}

type simConfig struct {
	Keys        []simKey
	Scale       scale
	Faults      emulator.Faults
	Protect     *scheduler.Priority // nil: daily protection off (PriorityLow)
	Concurrency map[string]int      // per class; default the scheduler's (sized from the limits and latency)
	Burst       map[string]int      // per class; default the scheduler's (RPM: the whole minute)
	MaxAttempts int
}

// sim is one running stack.
type sim struct {
	t      *testing.T
	cfg    simConfig
	emu    *emulator.Emulator
	sched  *scheduler.Scheduler
	client *gemini.Client
	rec    *recorder
	start  time.Time // when Run started: a Pacific midnight unless said otherwise
	stop   func()
}

// startAtMidnight advances the bubble's clock to the next Pacific midnight
// (the bubble starts at 2000-01-01 00:00 UTC, 16:00 the day before in
// Pacific time) and starts the stack there.
func startAtMidnight(t *testing.T, cfg simConfig) *sim {
	t.Helper()
	time.Sleep(time.Until(bucket.NextMidnight(time.Now(), bucket.Pacific)))
	return startSim(t, cfg)
}

// startSim builds and runs the stack; it stops when the test ends. Call it
// inside a synctest bubble.
func startSim(t *testing.T, cfg simConfig) *sim {
	t.Helper()
	s := &sim{t: t, cfg: cfg, rec: newRecorder(cfg.Keys), start: time.Now()}
	var ekeys []emulator.Key
	var ckeys []gemini.Key
	var skeys []bucket.Key
	for _, k := range cfg.Keys {
		if !k.Invalid {
			ekeys = append(ekeys, emulator.Key{Name: k.ID, Secret: k.secret(), Project: k.Project})
		}
		ckeys = append(ckeys, gemini.Key{ID: k.ID, Secret: k.secret()})
		skeys = append(skeys, bucket.Key{ID: k.ID, Project: k.Project})
	}
	sc := cfg.Scale
	emu, err := emulator.New(emulator.Config{
		Keys: ekeys,
		Models: map[string]emulator.Limits{
			textModel:  {RPM: sc.text.RPM, RPD: sc.text.RPD, TPM: sc.text.TPM},
			imageModel: {RPM: sc.image.RPM, RPD: sc.image.RPD, TPM: sc.image.TPM},
		},
		Faults: cfg.Faults,
		Seed:   1,
	})
	if err != nil {
		t.Fatal(err)
	}
	protect := scheduler.PriorityLow
	if cfg.Protect != nil {
		protect = *cfg.Protect
	}
	conc := func(class string) int { return cfg.Concurrency[class] }
	sched, err := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{
			{Name: textClass, Limits: sc.text, Concurrency: conc(textClass), Burst: cfg.Burst[textClass]},
			{Name: imageClass, Limits: sc.image, Concurrency: conc(imageClass), Burst: cfg.Burst[imageClass]},
		},
		Keys:        skeys,
		Classifier:  gemini.Classify,
		Observer:    s.rec,
		Protect:     &protect,
		MaxAttempts: cfg.MaxAttempts,
		Seed:        1,
	})
	if err != nil {
		t.Fatal(err)
	}
	client, err := gemini.New(t.Context(), gemini.Config{
		Keys:       ckeys,
		BaseURL:    "http://emulator",
		HTTPClient: &http.Client{Transport: s.rec.transport(emu.Transport())},
		Scheduler:  sched,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.emu, s.sched, s.client = emu, sched, client
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(s.stop)
	return s
}

// slideshow is the smallest analysis request: one slide, one image prompt.
func slideshow(i int, p scheduler.Priority) gemini.Slideshow {
	return gemini.Slideshow{
		Source:   fmt.Sprintf("batch item %d", i),
		Slides:   []gemini.Slide{{Text: fmt.Sprintf("Item %d: the tide comes in twice a day, pulled by the moon.", i)}},
		Images:   1,
		Priority: p,
	}
}

// job is one call made through the client.
type job struct {
	class    string
	priority scheduler.Priority
	called   time.Time // when the caller called the client
	ended    time.Time
	err      error
}

func (s *sim) call(ctx context.Context, class string, i int, p scheduler.Priority) *job {
	j := &job{class: class, priority: p, called: time.Now()}
	switch class {
	case textClass:
		_, j.err = s.client.AnalyzeSlideshow(ctx, slideshow(i, p))
	case imageClass:
		_, j.err = s.client.GenerateImage(ctx, gemini.Prompt(fmt.Sprintf("a lighthouse at dusk, number %d", i)), gemini.ImageOptions{Priority: p})
	default:
		panic("unknown class " + class)
	}
	j.ended = time.Now()
	return j
}

// batch makes n calls of class through at most callers goroutines at once
// (each takes the next call when its last one ends) and returns them, in
// order, when all have ended. It is how a large batch is queued without a
// goroutine per call: the scheduler's queue holds up to callers jobs.
func (s *sim) batch(ctx context.Context, class string, n, callers int, p scheduler.Priority) []*job {
	jobs := make([]*job, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, callers) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				jobs[i] = s.call(ctx, class, i, p)
			}
		})
	}
	wg.Wait()
	return jobs
}

// sampler records the scheduler's queue depth every step until stopped.
type sample struct {
	at                            time.Time
	queued                        map[string]int // by class: high+normal+low+delayed
	high, normal, low, run, delay map[string]int
}

func (s *sim) sampleEvery(step time.Duration) (stop func() []sample) {
	var out []sample
	quit := make(chan struct{})
	done := make(chan struct{})
	take := func() {
		sm := s.sched.Summary()
		x := sample{at: sm.Time, queued: map[string]int{}, high: map[string]int{}, normal: map[string]int{},
			low: map[string]int{}, run: map[string]int{}, delay: map[string]int{}}
		for _, c := range sm.Classes {
			x.queued[c.Name] = c.QueuedHigh + c.QueuedNormal + c.QueuedLow + c.Delayed
			x.high[c.Name], x.normal[c.Name], x.low[c.Name] = c.QueuedHigh, c.QueuedNormal, c.QueuedLow
			x.run[c.Name], x.delay[c.Name] = c.Running, c.Delayed
		}
		out = append(out, x)
	}
	go func() {
		defer close(done)
		tk := time.NewTicker(step)
		defer tk.Stop()
		take()
		for {
			select {
			case <-quit:
				return
			case <-tk.C:
				take()
			}
		}
	}()
	return func() []sample {
		close(quit)
		<-done
		return out
	}
}

// recorder is the scheduler's Observer and the log of the SDK's requests.
// It is safe for concurrent use.
type recorder struct {
	project map[string]string // key id -> project
	byKey   map[string]string // secret -> key id

	mu       sync.Mutex
	seq      uint64
	events   []recEvent
	requests []request
}

type recEvent struct {
	seq uint64
	scheduler.Event
}

// request is one HTTP request the SDK sent: when, with which key, to which
// model, and the status it got (0: no answer, the context ended).
type request struct {
	seq, endSeq  uint64
	at, end      time.Time
	key, project string
	model, class string
	status       int
}

func newRecorder(keys []simKey) *recorder {
	r := &recorder{project: map[string]string{}, byKey: map[string]string{}}
	for _, k := range keys {
		r.project[k.ID] = k.Project
		r.byKey[k.secret()] = k.ID
	}
	return r
}

func (r *recorder) Observe(e scheduler.Event) {
	r.mu.Lock()
	r.seq++
	r.events = append(r.events, recEvent{r.seq, e})
	r.mu.Unlock()
}

func (r *recorder) transport(base http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		key := r.byKey[req.Header.Get("x-goog-api-key")]
		model := modelOf(req.URL.Path)
		class := textClass
		if model == imageModel {
			class = imageClass
		}
		rq := request{at: time.Now(), key: key, project: r.project[key], model: model, class: class}
		r.mu.Lock()
		r.seq++
		rq.seq = r.seq
		r.mu.Unlock()
		resp, err := base.RoundTrip(req)
		rq.end = time.Now()
		if err == nil {
			rq.status = resp.StatusCode
		}
		r.mu.Lock()
		r.seq++
		rq.endSeq = r.seq
		r.requests = append(r.requests, rq)
		r.mu.Unlock()
		return resp, err
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// modelOf returns the model of a path /v1beta/models/{model}:{action}.
func modelOf(path string) string {
	const p = "/v1beta/models/"
	if len(path) <= len(p) || path[:len(p)] != p {
		return ""
	}
	m := path[len(p):]
	for i := range len(m) {
		if m[i] == ':' {
			return m[:i]
		}
	}
	return m
}

// snapshot returns copies of the events and requests, each in sequence order.
func (r *recorder) snapshot() ([]recEvent, []request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reqs := slices.Clone(r.requests)
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].seq < reqs[j].seq })
	return slices.Clone(r.events), reqs
}

// answeredSince returns the requests answered at or after t. Requests are
// logged as their answers come, so the log is in answer-time order.
func (r *recorder) answeredSince(t time.Time) []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := len(r.requests)
	for i > 0 && !r.requests[i-1].end.Before(t) {
		i--
	}
	return slices.Clone(r.requests[i:])
}

func emulatorLane(project, model string) emulator.LaneKey {
	return emulator.LaneKey{Project: project, Model: model}
}

func eventsOf(evs []recEvent, kind scheduler.EventKind, class string) []recEvent {
	var out []recEvent
	for _, e := range evs {
		if e.Kind == kind && (class == "" || e.Class == class) {
			out = append(out, e)
		}
	}
	return out
}
