package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/internal/redistest"
)

// TestSeveralProcessesTPM: two daemons with the same key and one Redis share
// the text lane's TPM against `slideshowd emulate` at the same limits (TPM
// 4000), with text work of about twice that (six analyses of about 1,130
// estimated input tokens each, three per daemon: each daemon alone would
// send its three at once, and six at once would pass TPM). The emulator
// answers no 429; every job ends done; the text requests span more than a
// minute (the shared window held some of them back: 62 s or 125 s, as the
// daemons' budgets fall; a test of one to two minutes).
func TestSeveralProcessesTPM(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const tpm, perProcess = 4000, 3
	_, emu := startEmulate(t, "-keys", "1", "-text-rpm", "1000", "-text-rpd", "10000", "-text-tpm", fmt.Sprint(tpm),
		"-image-rpm", "100", "-image-rpd", "1000", "-seed", "7")
	config := fmt.Sprintf("log:\n  format: json\n  level: debug\nshutdown_grace: 5s\nclasses:\n  text:\n    rpm: 1000\n    rpd: 10000\n    tpm: %d\n  image:\n    rpm: 100\n    rpd: 1000\n", tpm)
	var daemons []*daemonProc
	for range 2 {
		dir := t.TempDir()
		writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), config)
		d := startServe(t, dir, map[string]string{
			"GEMINI_API_KEYS": emu["GEMINI_API_KEYS"], "GEMINI_BASE_URL": emu["GEMINI_BASE_URL"],
			"SLIDESHOWD_DATA": filepath.Join(dir, "data"), "SLIDESHOWD_REDIS_URL": srv.URL(),
			"SLIDESHOWD_TOKEN": testToken,
		})
		d.waitLog(t, "sharing quota through Redis")
		daemons = append(daemons, d)
	}
	text := strings.Repeat("word ", 700) // 875 tokens, 1,130 estimated with the instruction and schema
	ids := make([][]string, len(daemons))
	for i, d := range daemons {
		for j := range perProcess {
			code, body := d.call(t, "POST", "/v1/slideshows", testToken,
				fmt.Sprintf(`{"source": "Deck %d-%d", "slides": [{"text": %q}], "images": 1}`, i, j, text))
			var created struct{ ID string }
			if code != 202 || json.Unmarshal(body, &created) != nil {
				t.Fatalf("create on daemon %d: %d %s", i, code, body)
			}
			ids[i] = append(ids[i], created.ID)
		}
	}
	for i, d := range daemons {
		for _, id := range ids[i] {
			if st := d.waitJob(t, id, testToken, nil); st.State != "done" {
				t.Errorf("daemon %d: job %s: %s %s", i, id, st.State, st.Error)
			}
		}
	}
	st := emulatorStatsAt(t, emu["GEMINI_BASE_URL"])
	for _, rc := range st.Requests {
		if rc.Status == 429 {
			t.Errorf("the emulator answered 429: %+v", rc)
		}
	}
	for _, lc := range st.RateLimitedPerMinute {
		if lc.Count != 0 {
			t.Errorf("per-minute 429s: %+v", lc)
		}
	}
	var times []time.Time
	for _, lt := range st.Sent {
		if lt.Model != "gemini-3-pro-image-preview" {
			times = append(times, lt.Times...)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	if len(times) != len(daemons)*perProcess {
		t.Fatalf("%d text requests reached the emulator, want %d", len(times), len(daemons)*perProcess)
	}
	span := times[len(times)-1].Sub(times[0])
	t.Logf("text requests at %v after the first", func() []time.Duration {
		var d []time.Duration
		for _, at := range times {
			d = append(d, at.Sub(times[0]).Round(time.Millisecond))
		}
		return d
	}())
	if span < time.Minute {
		t.Errorf("the text requests span %v: with about twice TPM of work, some should have waited a minute", span)
	}
}
