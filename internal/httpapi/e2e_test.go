package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// TestEndToEnd serves the real pipeline, scheduler and gemini client
// against the emulator (through its in-process transport, in a synctest
// bubble): create, long-poll, fetch every image, usage and metrics, with one
// key leaked on the way. No response, header or log line shows a secret.
func TestEndToEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keys := []emulator.Key{
			{Name: "k1", Secret: "AIzaE2E-secret-number-one-000000000"},
			{Name: "k2", Secret: "AIzaE2E-secret-number-two-000000000"},
		}
		emu, err := emulator.New(emulator.Config{Keys: keys, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := emu.SetLeaked("k1", true); err != nil {
			t.Fatal(err)
		}
		rig := startE2E(t, emu, keys)
		call, logs, secrets := rig.call, rig.logs, rig.secrets

		body := fmt.Sprintf(`{"source":"quarterly.pptx","slides":[{"text":"Revenue grew"},{"text":"Chart","image":%q}],"images":3,"priority":"high"}`,
			"data:image/png;base64,"+b64(pngBytes(t)))
		var created struct{ ID string }
		if err := json.Unmarshal(call("POST", "/v1/slideshows", body, 202).Bytes(), &created); err != nil {
			t.Fatal(err)
		}
		// 202 means stored: the status is readable at once.
		var status pipeline.Status
		if err := json.Unmarshal(call("GET", "/v1/slideshows/"+created.ID, "", 200).Bytes(), &status); err != nil {
			t.Fatal(err)
		}
		if status.ID != created.ID || status.Source != "quarterly.pptx" || status.Priority != "high" {
			t.Fatalf("status %+v", status)
		}
		// Long polls until the job ends: each answers when the pipeline
		// reports the job final, or after 60 s (virtual) with its progress.
		for polls := 0; !status.State.Final(); polls++ {
			if polls == 10 {
				t.Fatalf("the job is still %s after %d long polls", status.State, polls)
			}
			if err := json.Unmarshal(call("GET", "/v1/slideshows/"+created.ID+"?wait=60s", "", 200).Bytes(), &status); err != nil {
				t.Fatal(err)
			}
		}
		if status.State != pipeline.JobDone || status.Analysis == nil || len(status.Images) != 3 {
			t.Fatalf("final status %+v", status)
		}
		for n := 1; n <= 3; n++ {
			img := call("GET", fmt.Sprintf("/v1/slideshows/%s/images/%d", created.ID, n), "", 200)
			if _, err := png.Decode(img); err != nil {
				t.Errorf("image %d: %v", n, err)
			}
		}
		call("GET", fmt.Sprintf("/v1/slideshows/%s/images/4", created.ID), "", 404)
		call("GET", "/v1/slideshows/unknown-id", "", 404)
		call("POST", "/v1/slideshows", `{"source":" ","slides":[{"text":"a"}],"images":1}`, 400)

		var usage scheduler.Summary
		if err := json.Unmarshal(call("GET", "/v1/usage", "", 200).Bytes(), &usage); err != nil {
			t.Fatal(err)
		}
		used := map[string]int{}
		for _, c := range usage.Classes {
			used[c.Name] = c.DayUsed
		}
		// The leaked key was tried once (counted), then disabled.
		if used["text"] < 1 || used["image"] < 3 || len(usage.DisabledKeys) != 1 || usage.DisabledKeys[0].ID != "k1" {
			t.Errorf("usage %+v", usage)
		}
		expo := call("GET", "/metrics", "", 200).String()
		for _, want := range []string{
			`slideshowd_calls_total{class="image",key="k2",outcome="ok"} 3`,
			`slideshowd_keys_disabled_total{key="k1",reason="`,
			`slideshowd_key_disabled{key="k1",project="k1",reason="`,
			`slideshowd_http_requests_total{code="202",method="POST",route="POST /v1/slideshows"} 1`,
		} {
			if !strings.Contains(expo, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		assertNoSecret(t, rig.seen.String()+logs.String(), secrets...)
	})
}

// TestEndToEndRetry makes a job fail through the emulator (every image
// answer without an image), clears the fault and retries the job over
// HTTP: 202 with the reopened status, then done with the analysis of the
// first attempt kept; a second retry is a 409 naming the state.
func TestEndToEndRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keys := []emulator.Key{{Name: "k1", Secret: "AIzaE2E-secret-number-one-000000000"}}
		emu, err := emulator.New(emulator.Config{Keys: keys, Seed: 1, Faults: emulator.Faults{NoImage: 1}})
		if err != nil {
			t.Fatal(err)
		}
		rig := startE2E(t, emu, keys)
		call := rig.call
		decode := func(b *bytes.Buffer) pipeline.Status {
			t.Helper()
			var st pipeline.Status
			if err := json.Unmarshal(b.Bytes(), &st); err != nil {
				t.Fatal(err)
			}
			return st
		}
		waitFinal := func(id string) pipeline.Status {
			t.Helper()
			for polls := 0; ; polls++ {
				st := decode(call("GET", "/v1/slideshows/"+id+"?wait=60s", "", 200))
				if st.State.Final() {
					return st
				}
				if polls == 10 {
					t.Fatalf("the job is still %s after %d long polls", st.State, polls)
				}
			}
		}

		var created struct{ ID string }
		if err := json.Unmarshal(call("POST", "/v1/slideshows",
			`{"source":"tides.pptx","slides":[{"text":"The moon pulls the sea"}],"images":2}`, 202).Bytes(), &created); err != nil {
			t.Fatal(err)
		}
		id := created.ID
		first := waitFinal(id)
		if first.State != pipeline.JobFailed || first.Analysis == nil || first.Attempts != 1 ||
			first.Images[0].State != pipeline.ImageFailed || first.Images[1].State != pipeline.ImageFailed {
			t.Fatalf("first attempt %+v: want failed with the analysis made and both images failed", first)
		}
		asked := emu.Stats().Total()

		if err := emu.SetFaults(emulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		reopened := decode(call("POST", "/v1/slideshows/"+id+"/retry", "", 202))
		if reopened.ID != id || reopened.State == pipeline.JobFailed || reopened.Error != "" ||
			reopened.Attempts != 2 || reopened.RetriedAt == nil || reopened.Analysis == nil {
			t.Fatalf("retry answered %+v: want the reopened job, attempt 2, analysis kept", reopened)
		}
		final := waitFinal(id)
		if final.State != pipeline.JobDone || final.Attempts != 2 || len(final.Images) != 2 ||
			final.Analysis == nil || final.Analysis.Summary != first.Analysis.Summary {
			t.Fatalf("after the retry %+v", final)
		}
		// Only the two images were asked for again, not the analysis.
		if got := emu.Stats().Total() - asked; got != 2 {
			t.Errorf("%d requests after the retry, want 2 (the failed images)", got)
		}
		for n := 1; n <= 2; n++ {
			if _, err := png.Decode(call("GET", fmt.Sprintf("/v1/slideshows/%s/images/%d", id, n), "", 200)); err != nil {
				t.Errorf("image %d: %v", n, err)
			}
		}
		again := apiErrBody(t, call("POST", "/v1/slideshows/"+id+"/retry", "", 409))
		if again.Status != "FAILED_PRECONDITION" || again.Message != "the slideshow is done: only a failed or canceled slideshow can be retried" {
			t.Errorf("second retry: %+v", again)
		}
		call("POST", "/v1/slideshows/unknown-id/retry", "", 404)
		assertNoSecret(t, rig.seen.String()+rig.logs.String(), rig.secrets...)
	})
}

// apiErrBody decodes an error answer's body.
func apiErrBody(t *testing.T, b *bytes.Buffer) errorDetail {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(b.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return e.Error
}

// e2eRig is the real pipeline, scheduler and gemini client over an
// emulator, served by New with testToken; it stops when the test ends.
type e2eRig struct {
	env     *testEnv
	logs    *syncBuffer
	secrets []string // testToken and the keys' secrets
	t       *testing.T
	seen    strings.Builder // every response, headers and body
}

// call serves one request with the token and fails the test unless the
// answer has status want; it returns the body.
func (r *e2eRig) call(method, path, body string, want int) *bytes.Buffer {
	r.t.Helper()
	w := r.env.do(r.t, method, path, body, withToken(testToken))
	for k, v := range w.Header() {
		fmt.Fprintf(&r.seen, "%s: %s\n", k, v)
	}
	r.seen.Write(w.Body.Bytes())
	if w.Code != want {
		r.t.Fatalf("%s %s: %d %s, want %d", method, path, w.Code, w.Body, want)
	}
	return w.Body
}

// startOneKeyE2E is startE2E with an emulator of one key, k1, in a project
// of its own.
func startOneKeyE2E(t *testing.T) *e2eRig {
	t.Helper()
	keys := []emulator.Key{{Name: "k1", Secret: "AIzaE2E-secret-number-one-000000000"}}
	emu, err := emulator.New(emulator.Config{Keys: keys, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return startE2E(t, emu, keys)
}

// startE2E wires keys (one project each) to emu, runs the scheduler and
// the pipeline until the test ends and serves them. Call it inside a
// synctest bubble.
func startE2E(t *testing.T, emu *emulator.Emulator, keys []emulator.Key) *e2eRig {
	t.Helper()
	var bkeys []bucket.Key
	var gkeys []gemini.Key
	secrets := []string{testToken}
	for _, k := range keys {
		bkeys = append(bkeys, bucket.Key{ID: k.Name, Project: k.Name})
		gkeys = append(gkeys, gemini.Key{ID: k.Name, Secret: k.Secret})
		secrets = append(secrets, k.Secret)
	}
	logs := &syncBuffer{}
	log := zerolog.New(logs).Level(zerolog.DebugLevel)
	metrics := NewMetrics(prometheus.NewRegistry())
	st := store.NewMemory()
	sch, err := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 900, RPD: 9000}},
			{Name: "image", Limits: bucket.Limits{RPM: 18, RPD: 240}},
		},
		Keys: bkeys, Store: st, Classifier: gemini.Classify, Logger: log, Observer: metrics, Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	metrics.Attach(sch.Summary)
	gc, err := gemini.New(t.Context(), gemini.Config{
		Keys: gkeys, BaseURL: "http://emulator.test", Scheduler: sch,
		HTTPClient: &http.Client{Transport: emu.Transport()},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(pipeline.Config{Store: st, Gemini: gc, DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = sch.Run(ctx) })
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			t.Errorf("pipeline Run: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	env := &testEnv{logs: logs, h: New(Config{
		Service: p, Summary: sch.Summary, Token: testToken, Secrets: secrets,
		Logger: log, Metrics: metrics,
	})}
	return &e2eRig{env: env, logs: logs, secrets: secrets, t: t}
}

// TestEndToEndExisting: with the pipeline, a POST whose Idempotency-Key
// names a stored job answers that job's id with "existing": true; the
// first POST has no "existing".
func TestEndToEndExisting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rig := startOneKeyE2E(t)
		body := `{"source":"s","slides":[{"text":"t"}],"images":1}`
		first := rig.env.do(t, "POST", "/v1/slideshows", body, withToken(testToken), withHeader("Idempotency-Key", "entry-1"))
		second := rig.env.do(t, "POST", "/v1/slideshows", body, withToken(testToken), withHeader("Idempotency-Key", "entry-1"))
		var a, b struct {
			ID       string
			Existing *bool
		}
		if first.Code != 202 || second.Code != 202 || json.Unmarshal(first.Body.Bytes(), &a) != nil || json.Unmarshal(second.Body.Bytes(), &b) != nil {
			t.Fatalf("answers %d %s, %d %s", first.Code, first.Body, second.Code, second.Body)
		}
		if a.ID == "" || a.ID != b.ID || a.Existing != nil || b.Existing == nil || !*b.Existing {
			t.Errorf("first %s, second %s: want the same id, existing only on the second", first.Body, second.Body)
		}
		synctest.Wait()
	})
}

// TestEndToEndKeyReused: with the pipeline, a POST reusing an
// Idempotency-Key with a different body answers 422 naming the key and
// submits nothing; the same body again still answers the first job.
func TestEndToEndKeyReused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rig := startOneKeyE2E(t)
		body := `{"source":"s","slides":[{"text":"t"}],"images":1}`
		first := rig.env.do(t, "POST", "/v1/slideshows", body, withToken(testToken), withHeader("Idempotency-Key", "entry-1"))
		other := rig.env.do(t, "POST", "/v1/slideshows", `{"source":"other","slides":[{"text":"t"}],"images":1}`,
			withToken(testToken), withHeader("Idempotency-Key", "entry-1"))
		// The same request spelled differently is the same body.
		same := rig.env.do(t, "POST", "/v1/slideshows", `{"images":1,"priority":"normal","slides":[{"text":"t"}],"source":"s"}`,
			withToken(testToken), withHeader("Idempotency-Key", "entry-1"))
		var a, c struct {
			ID       string
			Existing bool
		}
		if first.Code != 202 || same.Code != 202 || json.Unmarshal(first.Body.Bytes(), &a) != nil || json.Unmarshal(same.Body.Bytes(), &c) != nil {
			t.Fatalf("answers %d %s, %d %s", first.Code, first.Body, same.Code, same.Body)
		}
		if a.ID != c.ID || !c.Existing {
			t.Errorf("same body again: %s, want %s existing", same.Body, a.ID)
		}
		e := apiErr(t, other)
		want := `Idempotency-Key: "entry-1": already used for a different request body (job ` + a.ID + ")"
		if other.Code != 422 || !strings.HasPrefix(e.Message, want) {
			t.Errorf("different body: %d %s, want 422 %q...", other.Code, other.Body, want)
		}
		list := rig.env.do(t, "GET", "/v1/slideshows", "", withToken(testToken))
		if n := strings.Count(list.Body.String(), `"source":`); n != 1 {
			t.Errorf("%d jobs listed, want 1: %s", n, list.Body)
		}
		synctest.Wait()
	})
}

// TestEndToEndControlCharacters: with the pipeline, a NUL or another
// control character (not tab, newline, CR) in a submitted string is a 400
// naming the field, and nothing is stored.
func TestEndToEndControlCharacters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rig := startOneKeyE2E(t)
		for body, want := range map[string]string{
			`{"source":"a\u0000b","slides":[{"text":"t"}],"images":1}`:                  "source: U+0000 at byte 1: control character",
			`{"source":"s","slides":[{"text":"t"},{"text":"\u001b[2J"}],"images":1}`:    "slides[1].text: U+001B at byte 0: control character",
			`{"source":"s","slides":[{"text":"ok\u0000"}],"images":1,"priority":"low"}`: "slides[0].text: U+0000 at byte 2: control character",
		} {
			w := rig.env.do(t, "POST", "/v1/slideshows", body, withToken(testToken))
			if w.Code != 400 || !strings.HasPrefix(apiErr(t, w).Message, want) {
				t.Errorf("%s: %d %s, want 400 %q...", body, w.Code, w.Body, want)
			}
		}
		ok := rig.env.do(t, "POST", "/v1/slideshows", `{"source":"a\tb","slides":[{"text":"1\r\n2\n\t3"}],"images":1}`, withToken(testToken))
		if ok.Code != 202 {
			t.Errorf("tab, newline and CR: %d %s, want 202", ok.Code, ok.Body)
		}
		list := rig.env.do(t, "GET", "/v1/slideshows", "", withToken(testToken))
		if n := strings.Count(list.Body.String(), `"source":`); n != 1 {
			t.Errorf("%d jobs listed, want 1: %s", n, list.Body)
		}
		synctest.Wait()
	})
}
