package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// oneImagePerDay serves an emulator whose image model allows one request
// per project and day, with key1 (secrets[0]) only, and returns a directory
// with slideshowd.yaml (fastConfig) and the environment that points
// slideshowd at the emulator, with that one key, and at dir/data.
func oneImagePerDay(t *testing.T) (dir string, vars map[string]string) {
	t.Helper()
	models := emulator.DefaultModels()
	models[emulator.DefaultImageModel] = emulator.Limits{RPM: 20, RPD: 1}
	e, err := emulator.New(emulator.Config{Seed: 5, Models: models, Keys: []emulator.Key{{Name: "key1", Secret: secrets[0]}}})
	if err != nil {
		t.Fatal(err)
	}
	base := newLoopbackServer(t, e)
	dir = t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	vars = keyEnv(base, filepath.Join(dir, "data"))
	vars["GEMINI_API_KEYS"] = secrets[0]
	return dir, vars
}

// A job waiting for tomorrow's image quota says so in its JSON, in
// GET /v1/usage, in `slideshowd usage` and in `slideshowd jobs`.
func TestServeShowsQuotaWait(t *testing.T) {
	dir, vars := oneImagePerDay(t)
	d := startServe(t, dir, vars)
	// The first job spends the day's only image; the second waits.
	var created struct{ ID string }
	for i := range 2 {
		code, body := d.call(t, "POST", "/v1/slideshows", "", `{"source": "Tides", "slides": [{"text": "The moon pulls the sea."}], "images": 1}`)
		if code != http.StatusAccepted {
			t.Fatalf("create: %d %s", code, body)
		}
		json.Unmarshal(body, &created)
		if i == 0 {
			if st := d.waitJob(t, created.ID, "", nil); st.State != "done" {
				t.Fatalf("first job: %+v", st)
			}
		}
	}
	d.waitLog(t, "jobs waiting for quota")
	var st struct {
		State string
		Wait  *struct{ Class, Kind, Reason string }
	}
	code, body := d.call(t, "GET", "/v1/slideshows/"+created.ID, "", "")
	if code != 200 || json.Unmarshal(body, &st) != nil || st.Wait == nil {
		t.Fatalf("status: %d %s", code, body)
	}
	if st.State != "generating" || st.Wait.Class != "image" || st.Wait.Kind != "day" ||
		!strings.HasPrefix(st.Wait.Reason, "image quota of all projects used for today, resets ") || !strings.HasSuffix(st.Wait.Reason, "00:00 PST") {
		t.Fatalf("job: %s", body)
	}
	code, body = d.call(t, "GET", "/v1/usage", "", "")
	if code != 200 || !strings.Contains(string(body), `"wait":{"class":"image","kind":"day"`) || !strings.Contains(string(body), `"day_resets_at"`) {
		t.Fatalf("usage: %d %s", code, body)
	}
	cli := []string{"-addr", d.addr}
	r := runBin(t, dir, vars, append([]string{"usage"}, cli...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "  waiting: image quota of all projects used for today, resets ") || !strings.Contains(r.stdout, "out for the day until") {
		t.Fatalf("usage: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, dir, vars, append([]string{"jobs"}, cli...)...)
	// The row says the job waits; the reason is on its own line under the
	// table.
	if r.code != 0 || !strings.Contains(r.stdout, created.ID+"  generating (waiting)  ") ||
		!strings.Contains(r.stdout, "waiting for quota:\n  "+created.ID+": image quota of all projects used for today, resets ") {
		t.Fatalf("jobs: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// Batch progress prints a line, with the time, when its work starts to
// wait for quota.
func TestBatchPrintsQuotaWait(t *testing.T) {
	dir, vars := oneImagePerDay(t)
	batch := smallBatch(t, dir, 1, 2)
	cmd := exec.Command(bin, "batch", batch, "-out", filepath.Join(dir, "out"), "-progress", "lines")
	cmd.Dir = dir
	cmd.Env = cmdEnv(t, vars)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	var seen strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "image: waiting: image quota of all projects used for today, resets ") {
				found <- sc.Text()
			}
		}
		close(found)
	}()
	select {
	case line, ok := <-found:
		if !ok {
			t.Fatalf("batch ended without a waiting line:\n%s", seen.String())
		}
		if _, err := time.Parse(time.TimeOnly, strings.Fields(line)[0]); err != nil {
			t.Fatalf("the waiting line %q does not start with the time", line)
		}
	case <-time.After(time.Minute):
		t.Fatal("no waiting line within a minute")
	}
	cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitSignal {
		t.Fatalf("batch after SIGINT: %v", err)
	}
}
