package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/scheduler"
)

// AnalysisFile is the name of a job's analysis in its directory.
const AnalysisFile = "analysis.json"

// job is an active job: its record (the stored copy's twin) and directory.
type job struct {
	p   *Pipeline
	dir string

	mu    sync.Mutex
	rec   record
	steps []*scheduler.Handle // its calls queued or running in the scheduler
	// calls holds the scheduler call of each image being made, by index,
	// from its Submit until its end is stored: the image reads running
	// (Status) only while that call is not queued.
	calls map[int]*scheduler.Handle

	// Guarded by p.mu: cancel ends the running job's context (nil until
	// work starts, and while parked); canceled is set by Pipeline.Cancel;
	// parkWait is the wait for the next Pacific day the job gave up its
	// slot for (see park.go), nil when not parking or parked.
	cancel   context.CancelFunc
	canceled bool
	parkWait *scheduler.Wait
	// parking is set with parkWait: the job's calls are withdrawn from the
	// scheduler as they come (track) and it starts no new one.
	parking atomic.Bool
}

// work runs j as far as it goes and releases it, or parks it (see
// park.go); it reports whether the job reached a final state, and whether
// it parked.
func (p *Pipeline) work(workCtx, runCtx context.Context, j *job) (final, parked bool) {
	ctx, cancel := context.WithCancel(workCtx)
	defer cancel()
	p.mu.Lock()
	j.cancel = cancel
	canceled := j.canceled
	p.mu.Unlock()
	if canceled {
		cancel() // canceled between leaving the queue and now
	}
	final = j.run(ctx, runCtx)
	if !final && runCtx.Err() == nil && p.park(j) {
		return false, true
	}
	p.release(j, final)
	return final, false
}

// track follows a call of the job in the scheduler (scheduler.OnSubmit).
func (j *job) track(h *scheduler.Handle) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.trackLocked(h)
}

// trackImage is track for the call of image index i.
func (j *job) trackImage(i int, h *scheduler.Handle) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.calls == nil {
		j.calls = make(map[int]*scheduler.Handle)
	}
	j.calls[i] = h
	j.trackLocked(h)
}

// running reports which images have their call sent (or ended, its result
// not yet stored): those of calls running, done or failed in the
// scheduler; not one queued, nor one withdrawn or canceled (its image goes
// back to pending: parked, canceled or stopping).
func (j *job) running() map[int]bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out map[int]bool
	for i, h := range j.calls {
		if st := h.State(); st == scheduler.StateRunning || st == scheduler.StateDone || st == scheduler.StateFailed {
			if out == nil {
				out = make(map[int]bool)
			}
			out[i] = true
		}
	}
	return out
}

func (j *job) trackLocked(h *scheduler.Handle) {
	j.steps = slices.DeleteFunc(j.steps, func(h *scheduler.Handle) bool { return h.State().Final() })
	j.steps = append(j.steps, h)
	if j.parking.Load() {
		// Submitted as the job parked: withdrawn too (not from here:
		// this runs inside the scheduler's Submit).
		go h.Withdraw(errParked)
	}
}

// waiting returns why the job waits for quota: nil when a step of it runs
// or none is queued; else the queued step's wait that ends first.
func (j *job) waiting() *scheduler.Wait {
	j.mu.Lock()
	defer j.mu.Unlock()
	var best *scheduler.Wait
	for _, h := range j.steps {
		switch h.State() {
		case scheduler.StateRunning:
			return nil
		case scheduler.StateQueued:
			if w, ok := h.Waiting(); ok && (best == nil || w.Until.Before(best.Until)) {
				best = &w
			}
		}
	}
	return best
}

// isCanceled reports whether Pipeline.Cancel asked for j to stop.
func (j *job) isCanceled() bool {
	j.p.mu.Lock()
	defer j.p.mu.Unlock()
	return j.canceled
}

// endCanceled stores that the job was canceled; running images go back to
// pending. It reports whether the job reached its final state.
func (j *job) endCanceled(log zerolog.Logger) bool {
	err := j.update(func(r *record) { *r = r.canceled(r.UpdatedAt) })
	if err != nil {
		log.Error().Err(err).Msg("cannot store the job's cancellation")
		return false
	}
	log.Info().Msg("job canceled")
	return true
}

// errInterrupted ends a run that must resume at the next start.
var errInterrupted = errors.New("interrupted")

// update changes the record, stores it and reports the change.
func (j *job) update(fn func(r *record)) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.rec
	r.ImageStates = append([]ImageStatus(nil), j.rec.ImageStates...)
	fn(&r)
	r.UpdatedAt = time.Now().UTC()
	if err := j.p.put(context.Background(), r); err != nil {
		return err
	}
	j.rec = r
	j.p.notify(r)
	return nil
}

func (j *job) snapshot() record {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.rec
	r.ImageStates = append([]ImageStatus(nil), j.rec.ImageStates...)
	return r
}

// interrupted reports whether err ends a step because slideshowd is
// stopping rather than because the step failed.
func interrupted(err error, runCtx context.Context) bool {
	return errors.Is(err, scheduler.ErrClosed) || errors.Is(err, errInterrupted) || errors.Is(err, errParked) || runCtx.Err() != nil
}

// run works the job; it reports whether the job reached a final state.
func (j *job) run(ctx, runCtx context.Context) bool {
	ctx = scheduler.OnSubmit(ctx, j.track)
	rec := j.snapshot()
	log := j.p.log.With().Str("job", rec.ID).Logger()
	pr, _ := scheduler.ParsePriority(rec.Priority)
	j.removeTemporaryFiles(log)

	a, err := j.analysis(ctx, log, pr)
	if err != nil {
		if j.isCanceled() {
			return j.endCanceled(log)
		}
		if errors.Is(err, errParked) {
			return false
		}
		if interrupted(err, runCtx) {
			log.Info().Err(err).Msg("analysis interrupted; resumes at the next start")
			return false
		}
		reason := "analysis: " + err.Error()
		log.Warn().Str("reason", reason).Msg("job failed")
		if err := j.update(func(r *record) { r.State, r.Error = JobFailed, reason }); err != nil {
			log.Error().Err(err).Msg("cannot store the job's failure")
			return false
		}
		return true
	}

	var (
		wg          sync.WaitGroup
		mu          sync.Mutex
		stopped     bool
		opts        = gemini.ImageOptions{AspectRatio: j.p.cfg.AspectRatio, Size: j.p.cfg.ImageSize, Priority: pr}
		interruptMu = func() { mu.Lock(); stopped = true; mu.Unlock() }
	)
	for i, is := range j.snapshot().ImageStates {
		if is.State == ImageDone || is.State == ImageFailed {
			continue
		}
		n := i + 1
		if mime, ok := j.existingImage(n); ok {
			// Written before a stop that came ahead of its record: done.
			if err := j.update(func(r *record) {
				r.ImageStates[i] = ImageStatus{N: n, State: ImageDone, Prompt: a.ImagePrompts[i], MIMEType: mime}
			}); err != nil {
				log.Error().Err(err).Msg("cannot store an image's state")
				interruptMu()
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := j.image(ctx, runCtx, log, n, gemini.Prompt(a.ImagePrompts[i]), opts); err != nil {
				interruptMu()
			}
		}()
	}
	wg.Wait()
	if j.isCanceled() {
		if rec := j.snapshot(); slices.ContainsFunc(rec.ImageStates, func(is ImageStatus) bool { return is.State != ImageDone && is.State != ImageFailed }) {
			return j.endCanceled(log)
		}
		// Every image ended before the cancellation took: the job ends as usual.
	}
	if stopped {
		return false
	}

	rec = j.snapshot()
	failed, first := 0, ""
	for _, is := range rec.ImageStates {
		if is.State == ImageFailed {
			if failed == 0 {
				first = fmt.Sprintf("image %d: %s", is.N, is.Error)
			}
			failed++
		}
	}
	state, reason := JobDone, ""
	if failed > 0 {
		state = JobFailed
		reason = fmt.Sprintf("%d of %d images failed; %s", failed, len(rec.ImageStates), first)
	}
	if err := j.update(func(r *record) { r.State, r.Error = state, reason }); err != nil {
		log.Error().Err(err).Msg("cannot store the job's end")
		return false
	}
	ev := log.Info()
	if failed > 0 {
		ev = log.Warn().Str("reason", reason)
	}
	ev.Dur("took", time.Since(rec.CreatedAt)).Msg("job " + string(state))
	return true
}

// analysis returns the job's analysis: stored, or written to its file
// before a stop, or asked for now.
func (j *job) analysis(ctx context.Context, log zerolog.Logger, pr scheduler.Priority) (gemini.Analysis, error) {
	rec := j.snapshot()
	if rec.Analysis != nil {
		if rec.State != JobGenerating {
			if err := j.update(func(r *record) { r.State = JobGenerating }); err != nil {
				return gemini.Analysis{}, fmt.Errorf("%w: %v", errInterrupted, err)
			}
		}
		return *rec.Analysis, nil
	}
	a, ok := j.readAnalysis(rec.Images)
	if !ok {
		if err := j.update(func(r *record) { r.State = JobAnalyzing }); err != nil {
			return gemini.Analysis{}, fmt.Errorf("%w: %v", errInterrupted, err)
		}
		slides, err := j.slides(rec)
		if err != nil {
			return gemini.Analysis{}, err
		}
		start := time.Now()
		a, err = j.p.cfg.Gemini.AnalyzeSlideshow(ctx, gemini.Slideshow{
			Source: rec.Source, Slides: slides, Images: rec.Images, Priority: pr,
		})
		if err != nil {
			return gemini.Analysis{}, err
		}
		data, err := json.MarshalIndent(a, "", "  ")
		if err != nil {
			return gemini.Analysis{}, fmt.Errorf("encoding the analysis: %w", err)
		}
		if err := writeFileAtomic(j.dir, AnalysisFile, append(data, '\n')); err != nil {
			return gemini.Analysis{}, fmt.Errorf("%w: %v", errInterrupted, err)
		}
		log.Info().Dur("took", time.Since(start)).Msg("analysis done")
	}
	err := j.update(func(r *record) {
		r.Analysis = &a
		r.State = JobGenerating
		for i := range r.ImageStates {
			r.ImageStates[i].Prompt = a.ImagePrompts[i]
		}
	})
	if err != nil {
		return gemini.Analysis{}, fmt.Errorf("%w: %v", errInterrupted, err)
	}
	return a, nil
}

// removeTemporaryFiles removes the temporary files of writes cut short by
// a crash (never renamed into place, so never taken as output).
func (j *job) removeTemporaryFiles(log zerolog.Logger) {
	tmps, _ := filepath.Glob(filepath.Join(j.dir, ".*.tmp-*"))
	for _, tmp := range tmps {
		if err := os.Remove(tmp); err != nil {
			log.Warn().Err(err).Msg("cannot remove a temporary file")
		}
	}
}

// readAnalysis reads an analysis written before a stop.
func (j *job) readAnalysis(images int) (gemini.Analysis, bool) {
	data, err := os.ReadFile(filepath.Join(j.dir, AnalysisFile))
	if err != nil {
		return gemini.Analysis{}, false
	}
	var a gemini.Analysis
	if json.Unmarshal(data, &a) != nil || len(a.ImagePrompts) != images {
		return gemini.Analysis{}, false
	}
	return a, true
}

// slides reads the job's slides and their images.
func (j *job) slides(rec record) ([]gemini.Slide, error) {
	out := make([]gemini.Slide, len(rec.Slides))
	for i, s := range rec.Slides {
		out[i] = gemini.Slide{Text: s.Text, ImageMIME: s.MIME}
		if s.File != "" {
			data, err := os.ReadFile(filepath.Join(j.dir, s.File))
			if err != nil {
				return nil, fmt.Errorf("slides[%d]: reading the stored image: %w", i, err)
			}
			out[i].Image = data
		}
	}
	return out, nil
}

// existingImage reports whether image n's file was written (and its MIME type).
func (j *job) existingImage(n int) (string, bool) {
	for _, mime := range imageTypes {
		if _, err := os.Stat(filepath.Join(j.dir, imageFile(n, mime))); err == nil {
			return mime, true
		}
	}
	return "", false
}

// image generates image n; a non-nil error means it was interrupted (a
// failure is stored in the image's state).
func (j *job) image(ctx, runCtx context.Context, log zerolog.Logger, n int, prompt gemini.Prompt, opts gemini.ImageOptions) error {
	i := n - 1
	if j.parking.Load() {
		return errParked // stays pending
	}
	// The image stays pending in the record: it reads running (Status)
	// while its call is sent, not while the call waits in the scheduler's
	// queue; nothing is stored until it ends.
	defer func() {
		j.mu.Lock()
		delete(j.calls, i)
		j.mu.Unlock()
	}()
	start := time.Now()
	img, err := j.p.cfg.Gemini.GenerateImage(scheduler.OnSubmit(ctx, func(h *scheduler.Handle) { j.trackImage(i, h) }), prompt, opts)
	if err == nil {
		err = writeFileAtomic(j.dir, imageFile(n, img.MIMEType), img.Data)
		if err != nil {
			err = fmt.Errorf("%w: %v", errInterrupted, err)
			log.Error().Err(err).Int("image", n).Msg("cannot write an image")
		}
	}
	if err != nil && (interrupted(err, runCtx) || j.isCanceled()) {
		if uerr := j.update(func(r *record) { r.ImageStates[i].State = ImagePending }); uerr != nil {
			log.Error().Err(uerr).Msg("cannot store an image's state")
		}
		return err
	}
	if err != nil {
		log.Warn().Int("image", n).Err(err).Msg("image failed")
		if uerr := j.update(func(r *record) {
			r.ImageStates[i].State, r.ImageStates[i].Error = ImageFailed, err.Error()
		}); uerr != nil {
			log.Error().Err(uerr).Msg("cannot store an image's state")
			return uerr
		}
		return nil
	}
	if err := j.update(func(r *record) {
		r.ImageStates[i].State, r.ImageStates[i].MIMEType, r.ImageStates[i].Error = ImageDone, img.MIMEType, ""
	}); err != nil {
		log.Error().Err(err).Msg("cannot store an image's state")
		return err
	}
	log.Debug().Int("image", n).Dur("took", time.Since(start)).Msg("image done")
	return nil
}
