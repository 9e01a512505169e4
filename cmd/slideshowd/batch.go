package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/internal/redact"
	"github.com/slideshowd/slideshowd/scheduler"
)

func cmdBatch(ctx context.Context, e env, args []string) int {
	fs := newFlagSet("batch", e)
	cfgPath := fs.String("config", "", "config file (default: slideshowd.yaml when present)")
	out := fs.String("out", "", "output directory (required)")
	progress := fs.String("progress", "auto", "progress display: auto (a bar on a terminal), bar, lines or none")
	verbose := fs.Bool("v", false, "log at the configured level (default: warnings and errors only while the batch runs)")
	dryRun := fs.Bool("dry-run", false, "check the batch file and print the planned calls and the quota they need; send nothing")
	server := fs.String("server", "", "hand the batch to the running daemon at this URL (e.g. http://127.0.0.1:8080; token from SLIDESHOWD_TOKEN) instead of running it here")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: slideshowd batch FILE.json -out DIR [-config FILE | -server URL] [-progress auto|bar|lines|none] [-v] [-dry-run]")
		fmt.Fprintln(e.stderr, "FILE is a JSON array of {\"source\", \"slides\": [{\"text\", \"image\": path relative to FILE}], \"images\": 1..20, \"priority\": high|normal|low}.")
		fmt.Fprintln(e.stderr, "Exit status: 0 all done, 1 some failed, 2 bad input. Running it again with the same data directory resumes")
		fmt.Fprintln(e.stderr, "and retries what failed, keeping every finished analysis and image.")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	var missing string
	switch {
	case len(pos) == 0:
		missing = "missing FILE.json, the batch file"
	case len(pos) > 1:
		missing = fmt.Sprintf("unexpected argument %q: one batch file at a time", pos[1])
	case *out == "" && !*dryRun:
		missing = "missing -out DIR, the output directory (required unless -dry-run)"
	}
	if missing != "" {
		fmt.Fprintln(e.stderr, "slideshowd batch:", missing)
		fs.Usage()
		return exitBadArgs
	}
	mode, ok := progressMode(*progress, e.stdout)
	if !ok {
		fmt.Fprintf(e.stderr, "slideshowd: -progress: %q: want auto, bar, lines or none\n", *progress)
		return exitBadArgs
	}
	if *out != "" && !outDirOK(e, "batch", *out) {
		return exitBadArgs
	}
	file := pos[0]
	if *server != "" {
		if *dryRun {
			return cmdBatchServerPlan(ctx, e, file, *server, *cfgPath, *out)
		}
		return cmdBatchServer(ctx, e, file, *server, *cfgPath, *out, mode)
	}
	lm := forCalls
	if *dryRun {
		lm = forClient // a plan sends nothing: no key is needed
	}
	cfg, warnings, ok := loadConfig(e, *cfgPath, lm)
	if !ok {
		return exitBadArgs
	}
	entries, err := readBatch(ctx, file)
	if err != nil {
		return batchCheckFailed(e, err, func(err error) string { return redactError(cfg, err) })
	}
	if *dryRun {
		printPlan(e.stdout, cfg, file, entries, *out)
		return exitOK
	}
	log := newLogger(e, cfg.Log, quietLevel(*verbose))
	for _, w := range warnings {
		log.Warn().Msg(w)
	}
	return runBatch(ctx, e, cfg, log, entries, *out, mode, daemonOptions{})
}

// outDirOK checks command's -out dir before anything runs: an existing
// directory where a file can be created, or a path that can be created as
// one; else it prints why, naming the flag and the path ("slideshowd batch:
// -out afile: not a directory"), and returns false (exit 2). An -out found
// unwritable only when the first slideshow ended would have spent its quota.
func outDirOK(e env, command, dir string) bool {
	if _, problem := dirProblem(dir); problem != "" {
		fmt.Fprintln(e.stderr, redact.New().String(fmt.Sprintf("slideshowd %s: -out %s: %s", command, dir, problem))) // nothing shaped like a key
		return false
	}
	return true
}

// quietLevel keeps info lines off the progress display unless -v.
func quietLevel(verbose bool) zerolog.Level {
	if verbose {
		return zerolog.TraceLevel
	}
	return zerolog.WarnLevel
}

// batchResult is the end of one entry.
type batchResult struct {
	index  int
	status pipeline.Status
	dir    string // output directory
}

// runBatch runs entries to the end on the daemon wired from cfg and writes
// their outputs under out; it returns the exit code.
func runBatch(ctx context.Context, e env, cfg config.Config, log zerolog.Logger, entries []batchEntry, out string, mode string, o daemonOptions) int {
	start := time.Now()
	tr := newTracker(e.stdout, mode, entries)
	o.onChange = tr.update
	if o.observer == nil {
		o.observer = tr
	} else {
		o.observer = observers{o.observer, tr}
	}
	d, err := openDaemon(ctx, cfg, log, o)
	if err != nil {
		return openError(e, cfg, err)
	}
	defer d.close()
	d.writeHolder("batch")

	// Every entry is submitted, and the failures of earlier runs reopened,
	// before the core runs: a job resumed from an earlier run and failing in
	// this one must not look like an earlier failure and be retried at once.
	//
	// Each job is held until the batch ends, so the retention cannot delete
	// it before its outputs are written: a job an earlier run finished may
	// be past its retention already, and one this run finishes early may
	// pass it while the batch waits for the entries before it.
	ids := make([]string, len(entries))
	for i, en := range entries {
		id, err := d.pipe.Submit(ctx, en.req)
		if err == nil {
			var release func()
			release, err = d.pipe.Hold(ctx, id)
			if err == nil {
				defer release()
				err = retryFailed(ctx, e, d.pipe, i, id)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(e.stderr, "slideshowd: [%d]: %v\n", i, err)
			return exitFailed
		}
		ids[i] = id
		tr.add(i, id)
		if st, err := d.pipe.Status(ctx, id); err == nil {
			tr.update(st)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	wait := d.run(runCtx)
	defer func() {
		stop()
		wait()
	}()
	tr.start()

	// Every entry is followed at once; each one's folder is written as
	// soon as it ends, so a killed or waiting batch shows what is finished.
	results := make([]batchResult, len(entries))
	ended := make(chan batchResult)
	waitCtx, stopWaiting := context.WithCancel(ctx)
	defer stopWaiting()
	following := 0
	for i, id := range ids {
		if id == "" {
			break
		}
		following++
		go func() {
			st, err := d.pipe.Wait(waitCtx, id)
			if err != nil {
				st = pipeline.Status{}
			}
			select {
			case ended <- batchResult{index: i, status: st}:
			case <-waitCtx.Done():
			}
		}()
	}
	interrupted := following < len(entries)
	for range following {
		var r batchResult
		select {
		case r = <-ended:
		case <-ctx.Done():
		}
		if r.status.ID == "" { // interrupted, or a wait failed
			interrupted = true
			break
		}
		r.dir = filepath.Join(out, outDirName(r.index, len(entries), entries[r.index].slug))
		// A finished slideshow's folder is written whole even when a signal
		// arrives meanwhile: its reads are local and short, and an
		// interrupt is not a failure of the batch (it exited 1 with
		// "context canceled" before).
		readCtx := context.WithoutCancel(ctx)
		err := writeSlideshow(r.dir, r.index, r.status, func(n int) (string, []byte, error) {
			src, err := d.pipe.ImagePath(readCtx, r.status.ID, n)
			if err != nil {
				return "", nil, err
			}
			data, err := os.ReadFile(src)
			return filepath.Base(src), data, err
		})
		if err != nil {
			tr.finish()
			fmt.Fprintf(e.stderr, "slideshowd: writing %s: %v\n", r.dir, err)
			return exitFailed
		}
		tr.wrote(r)
		results[r.index] = r
	}
	stopWaiting()
	tr.finish()
	if interrupted {
		stopping := fmt.Sprintf("letting running calls finish (up to %s; a second signal stops at once)", cfg.Grace())
		if cfg.Grace() == 0 {
			stopping = "stopping running calls at once (shutdown_grace 0)"
		}
		fmt.Fprintf(e.stdout, "interrupted after %s: %d of %d steps done; %s\n",
			time.Since(start).Round(time.Millisecond), tr.done(), tr.total, stopping)
		fmt.Fprintln(e.stdout, "run the same command again to resume")
		return exitSignal
	}
	code := summarize(e.stdout, results, out, time.Since(start))
	if o.atEnd != nil {
		o.atEnd(d)
	}
	return code
}

// readBatch reads and parses a batch file; the slides' relative paths are
// relative to its folder. A file it cannot read gives "FILE: no such file"
// or the like; an image that is not a regular file (a FIFO, a device: a
// read could block for ever) is refused naming the entry and path. It
// returns an error wrapping errBatchCheckInterrupted at ctx's end (the first SIGINT or
// SIGTERM: nothing runs yet, so there is nothing to let finish), also while
// a read blocks (a hung network file system): that read is left to end on
// its own, the process exits.
func readBatch(ctx context.Context, file string) ([]batchEntry, error) {
	type result struct {
		entries []batchEntry
		err     error
	}
	done := make(chan result, 1)
	go func() {
		entries, err := readBatchFile(file)
		done <- result{entries, err}
	}()
	select {
	case r := <-done:
		return r.entries, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", file, errBatchCheckInterrupted)
	}
}

// errBatchCheckInterrupted is readBatch's error when a signal came before
// the check ended.
var errBatchCheckInterrupted = errors.New("interrupted while checking the batch file; nothing was sent")

// batchCheckFailed prints readBatch's err, shown as show renders it, and
// returns the exit code: 130 for a signal, 2 for a bad file.
func batchCheckFailed(e env, err error, show func(error) string) int {
	fmt.Fprintln(e.stderr, "slideshowd:", show(err))
	if errors.Is(err, errBatchCheckInterrupted) {
		return exitSignal
	}
	return exitBadArgs
}

func readBatchFile(file string) ([]batchEntry, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", file, fileProblem(err))
	}
	base := filepath.Dir(file)
	return parseBatch(file, data, func(p string) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		return readRegularFile(p)
	})
}

// readRegularFile reads the regular file p; anything else (a FIFO, a
// device, a socket: opening or reading one can block for ever) is an
// *fs.PathError "not a regular file (a named pipe)", without opening it.
func readRegularFile(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() { // a directory's read says "is a directory"
		return nil, &fs.PathError{Op: "read", Path: p, Err: fmt.Errorf("not a regular file (%s)", config.FileKind(fi.Mode()))}
	}
	return os.ReadFile(p)
}

// retryFailed reopens entry i's job when an earlier run of the batch left it
// failed, so its failed steps run again and its finished ones are kept.
func retryFailed(ctx context.Context, e env, p *pipeline.Pipeline, i int, id string) error {
	return retryIfFailed(e, i,
		func() (pipeline.Status, error) { return p.Status(ctx, id) },
		func() error { return p.Retry(ctx, id) })
}

// retryIfFailed reopens entry i's job with retry when status says an
// earlier run left it failed, and prints what the retry redoes and which
// attempt it is. Both modes of the batch command (local and -server) use it.
func retryIfFailed(e env, i int, status func() (pipeline.Status, error), retry func() error) error {
	st, err := status()
	if err != nil || st.State != pipeline.JobFailed {
		return err
	}
	redo := 0
	for _, is := range st.Images {
		if is.State != pipeline.ImageDone {
			redo++
		}
	}
	what := fmt.Sprintf("%d of %d images", redo, len(st.Images))
	if st.Analysis == nil {
		what = "the analysis and " + what
	}
	if err := retry(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "[%d] %q failed in an earlier run; retrying %s (attempt %d)\n", i, st.Source, what, st.Attempts+1)
	return nil
}

// writeFile writes dir/name durably: a temporary file, fsync, rename, fsync
// of dir, so an output reported written survives a crash whole.
func writeFile(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// summarize prints the end of the batch and returns the exit code.
func summarize(w io.Writer, results []batchResult, out string, took time.Duration) int {
	done, images, imagesDone := 0, 0, 0
	var failures []string
	for _, r := range results {
		images += len(r.status.Images)
		for _, is := range r.status.Images {
			if is.State == pipeline.ImageDone {
				imagesDone++
			}
		}
		if r.status.State == pipeline.JobDone {
			done++
			continue
		}
		// The job's error repeats its first failed image's; with failed
		// images, each is listed once under a count instead.
		why, lines := r.status.Error, ""
		failedImages := 0
		for _, is := range r.status.Images {
			if is.State == pipeline.ImageFailed {
				failedImages++
				lines += fmt.Sprintf("\n      image %d: %s", is.N, is.Error)
			}
		}
		if failedImages > 0 {
			why = fmt.Sprintf("%d of %d images failed", failedImages, len(r.status.Images))
		}
		f := fmt.Sprintf("  [%d] %q: %s%s", r.index, r.status.Source, why, lines)
		failures = append(failures, f)
	}
	fmt.Fprintf(w, "%d of %d slideshows done, %d of %d images written to %s in %s\n",
		done, len(results), imagesDone, images, out, took.Round(time.Millisecond))
	for _, r := range results {
		fmt.Fprintf(w, "  %s  %s\n", r.dir, r.status.State)
	}
	if len(failures) == 0 {
		return exitOK
	}
	fmt.Fprintf(w, "%d failed:\n%s\n", len(failures), strings.Join(failures, "\n"))
	return exitFailed
}

// progressMode resolves -progress.
func progressMode(s string, w io.Writer) (string, bool) {
	switch s {
	case "auto":
		if isTerminal(w) {
			return "bar", true
		}
		return "lines", true
	case "bar", "lines", "none":
		return s, true
	}
	return "", false
}

// tracker counts the batch's steps (one analysis and the images of each
// entry) and shows progress: a bar redrawn in place, or a line per step.
// A step counts when it is done; failed steps (and those of a failed job
// that will not run) are counted apart.
type tracker struct {
	w     io.Writer
	mode  string
	total int

	mu      sync.Mutex
	byID    map[string]int // id -> entry index
	analyze []bool         // analysis done, per entry
	images  []int          // images done, per entry
	failed  []int          // steps failed, per entry
	notMade []int          // steps never made: their job failed or was canceled first, per entry
	ended   []bool         // the job ended (done, failed or canceled), per entry
	started bool
	shownN  int
	shownF  int
	shownS  int
	lastBar time.Time
}

func newTracker(w io.Writer, mode string, entries []batchEntry) *tracker {
	t := &tracker{w: w, mode: mode, byID: make(map[string]int),
		analyze: make([]bool, len(entries)), images: make([]int, len(entries)), failed: make([]int, len(entries)),
		notMade: make([]int, len(entries)), ended: make([]bool, len(entries))}
	for _, en := range entries {
		t.total += 1 + en.req.Images
	}
	return t
}

func (t *tracker) add(i int, id string) {
	t.mu.Lock()
	t.byID[id] = i
	t.mu.Unlock()
}

// update is the pipeline's OnChange: it must be quick.
func (t *tracker) update(st pipeline.Status) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.byID[st.ID]
	if !ok {
		return
	}
	t.ended[i] = st.State.Final()
	done, failed := 0, 0
	for _, is := range st.Images {
		switch is.State {
		case pipeline.ImageDone:
			done++
		case pipeline.ImageFailed:
			failed++
		}
	}
	analysed := st.Analysis != nil
	notMade := 0
	if st.State == pipeline.JobFailed || st.State == pipeline.JobCanceled { // nothing more will happen
		// The steps the job never made are not failures: status.json
		// lists them as pending. A failed job without its analysis failed
		// there; a canceled one never made it.
		notMade = len(st.Images) - done - failed
		if !analysed {
			if st.State == pipeline.JobFailed {
				failed++
			} else {
				notMade++
			}
		}
	}
	prevDone := t.images[i]
	if t.analyze[i] {
		prevDone++
	}
	nowDone := done
	if analysed {
		nowDone++
	}
	if nowDone < prevDone || (nowDone == prevDone && failed+notMade <= t.failed[i]+t.notMade[i]) {
		return
	}
	t.analyze[i], t.images[i], t.failed[i], t.notMade[i] = analysed, done, failed, notMade
	if t.started {
		t.showLocked(false)
	}
}

// waitsOn reports whether a job of the batch may wait on class: one not
// ended that has its analysis to make ("text") or its images ("image");
// any class but those two counts while a job has not ended. batch -server
// shows the daemon's wait on a class only then: the daemon's waits are
// for all its jobs, and a re-run of a finished batch printed one.
func (t *tracker) waitsOn(class string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, ended := range t.ended {
		if ended {
			continue
		}
		switch class {
		case "text":
			if !t.analyze[i] {
				return true
			}
		case "image":
			if t.analyze[i] {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// wrote tells that entry r's folder is written: a line in lines mode,
// above the bar in bar mode.
func (t *tracker) wrote(r batchResult) {
	t.note(fmt.Sprintf("%s: [%d] %q -> %s", r.status.State, r.index, r.status.Source, r.dir))
}

// note prints a line: as is in lines mode, above the bar in bar mode,
// nothing in none mode.
func (t *tracker) note(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch t.mode {
	case "lines":
		fmt.Fprintln(t.w, line)
	case "bar":
		fmt.Fprintf(t.w, "\r\x1b[K%s\n", line)
		if t.started {
			t.drawBar()
		}
	}
}

func (t *tracker) done() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, _, _ := t.countsLocked()
	return n
}

// countsLocked returns the steps done, failed and never made.
func (t *tracker) countsLocked() (done, failed, notMade int) {
	for i := range t.images {
		done += t.images[i]
		if t.analyze[i] {
			done++
		}
		failed += t.failed[i]
		notMade += t.notMade[i]
	}
	return done, failed, notMade
}

func (t *tracker) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started = true
	t.showLocked(true)
}

func (t *tracker) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mode == "bar" && t.started {
		t.drawBar()
		fmt.Fprintln(t.w)
	}
	t.started = false
}

// line describes the progress: "7/12 steps (analyses 2/2, images 5/10)",
// then ", 1 failed" when steps failed and ", 5 not made" when a job ended
// (failed or canceled) before making them: as status.json, where they
// stay pending.
func (t *tracker) line() string {
	n, f, nm := t.countsLocked()
	an, im := 0, 0
	for i := range t.images {
		if t.analyze[i] {
			an++
		}
		im += t.images[i]
	}
	s := fmt.Sprintf("%d/%d steps (analyses %d/%d, images %d/%d)", n, t.total, an, len(t.images), im, t.total-len(t.images))
	if f > 0 {
		s += fmt.Sprintf(", %d failed", f)
	}
	if nm > 0 {
		s += fmt.Sprintf(", %d not made (their slideshow ended first)", nm)
	}
	return s
}

func (t *tracker) showLocked(first bool) {
	n, f, nm := t.countsLocked()
	if n == t.shownN && f == t.shownF && nm == t.shownS && !first {
		return
	}
	t.shownN, t.shownF, t.shownS = n, f, nm
	switch t.mode {
	case "lines":
		fmt.Fprintf(t.w, "progress: %s\n", t.line())
	case "bar":
		// Redraw at most 20 times a second, and always at the end.
		if now := time.Now(); first || n+f+nm == t.total || now.Sub(t.lastBar) >= 50*time.Millisecond {
			t.lastBar = now
			t.drawBar()
		}
	}
}

// Observe prints a line, with the time, when a class's jobs start waiting
// for quota (scheduler.EventWaiting: long waits only) and when they resume.
// It is the scheduler's Observer: quick, under the tracker's lock.
func (t *tracker) Observe(ev scheduler.Event) {
	var msg string
	switch ev.Kind {
	case scheduler.EventWaiting:
		msg = fmt.Sprintf("%s %s: waiting: %s", ev.Time.Format(time.TimeOnly), ev.Class, ev.Reason)
	case scheduler.EventResumed:
		msg = fmt.Sprintf("%s %s: resumed after %s", ev.Time.Format(time.TimeOnly), ev.Class, ev.Waited.Round(time.Second))
	default:
		return
	}
	t.note(msg)
}

func (t *tracker) drawBar() {
	n, _, _ := t.countsLocked()
	const width = 30
	fill := 0
	if t.total > 0 {
		fill = n * width / t.total
	}
	fmt.Fprintf(t.w, "\r[%s%s] %3d%%  %s ", strings.Repeat("#", fill), strings.Repeat(".", width-fill), n*100/max(1, t.total), t.line())
}

// printPlan prints what a batch would do: per entry its calls and output
// folder, then the calls per class against the configured quota.
func printPlan(w io.Writer, cfg config.Config, file string, entries []batchEntry, out string) {
	images := printPlanEntries(w, file, entries, out)
	projects := map[string]bool{}
	for _, k := range cfg.Keys {
		projects[k.Project] = true
	}
	np := len(projects)
	if np == 0 {
		// A client command needs no key; the quota is per project, so
		// without keys there is no quota to plan against.
		fmt.Fprintf(w, "calls: %d text, %d image; no keys configured, so the quota (per project) is not planned: set %s or list keys in the config to see it\n",
			len(entries), images, config.EnvKeys)
		fmt.Fprintln(w, "Today's use is not counted here (slideshowd usage shows it); a re-run asks only for what is not stored yet.")
		return
	}
	fmt.Fprintf(w, "calls: %d text, %d image, over %s in %s\n", len(entries), images, plural(len(cfg.Keys), "key", "keys"), plural(np, "project", "projects"))
	printPlanClass(w, "text", cfg.Classes.Text.Model, len(entries), cfg.Classes.Text.RPD*np, cfg.Classes.Text.RPM*np)
	printPlanClass(w, "image", cfg.Classes.Image.Model, images, cfg.Classes.Image.RPD*np, cfg.Classes.Image.RPM*np)
	fmt.Fprintln(w, "Today's use is not counted here (slideshowd usage shows it); a re-run asks only for what is not stored yet.")
}

// serverBatchEntries checks batch -server's arguments (no -config: the
// daemon's configuration applies; a usable -server URL) and reads the batch
// file. It returns the entries and true, or the exit status and false
// after writing the error to e.stderr.
func serverBatchEntries(ctx context.Context, e env, file, server, cfgPath string) ([]batchEntry, int, bool) {
	if cfgPath != "" {
		fmt.Fprintln(e.stderr, "slideshowd: -config: not used with -server (the daemon's configuration applies)")
		return nil, exitBadArgs, false
	}
	if problem := serverURLProblem(server); problem != "" {
		fmt.Fprintln(e.stderr, "slideshowd: -server: "+problem)
		return nil, exitBadArgs, false
	}
	entries, err := readBatch(ctx, file)
	if err != nil {
		return nil, batchCheckFailed(e, err, error.Error), false
	}
	return entries, 0, true
}

// cmdBatchServerPlan is batch -dry-run -server: the plan of the batch file
// against the daemon's limits, read from its GET /v1/usage (the token from
// SLIDESHOWD_TOKEN); the built-in defaults are not the daemon's. When the
// daemon does not answer, the plan says so and leaves the quota out.
func cmdBatchServerPlan(ctx context.Context, e env, file, server, cfgPath, out string) int {
	entries, code, ok := serverBatchEntries(ctx, e, file, server, cfgPath)
	if !ok {
		return code
	}
	w := e.stdout
	images := printPlanEntries(w, file, entries, out)
	u := strings.TrimSuffix(server, "/") + "/v1/usage"
	sum, err := fetchUsage(ctx, u, e.getenv(config.EnvToken))
	if err != nil {
		fmt.Fprintf(w, "calls: %d text, %d image; the daemon did not answer %s (%s), so its quota is not planned (its limits are not known here)\n",
			len(entries), images, redactURL(u), redact.New().String(err.Error()))
		return exitOK
	}
	calls := map[string]int{"text": len(entries), "image": images}
	keys, projects := 0, 0
	for _, cs := range sum.Classes {
		if _, ok := calls[cs.Name]; ok {
			keys, projects = max(keys, cs.Keys), max(projects, len(cs.Lanes))
		}
	}
	fmt.Fprintf(w, "calls: %d text, %d image, over the daemon's %s in %s (its limits, from %s)\n", len(entries), images,
		plural(keys, "key", "keys"), plural(projects, "project", "projects"), redactURL(u))
	for _, cs := range sum.Classes {
		if n, ok := calls[cs.Name]; ok {
			np := len(cs.Lanes)
			printPlanClass(w, cs.Name, "the daemon's", n, cs.Limits.RPD*np, cs.Limits.RPM*np)
		}
	}
	fmt.Fprintln(w, "Today's use is not counted here (slideshowd usage shows it); a re-run asks only for what is not stored yet.")
	return exitOK
}

// printPlanEntries prints a plan's first lines: the file and, per entry,
// its calls and output folder; it returns the images asked for.
func printPlanEntries(w io.Writer, file string, entries []batchEntry, out string) int {
	images := 0
	fmt.Fprintf(w, "%s: %s, valid; nothing is sent (dry run)\n", file, plural(len(entries), "slideshow", "slideshows"))
	for i, en := range entries {
		images += en.req.Images
		pr := en.req.Priority
		if pr == "" {
			pr = "normal"
		}
		dest := ""
		if out != "" {
			dest = " -> " + filepath.Join(out, outDirName(i, len(entries), en.slug))
		}
		fmt.Fprintf(w, "  [%d] %q (%s, %s): 1 analysis + %s%s\n", i, en.req.Source, pr, plural(len(en.req.Slides), "slide", "slides"), plural(en.req.Images, "image", "images"), dest)
	}
	return images
}

// printPlanClass prints a plan's line of class (its model, or whose
// limits): calls against day and rpm, summed over its projects.
func printPlanClass(w io.Writer, class, model string, calls, day, rpm int) {
	minutes := (calls + rpm - 1) / max(rpm, 1)
	line := fmt.Sprintf("  %s (%s): %s of %s/day (%s RPM); at least %s at full RPM",
		class, model, pluralN(calls, "call", "calls"), thousands(day), thousands(rpm), plural(minutes, "minute", "minutes"))
	if calls > day {
		line += fmt.Sprintf("; more than a day's quota: at least %s", plural((calls+day-1)/max(day, 1), "Pacific day", "Pacific days"))
	}
	fmt.Fprintln(w, line)
}

// plural is n and the noun: one for 1, many otherwise ("1 slideshow",
// "0 slideshows", "2 slideshows").
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// pluralN is plural with n written with thousands separators.
func pluralN(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return thousands(n) + " " + many
}

// cmdBatchServer is batch -server: the daemon's configuration applies, so
// none is read here; the token comes from SLIDESHOWD_TOKEN.
func cmdBatchServer(ctx context.Context, e env, file, server, cfgPath, out, mode string) int {
	entries, code, ok := serverBatchEntries(ctx, e, file, server, cfgPath)
	if !ok {
		return code
	}
	return runBatchServer(ctx, e, server, e.getenv(config.EnvToken), entries, out, mode)
}

// serverURLProblem says what is wrong with batch -server's URL, "" when it
// is a daemon's base URL (http or https, a host, no path but "/", no query).
// The text names the kind of mistake; it quotes the URL only as redactURL
// shows it (user information, query values and fragment hidden, key shapes
// replaced), and not at all when it does not parse (net/url's error quotes
// the input). User information and a fragment are refused: neither is
// sent to the daemon (the token goes in SLIDESHOWD_TOKEN), and both were
// printed back as given.
func serverURLProblem(server string) string {
	u, err := url.Parse(server)
	if err != nil {
		return "not a URL: " + redact.ParseError(err) + " (the value is not shown); want the daemon's base URL, like http://127.0.0.1:8080"
	}
	shown := strconv.Quote(redactURL(server))
	switch {
	case u.User != nil:
		return shown + ": must not carry credentials (user information before '@'); the daemon's token goes in SLIDESHOWD_TOKEN"
	case strings.Contains(server, "#"):
		return shown + ": must not have a fragment ('#...'); want the daemon's base URL, like http://127.0.0.1:8080"
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "":
		return shown + ": want the daemon's base URL, like http://127.0.0.1:8080"
	}
	return ""
}

// redactURL hides a URL's user information, query values and fragment
// (redact.URL).
func redactURL(s string) string { return redact.URL(s, nil) }
