package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/internal/httpapi"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// Following a daemon: at most this many long polls at once, and the
// pauses between tries while it does not answer.
const (
	maxPolls       = 32
	minServerPause = time.Second
	maxServerPause = 30 * time.Second
)

// daemonClient talks to a running daemon's HTTP API.
type daemonClient struct {
	base  string // "http://host:port", no trailing slash
	token string
	http  *http.Client
}

// apiError is an answer of the daemon other than the one expected.
type apiError struct {
	status  int
	message string
}

func (e *apiError) Error() string {
	if e.status == http.StatusUnauthorized {
		return "the daemon refused the request (401): set SLIDESHOWD_TOKEN to its token"
	}
	return fmt.Sprintf("the daemon answered %d: %s", e.status, e.message)
}

// temporary reports whether asking again later may succeed: no answer at
// all, or a 5xx (502, 503 while it stops, 504).
func temporary(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status >= 500
	}
	return err != nil && !errors.Is(err, context.Canceled)
}

// do sends one request and decodes a JSON answer with status want into v
// (or returns the body when v is nil).
func (c *daemonClient) do(ctx context.Context, method, path string, header http.Header, body []byte, want int, v any) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is known to the caller
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != want {
		var eb struct {
			Error struct{ Message string } `json:"error"`
		}
		msg := excerpt(string(data))
		if json.Unmarshal(data, &eb) == nil && eb.Error.Message != "" {
			msg = eb.Error.Message
		}
		return nil, nil, &apiError{status: resp.StatusCode, message: msg}
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			return nil, nil, fmt.Errorf("the daemon answered something unexpected to %s %s: %v", method, path, err)
		}
	}
	return data, resp.Header, nil
}

// createBody is the JSON of POST /v1/slideshows for an entry.
func createBody(r pipeline.Request) ([]byte, error) {
	type slide struct {
		Text  string `json:"text,omitempty"`
		Image string `json:"image,omitempty"`
	}
	body := struct {
		Source   string  `json:"source"`
		Slides   []slide `json:"slides"`
		Images   int     `json:"images"`
		Priority string  `json:"priority,omitempty"`
	}{Source: r.Source, Images: r.Images, Priority: r.Priority}
	for _, s := range r.Slides {
		sl := slide{Text: s.Text}
		if len(s.Image) > 0 {
			sl.Image = base64.StdEncoding.EncodeToString(s.Image)
		}
		body.Slides = append(body.Slides, sl)
	}
	return json.Marshal(body)
}

// submit submits entry en, idempotently: its key (derived from its index,
// JSON and images) goes as the Idempotency-Key, so a re-run finds the job
// of an earlier run (existing true) instead of submitting it again.
func (c *daemonClient) submit(ctx context.Context, en batchEntry) (id string, existing bool, err error) {
	body, err := createBody(en.req)
	if err != nil {
		return "", false, err
	}
	var created struct {
		ID       string `json:"id"`
		Existing bool   `json:"existing"`
	}
	h := http.Header{"Idempotency-Key": {en.req.Key}}
	if _, _, err := c.do(ctx, http.MethodPost, "/v1/slideshows", h, body, http.StatusAccepted, &created); err != nil {
		return "", false, err
	}
	if created.ID == "" {
		return "", false, errors.New("the daemon answered no job id")
	}
	return created.ID, created.Existing, nil
}

func (c *daemonClient) status(ctx context.Context, id string, wait time.Duration) (pipeline.Status, error) {
	path := "/v1/slideshows/" + url.PathEscape(id)
	if wait > 0 {
		path += "?wait=" + wait.String()
	}
	var st pipeline.Status
	_, _, err := c.do(ctx, http.MethodGet, path, nil, nil, http.StatusOK, &st)
	return st, err
}

// image fetches image n of job id: a file name for the output folder
// (image-NN and the extension of its type) and its bytes.
func (c *daemonClient) image(ctx context.Context, id string, n int) (string, []byte, error) {
	data, h, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/slideshows/%s/images/%d", url.PathEscape(id), n), nil, nil, http.StatusOK, nil)
	if err != nil {
		return "", nil, err
	}
	ext := ".png"
	switch h.Get("Content-Type") {
	case "image/jpeg":
		ext = ".jpg"
	case "image/webp":
		ext = ".webp"
	}
	return fmt.Sprintf("image-%02d%s", n, ext), data, nil
}

// pause sleeps d, or returns false when ctx ends first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// runBatchServer runs the batch on the daemon at server: every entry is
// submitted (idempotently), failures of an earlier run are retried, then
// every job is followed with the long poll and its folder written under
// out as soon as it ends, as the local mode does. It returns the exit code.
func runBatchServer(ctx context.Context, e env, server, token string, entries []batchEntry, out, mode string) int {
	start := time.Now()
	c := &daemonClient{base: strings.TrimSuffix(server, "/"), token: token,
		http: &http.Client{Timeout: httpapi.MaxWait + 30*time.Second}}
	tr := newTracker(e.stdout, mode, entries)
	ids := make([]string, len(entries))
	found := 0 // entries an earlier run submitted
	for i, en := range entries {
		id, existing, err := c.submit(ctx, en)
		if err == nil && existing {
			found++
			err = c.retryFailed(ctx, e, i, id)
		}
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(e.stdout, "interrupted while submitting: %d of %d slideshows submitted to %s; run the same command again\n", i, len(entries), c.base)
				return exitSignal
			}
			fmt.Fprintf(e.stderr, "slideshowd: %s: [%d] %q: %v\n", c.base, i, en.req.Source, err)
			return exitFailed
		}
		ids[i] = id
		tr.add(i, id)
		if existing {
			// Where the earlier run's job is (after the retry, if
			// any): its steps done, and whether it has ended.
			if st, err := c.status(ctx, id, 0); err == nil {
				tr.update(st)
			}
		}
	}
	if found == 0 {
		fmt.Fprintf(e.stdout, "%s submitted to %s; following them\n", plural(len(entries), "slideshow", "slideshows"), c.base)
	} else {
		fmt.Fprintf(e.stdout, "%s submitted to %s, %d found there from an earlier run; following them\n",
			plural(len(entries)-found, "slideshow", "slideshows"), c.base, found)
	}
	tr.start()

	ended := make(chan batchResult)
	fatal := make(chan error, 1)
	followCtx, stopFollowing := context.WithCancel(ctx)
	defer stopFollowing()
	sem := make(chan struct{}, maxPolls)
	var warnOnce sync.Once
	for i, id := range ids {
		go func() {
			wait := minServerPause
			for {
				select {
				case sem <- struct{}{}:
				case <-followCtx.Done():
					return
				}
				st, err := c.status(followCtx, id, httpapi.MaxWait)
				<-sem
				switch {
				case err == nil:
					wait = minServerPause
					tr.update(st)
					if st.State.Final() {
						select {
						case ended <- batchResult{index: i, status: st}:
						case <-followCtx.Done():
						}
						return
					}
					continue
				case followCtx.Err() != nil:
					return
				case temporary(err):
					warnOnce.Do(func() {
						fmt.Fprintf(e.stderr, "slideshowd: %s does not answer (%v); trying again, every %s at most\n", c.base, err, maxServerPause)
					})
					if !pause(followCtx, wait) {
						return
					}
					wait = min(2*wait, maxServerPause)
				default:
					select {
					case fatal <- fmt.Errorf("[%d] %q: job %s: %w", i, entries[i].req.Source, id, err):
					default:
					}
					return
				}
			}
		}()
	}

	go c.watchWaits(followCtx, tr)
	go c.watchSteps(followCtx, tr)

	results := make([]batchResult, len(entries))
	for range len(entries) {
		var r batchResult
		select {
		case r = <-ended:
		case err := <-fatal:
			tr.finish()
			fmt.Fprintf(e.stderr, "slideshowd: %s: %v\n", c.base, err)
			return exitFailed
		case <-ctx.Done():
			tr.finish()
			fmt.Fprintf(e.stdout, "interrupted after %s: %d of %d steps done; the daemon at %s goes on with the rest\n",
				time.Since(start).Round(time.Millisecond), tr.done(), tr.total, c.base)
			fmt.Fprintln(e.stdout, "run the same command again to follow them and write their folders")
			return exitSignal
		}
		r.dir = filepath.Join(out, outDirName(r.index, len(entries), entries[r.index].slug))
		err := writeSlideshow(r.dir, r.index, r.status, func(n int) (string, []byte, error) {
			return c.image(ctx, r.status.ID, n)
		})
		if err != nil {
			tr.finish()
			fmt.Fprintf(e.stderr, "slideshowd: writing %s: %v\n", r.dir, err)
			return exitFailed
		}
		tr.wrote(r)
		results[r.index] = r
	}
	stopFollowing()
	tr.finish()
	return summarize(e.stdout, results, out, time.Since(start))
}

// waitsEvery is how often batch -server reads the daemon's usage for the
// waiting and resumed lines (the long polls answer only at a job's end).
const waitsEvery = 5 * time.Second

// watchWaits prints, as the local mode does from the scheduler's events, a
// line with the time when a class of the daemon starts waiting for quota
// (a wait expected to last WaitReportAfter or more) while a job of the
// batch may wait on it (tracker.waitsOn), again when a printed wait changes
// (its kind or words, or its estimated end, until, by WaitReportAfter or
// more between two reads: a held lane's hold extended), and when a wait
// it printed ends, from GET /v1/usage every waitsEvery until ctx ends. A
// printed wait that ended and another that began between two reads (a new
// since, e.g. across a restart of the daemon) are two: the first one's end
// is printed at the second's start. Errors are left to the followers,
// which report a daemon that does not answer.
func (c *daemonClient) watchWaits(ctx context.Context, tr *tracker) {
	type shown struct {
		w     scheduler.Wait // as printed
		until time.Time      // as last read
	}
	reported := map[string]shown{}
	tick := time.NewTicker(waitsEvery)
	defer tick.Stop()
	for {
		var sum scheduler.Summary
		if _, _, err := c.do(ctx, http.MethodGet, "/v1/usage", nil, nil, http.StatusOK, &sum); err == nil {
			for _, cs := range sum.Classes {
				prev, was := reported[cs.Name]
				w := cs.Wait
				if was && (w == nil || !w.Since.Equal(prev.w.Since)) {
					end := sum.Time
					if w != nil {
						end = w.Since // it ended by then
					}
					delete(reported, cs.Name)
					tr.note(fmt.Sprintf("%s %s: resumed after %s", end.Local().Format(time.TimeOnly), cs.Name, max(0, end.Sub(prev.w.Since)).Round(time.Second)))
				}
				if w == nil {
					continue
				}
				show := false
				switch {
				case was && w.Since.Equal(prev.w.Since):
					moved := w.Until.Sub(prev.until)
					show = w.Kind != prev.w.Kind || waitWords(*w) != waitWords(prev.w) || moved >= scheduler.WaitReportAfter || moved <= -scheduler.WaitReportAfter
					prev.until = w.Until
					reported[cs.Name] = prev
				case was: // another wait began
					show = w.Until.Sub(w.Since) >= scheduler.WaitReportAfter || w.Kind != prev.w.Kind || waitWords(*w) != waitWords(prev.w)
				default:
					show = w.Until.Sub(w.Since) >= scheduler.WaitReportAfter
				}
				if show && tr.waitsOn(cs.Name) {
					reported[cs.Name] = shown{w: *w, until: w.Until}
					at := w.Since
					if was && w.Since.Equal(prev.w.Since) && w.Kind == prev.w.Kind {
						at = sum.Time // the same wait, its end moved: when seen
					}
					tr.note(fmt.Sprintf("%s %s: waiting: %s", at.Local().Format(time.TimeOnly), cs.Name, w.Reason))
				}
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// waitWords is a wait's reason without the countdown that changes with
// every read ("RPM window" of "RPM window, next slot in 12s").
func waitWords(w scheduler.Wait) string {
	words, _, _ := strings.Cut(w.Reason, ", next slot ")
	return words
}

// stepsEvery is how often batch -server reads the daemon's running jobs
// for the progress of their steps (the long polls answer only at a job's
// end: the progress would jump a whole job at a time).
const stepsEvery = time.Second

// watchSteps updates the progress from the daemon's running jobs (GET
// /v1/slideshows?state=analyzing,generating, one request for them all,
// whatever the batch's size) every stepsEvery until ctx ends, so that it
// moves step by step as in the local mode; steps that end within the same
// stepsEvery count together. A listed job has no analysis (the list leaves
// it out): one generating has made it. Jobs that end are left to their
// long polls. Errors are left to the followers.
func (c *daemonClient) watchSteps(ctx context.Context, tr *tracker) {
	tick := time.NewTicker(stepsEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		q := url.Values{"state": {"analyzing,generating"}, "limit": {fmt.Sprint(pipeline.MaxPageSize)}}
		for range maxStepPages {
			var page pipeline.Page
			if _, _, err := c.do(ctx, http.MethodGet, "/v1/slideshows?"+q.Encode(), nil, nil, http.StatusOK, &page); err != nil {
				break
			}
			for _, st := range page.Jobs {
				if st.State == pipeline.JobGenerating && st.Analysis == nil {
					st.Analysis = &gemini.Analysis{} // made; tracker.update counts it by its presence
				}
				tr.update(st)
			}
			if page.Next == "" {
				break
			}
			q.Set("cursor", page.Next)
		}
	}
}

// maxStepPages bounds the pages of running jobs watchSteps reads at a
// time (500 each: more than a daemon runs at once with max_active's
// default, 64).
const maxStepPages = 10

// retryFailed reopens job id of entry i when an earlier run left it
// failed (POST /v1/slideshows/{id}/retry), as the local mode does.
func (c *daemonClient) retryFailed(ctx context.Context, e env, i int, id string) error {
	return retryIfFailed(e, i,
		func() (pipeline.Status, error) { return c.status(ctx, id, 0) },
		func() error {
			_, _, err := c.do(ctx, http.MethodPost, "/v1/slideshows/"+url.PathEscape(id)+"/retry", nil, nil, http.StatusAccepted, nil)
			return err
		})
}
