package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// usageSequence answers GET /v1/usage with its summaries in turn (the last
// one again when they run out).
type usageSequence struct {
	mu   sync.Mutex
	sums []scheduler.Summary
	n    int
}

func (u *usageSequence) RoundTrip(r *http.Request) (*http.Response, error) {
	u.mu.Lock()
	s := u.sums[min(u.n, len(u.sums)-1)]
	u.n++
	u.mu.Unlock()
	s.Time = time.Now()
	body, _ := json.Marshal(s)
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
}

// watchWaits prints a class's wait once when it is expected to last
// WaitReportAfter or more (not a short RPM pause), again when its kind
// changes, and its end with the time waited.
func TestWatchWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		wait := func(kind, reason string, since, until time.Duration) []scheduler.ClassSummary {
			return []scheduler.ClassSummary{{Name: "text"}, {Name: "image", Wait: &scheduler.Wait{Class: "image", Kind: kind, Reason: reason,
				Since: start.Add(since), Until: start.Add(until)}}}
		}
		none := []scheduler.ClassSummary{{Name: "text"}, {Name: "image"}}
		seq := &usageSequence{sums: []scheduler.Summary{
			{Classes: none},
			{Classes: wait("rpm", "RPM window, next slot in 3s", 5*time.Second, 8*time.Second)}, // short: not shown
			{Classes: none},
			{Classes: wait("cooldown", "cooldown after 429, next slot in 20s", 15*time.Second, 35*time.Second)},
			{Classes: wait("cooldown", "cooldown after 429, next slot in 15s", 15*time.Second, 35*time.Second)},
			{Classes: wait("day", "image quota of all projects used for today, resets 2026-12-02 00:00 PST", 15*time.Second, 24*time.Hour)},
			{Classes: none},
		}}
		out := watchWaitsFor(seq, 7*waitsEvery)
		at := func(d time.Duration) string { return start.Add(d).Local().Format(time.TimeOnly) }
		want := at(15*time.Second) + " image: waiting: cooldown after 429, next slot in 20s\n" +
			at(15*time.Second) + " image: waiting: image quota of all projects used for today, resets 2026-12-02 00:00 PST\n" +
			at(30*time.Second) + " image: resumed after 15s\n"
		if out != want {
			t.Errorf("lines:\n%s\nwant:\n%s", out, want)
		}
	})
}

// generatingTracker is the tracker of a batch of one entry whose job,
// j1, has made its analysis and makes its image: it may wait on the image
// class, not on the text class.
func generatingTracker(w io.Writer) *tracker {
	tr := newTracker(w, "lines", []batchEntry{{req: pipeline.Request{Images: 1}}})
	tr.add(0, "j1")
	tr.update(pipeline.Status{ID: "j1", State: pipeline.JobGenerating, Analysis: &gemini.Analysis{},
		Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImagePending}}})
	return tr
}

// TestWatchWaitsOnlyForTheBatch: batch -server shows the daemon's wait on
// a class only while a job of the batch may wait on it (the daemon's waits
// are for all its jobs): not the text class's for a job that has its
// analysis, and nothing once the job has ended. A re-run of a finished
// batch printed the daemon's image wait, for other jobs.
func TestWatchWaitsOnlyForTheBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		wait := func(class string) *scheduler.Wait {
			return &scheduler.Wait{Class: class, Kind: "day", Reason: class + " quota used for today",
				Since: start, Until: start.Add(24 * time.Hour)}
		}
		seq := &usageSequence{sums: []scheduler.Summary{{Classes: []scheduler.ClassSummary{{Name: "text", Wait: wait("text")}, {Name: "image", Wait: wait("image")}}}}}
		c := &daemonClient{base: "http://daemon.test", http: &http.Client{Transport: seq}}
		watch := func(tr *tracker) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); c.watchWaits(ctx, tr) }()
			time.Sleep(2 * waitsEvery)
			cancel()
			<-done
		}
		var out bytes.Buffer
		watch(generatingTracker(&out))
		if want := start.Local().Format(time.TimeOnly) + " image: waiting: image quota used for today\n"; out.String() != want {
			t.Errorf("a job making its image: lines\n%s\nwant\n%s", out.String(), want)
		}
		out.Reset()
		tr := generatingTracker(&out)
		tr.update(pipeline.Status{ID: "j1", State: pipeline.JobDone, Analysis: &gemini.Analysis{},
			Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone}}})
		watch(tr)
		if out.String() != "" {
			t.Errorf("the batch's job has ended: lines\n%s\nwant none", out.String())
		}
	})
}

// batch -server prints the daemon's quota wait, with the time.
func TestBatchToDaemonPrintsQuotaWait(t *testing.T) {
	sdir, vars := oneImagePerDay(t)
	d := startServe(t, sdir, vars)
	dir := t.TempDir()
	batch := smallBatch(t, dir, 1, 2)
	cmd := exec.Command(bin, "batch", batch, "-out", "out", "-server", "http://"+d.addr, "-progress", "lines")
	cmd.Dir = dir
	cmd.Env = cmdEnv(t, nil)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	var seen []string
	found := ""
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), " image: waiting: image quota of all projects used for today, resets ") {
			found = sc.Text()
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if found == "" {
		t.Fatalf("no waiting line:\n%s", strings.Join(seen, "\n"))
	}
	if _, err := time.Parse(time.TimeOnly, strings.Fields(found)[0]); err != nil {
		t.Errorf("the waiting line %q does not start with the time", found)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err == nil || err.(*exec.ExitError).ExitCode() != exitSignal {
		t.Errorf("batch -server after SIGINT: %v", err)
	}
}
