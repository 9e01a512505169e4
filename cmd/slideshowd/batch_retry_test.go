package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/internal/testutil"
)

// deckTransport answers the analysis of the deck named bad with a 400, and
// while hold is set keeps the analysis of the deck named held waiting
// until its request ends; everything else goes to the emulator.
type deckTransport struct {
	next      http.RoundTripper
	mu        sync.Mutex
	bad, held string
	arrived   chan struct{} // closed when the held deck's analysis arrives
	analyses  map[string]int
}

func (d *deckTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.Contains(r.URL.Path, emulator.DefaultTextModel) {
		return d.next.RoundTrip(r)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	d.mu.Lock()
	bad, held, arrived := d.bad, d.held, d.arrived
	for _, deck := range []string{"Deck A", "Deck X"} {
		if bytes.Contains(body, []byte(deck)) {
			d.analyses[deck]++
		}
	}
	d.mu.Unlock()
	switch {
	case held != "" && bytes.Contains(body, []byte(held)):
		close(arrived)
		<-r.Context().Done()
		return nil, r.Context().Err()
	case bad != "" && bytes.Contains(body, []byte(bad)):
		return &http.Response{
			StatusCode: http.StatusBadRequest, Status: "400 Bad Request", Request: r,
			Header: http.Header{"Content-Type": {"application/json"}},
			Body:   io.NopCloser(strings.NewReader(`{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}`)),
		}, nil
	}
	return d.next.RoundTrip(r)
}

// blockingWriter calls hook (once) on the first write that contains mark.
type blockingWriter struct {
	testutil.Buffer
	mark string
	hook func()
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if w.hook != nil && bytes.Contains(p, []byte(w.mark)) {
		h := w.hook
		w.hook = nil
		h()
	}
	return w.Buffer.Write(p)
}

// TestBatchRetriesOnlyEarlierFailures: a job that an earlier run left
// unfinished, resumed by this run and failing in it before the batch's
// loop reaches its entry, failed in this run: the batch must not say it
// failed earlier nor retry it at once.
func TestBatchRetriesOnlyEarlierFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		const secret = "AIzaTEST-batch-retry-secret-0001"
		e, err := emulator.New(emulator.Config{Keys: []emulator.Key{{Name: "k1", Secret: secret}}, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		// probe off: both analyses must be in flight at once on the one key
		// (with probing, the held one would hold the other back).
		cfgFile := writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "shutdown_grace: 0s\nclasses:\n  text:\n    probe: false\n")
		vars := map[string]string{config.EnvKeys: secret, "GEMINI_BASE_URL": "http://emulator.test", "SLIDESHOWD_DATA": filepath.Join(dir, "data")}
		cfg, _, err := config.Load(config.Options{Path: cfgFile, Getenv: func(k string) string { return vars[k] }, NeedSecrets: true})
		if err != nil {
			t.Fatal(err)
		}
		batch := `[{"source": "Deck X", "slides": [{"text": "x"}], "images": 1},
			{"source": "Deck A", "slides": [{"text": "a"}], "images": 1}]`
		entries, err := parseBatch("batch.json", []byte(batch), func(string) ([]byte, error) { return nil, os.ErrNotExist })
		if err != nil {
			t.Fatal(err)
		}
		tr := &deckTransport{next: e.Transport(), bad: "Deck X", held: "Deck A", arrived: make(chan struct{}), analyses: map[string]int{}}
		o := daemonOptions{httpClient: &http.Client{Transport: tr}}
		out := filepath.Join(dir, "out")

		// Run 1: X fails; A is stopped in its analysis, left to resume.
		ctx, cancel := context.WithCancel(context.Background())
		var stdout bytes.Buffer
		codes := make(chan int, 1)
		go func() {
			codes <- runBatch(ctx, env{stdout: &stdout, stderr: io.Discard}, cfg, zerolog.Nop(), entries, out, "none", o)
		}()
		<-tr.arrived
		synctest.Wait()
		cancel()
		if code := <-codes; code != exitSignal {
			t.Fatalf("run 1: exit %d, want %d\n%s", code, exitSignal, stdout.String())
		}

		// Run 2: A's analysis now fails at once. The batch's loop is held on
		// its message about X until A, resumed, has failed.
		tr.mu.Lock()
		tr.bad, tr.held = "Deck", ""
		tr.mu.Unlock()
		w := &blockingWriter{mark: "[0]", hook: synctest.Wait}
		code := runBatch(context.Background(), env{stdout: w, stderr: io.Discard}, cfg, zerolog.Nop(), entries, out, "none", o)
		if code != exitFailed {
			t.Fatalf("run 2: exit %d, want %d\n%s", code, exitFailed, w.String())
		}
		if !strings.Contains(w.String(), `[0] "Deck X" failed in an earlier run`) {
			t.Errorf("run 2 did not retry X, which failed in run 1:\n%s", w.String())
		}
		if strings.Contains(w.String(), `[1] "Deck A" failed in an earlier run`) {
			t.Errorf("run 2 retried A, which failed in run 2:\n%s", w.String())
		}
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if got := tr.analyses["Deck A"]; got != 2 {
			t.Errorf("A's analysis asked for %d times, want 2 (run 1, then its resume in run 2)", got)
		}
	})
}
