package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// bin is the slideshowd binary the tests run, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "slideshowd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "slideshowd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building slideshowd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := 0
	func() {
		defer os.RemoveAll(dir)
		// go.opencensus.io, imported by the SDK's dependencies, starts a
		// worker in an init function.
		defer func() {
			if err := goleak.Find(goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start")); err != nil && code == 0 {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}()
		code = m.Run()
	}()
	os.Exit(code)
}

// secrets are the keys of the tests: long and distinctive, so that a leak
// anywhere is found.
var secrets = []string{
	"AIzaTEST-e2e-secret-number-one-0001",
	"AIzaTEST-e2e-secret-number-two-0002",
	"AIzaTEST-e2e-secret-number-three-03",
}

// result is a finished run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// cmdEnv is the environment of a run: nothing from the test's own but PATH
// and HOME, so no real key leaks in.
func cmdEnv(t *testing.T, vars map[string]string) []string {
	t.Helper()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// runBin runs the binary in dir to the end.
func runBin(t *testing.T, dir string, vars map[string]string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = cmdEnv(t, vars)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running slideshowd %v: %v", args, err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// startEmulator serves an emulator with the test secrets as keys key1..key3
// (each its own project) on a loopback socket.
func startEmulator(t *testing.T, faults emulator.Faults) (*emulator.Emulator, string) {
	t.Helper()
	cfg := emulator.Config{Seed: 7, Faults: faults}
	for i, s := range secrets {
		cfg.Keys = append(cfg.Keys, emulator.Key{Name: fmt.Sprintf("key%d", i+1), Secret: s})
	}
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, newLoopbackServer(t, e)
}

// startTrackedEmulator is startEmulator that also counts the requests in
// progress, so a test can read the counters once a killed client's requests
// have ended (a request whose latency ends as its client dies may still be
// answered 200).
func startTrackedEmulator(t *testing.T, faults emulator.Faults) (*emulator.Emulator, string, *inflight) {
	t.Helper()
	cfg := emulator.Config{Seed: 7, Faults: faults}
	for i, s := range secrets {
		cfg.Keys = append(cfg.Keys, emulator.Key{Name: fmt.Sprintf("key%d", i+1), Secret: s})
	}
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := newInflight()
	base := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.add(1)
		defer f.add(-1)
		e.ServeHTTP(w, r)
	}))
	return e, base, f
}

// newLoopbackServer serves h on a loopback socket until the test ends and
// returns its base URL.
func newLoopbackServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// keyEnv is the environment pointing slideshowd at an emulator.
func keyEnv(base, data string) map[string]string {
	return map[string]string{
		"GEMINI_API_KEYS": strings.Join(secrets, ","),
		"GEMINI_BASE_URL": base,
		"SLIDESHOWD_DATA": data,
	}
}

// fastConfig lets images go at 600 RPM per key, so tests run quickly.
const fastConfig = `
log:
  format: json
  level: debug
classes:
  image:
    rpm: 600
    rpd: 240
`

func writeTestFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// smallBatch writes a batch of n slideshows of k images each in dir.
func smallBatch(t *testing.T, dir string, n, k int) string {
	t.Helper()
	var entries []string
	for i := range n {
		entries = append(entries, fmt.Sprintf(`{"source": "Deck number %d", "slides": [{"text": "Slide one of deck %d"}, {"text": "Slide two"}], "images": %d, "priority": "normal"}`, i+1, i+1, k))
	}
	return writeTestFile(t, filepath.Join(dir, "batch.json"), "["+strings.Join(entries, ",\n")+"]")
}

// served counts an emulator's 200 answers for model.
func served(e *emulator.Emulator, model string) int {
	n := 0
	for k, c := range e.Stats().Requests {
		if k.Model == model && k.Status == http.StatusOK {
			n += c
		}
	}
	return n
}

// checkOutputs checks that out holds n directories with an analysis and k
// valid PNG images each.
func checkOutputs(t *testing.T, out string, n, k int) {
	t.Helper()
	dirs, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != n {
		t.Fatalf("%s has %d entries, want %d", out, len(dirs), n)
	}
	for _, d := range dirs {
		var a struct {
			Summary      string   `json:"summary"`
			ImagePrompts []string `json:"image_prompts"`
		}
		data, err := os.ReadFile(filepath.Join(out, d.Name(), "analysis.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &a); err != nil || a.Summary == "" || len(a.ImagePrompts) != k {
			t.Errorf("%s/analysis.json: %v, %d prompts", d.Name(), err, len(a.ImagePrompts))
		}
		for i := 1; i <= k; i++ {
			f, err := os.Open(filepath.Join(out, d.Name(), fmt.Sprintf("image-%02d.png", i)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := png.Decode(f); err != nil {
				t.Errorf("%s image %d: not a PNG: %v", d.Name(), i, err)
			}
			f.Close()
		}
	}
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	r := runBin(t, dir, nil, "demo", "-out", "out", "-progress", "lines")
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	checkOutputs(t, filepath.Join(dir, "out"), 2, 5)
	for _, want := range []string{
		"progress: 12/12 steps (analyses 2/2, images 10/10)",
		"2 of 2 slideshows done, 10 of 10 images written to out",
		"text (gemini-3-flash-preview): 5 keys, 4,500 RPM, 45,000/day; today 2 used",
		"image (gemini-3-pro-image-preview): 5 keys, 90 RPM, 1,200/day; today 10 used",
		"emulator: 12 requests (2 text, 10 image), 0 answered 429",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	// A second demo works too (its data directory is temporary).
	if r := runBin(t, dir, nil, "demo", "-out", "out", "-progress", "none"); r.code != 0 {
		t.Fatalf("second demo: exit %d\n%s", r.code, r.stderr)
	}
}

// TestBatchKilledAndResumed kills a batch with SIGKILL in the middle and
// runs it again: it finishes without asking again for any analysis or
// image whose file was stored.
func TestBatchKilledAndResumed(t *testing.T) {
	// The first three image requests are answered (in a random order);
	// the others are held until the kill ended them, so the batch is in
	// the middle when it is killed however slowly the test reads its
	// progress (random latencies alone let a loaded test see all ten done).
	var mu sync.Mutex
	asked, hold := 0, true
	e, base, inflight := startTrackedEmulator(t, emulator.Faults{Latency: func(model string, r *rand.Rand) time.Duration {
		if model != emulator.DefaultImageModel {
			return 50 * time.Millisecond
		}
		mu.Lock()
		defer mu.Unlock()
		if asked++; asked > 3 && hold {
			return time.Hour
		}
		return 100*time.Millisecond + time.Duration(r.Int64N(int64(1500*time.Millisecond)))
	}})
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	batch := smallBatch(t, dir, 2, 5)
	vars := keyEnv(base, data)

	cmd := exec.Command(bin, "batch", batch, "-out", "out", "-progress", "lines")
	cmd.Dir = dir
	cmd.Env = cmdEnv(t, vars)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "images 3/10") {
			cmd.Process.Kill() // SIGKILL
			killed = true
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	cmd.Wait()
	inflight.waitZero() // the client is dead: no new request starts
	if !killed {
		t.Fatalf("the batch ended before it could be killed:\n%s", stderr.String())
	}

	mu.Lock()
	hold = false
	mu.Unlock()

	analyses, images := countFiles(t, filepath.Join(data, "jobs"), "analysis.json"), countFiles(t, filepath.Join(data, "jobs"), "image-*.png")
	if images != 3 {
		t.Fatalf("%d images stored at the kill: want the 3 answered (the others were held)", images)
	}
	text0, image0 := served(e, emulator.DefaultTextModel), served(e, emulator.DefaultImageModel)

	r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "lines")
	if r.code != 0 {
		t.Fatalf("second run: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if got, want := served(e, emulator.DefaultTextModel)-text0, 2-analyses; got != want {
		t.Errorf("second run asked for %d analyses, want %d (2 less the %d stored)", got, want, analyses)
	}
	if got, want := served(e, emulator.DefaultImageModel)-image0, 10-images; got != want {
		t.Errorf("second run generated %d images, want %d (10 less the %d stored); emulator: %+v\nfirst run:\n%s\nsecond run:\n%s\n%s",
			got, want, images, statsJSON(e.Stats()), stderr.String(), r.stdout, r.stderr)
	}
	checkOutputs(t, filepath.Join(dir, "out"), 2, 5)

	// A third run has nothing left to do.
	text1, image1 := served(e, emulator.DefaultTextModel), served(e, emulator.DefaultImageModel)
	if r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "none"); r.code != 0 || !strings.Contains(r.stdout, "2 of 2 slideshows done") {
		t.Fatalf("third run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if served(e, emulator.DefaultTextModel) != text1 || served(e, emulator.DefaultImageModel) != image1 {
		t.Error("a finished batch sent requests when run again")
	}
}

// inflight counts requests being served and waits for none.
type inflight struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond
}

func newInflight() *inflight {
	f := &inflight{}
	f.zero = sync.NewCond(&f.mu)
	return f
}

func (f *inflight) add(d int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n += d
	if f.n == 0 {
		f.zero.Broadcast()
	}
}

func (f *inflight) waitZero() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.n > 0 {
		f.zero.Wait()
	}
}

func countFiles(t *testing.T, root, pattern string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if ok, _ := filepath.Match(pattern, d.Name()); ok {
				n++
			}
		}
		return nil
	})
	return n
}

// TestBatchFailuresThenRetry runs a batch whose images the emulator
// sometimes answers without one (a permanent failure): exit 1 with the
// reasons. Run again with the faults gone, the batch retries only what
// failed, keeping the analysis and the finished images: exit 0.
func TestBatchFailuresThenRetry(t *testing.T) {
	e, base := startEmulator(t, emulator.Faults{NoImage: 0.5})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	batch := smallBatch(t, dir, 1, 6)
	vars := keyEnv(base, filepath.Join(dir, "data"))
	out := filepath.Join(dir, "out", "01-deck-number-1")
	r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "lines")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	made := countFiles(t, out, "image-*.png")
	failed := 6 - made
	if made == 0 || failed == 0 {
		t.Fatalf("%d of 6 images failed: want some, not all (change NoImage or the seed)\n%s", failed, r.stdout)
	}
	for _, want := range []string{"0 of 1 slideshows done", "1 failed:", fmt.Sprintf(`[0] "Deck number 1": %d of 6 images failed`+"\n", failed),
		// A failed image is not a step done; it is counted apart.
		fmt.Sprintf("progress: %d/7 steps (analyses 1/1, images %d/6), %d failed\n", 1+made, made, failed)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	// Each failure is told once: a line per failed image.
	if n := strings.Count(r.stdout, "IMAGE_SAFETY"); n != failed {
		t.Errorf("IMAGE_SAFETY appears %d times in the output, want %d (once per failed image):\n%s", n, failed, r.stdout)
	}
	// The analysis was kept.
	if _, err := os.Stat(filepath.Join(out, "analysis.json")); err != nil {
		t.Error(err)
	}
	// status.json says why each image failed.
	st := readOutputStatus(t, out)
	nf := 0
	for _, im := range st.Images {
		switch {
		case im.State == "failed" && strings.Contains(im.Error, "IMAGE_SAFETY") && im.File == "":
			nf++
		case im.State == "done" && im.File != "":
		default:
			t.Errorf("status.json image %+v", im)
		}
	}
	if st.State != "failed" || nf != failed || !strings.Contains(st.Error, "images failed") {
		t.Errorf("status.json: %+v", st)
	}

	if err := e.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	text0, image0 := served(e, emulator.DefaultTextModel), served(e, emulator.DefaultImageModel)
	r = runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "lines")
	if r.code != 0 {
		t.Fatalf("second run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		fmt.Sprintf(`[0] "Deck number 1" failed in an earlier run; retrying %d of 6 images (attempt 2)`, failed),
		"1 of 1 slideshows done, 6 of 6 images written to out",
		"progress: 7/7 steps (analyses 1/1, images 6/6)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("second run: stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if got := served(e, emulator.DefaultTextModel) - text0; got != 0 {
		t.Errorf("the retry asked for the analysis %d times, want 0", got)
	}
	if got := served(e, emulator.DefaultImageModel) - image0; got != failed {
		t.Errorf("the retry generated %d images, want %d (the failed ones)", got, failed)
	}
	checkOutputs(t, filepath.Join(dir, "out"), 1, 6)

	// A third run has nothing left to do.
	text1, image1 := served(e, emulator.DefaultTextModel), served(e, emulator.DefaultImageModel)
	r = runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "none")
	if r.code != 0 || strings.Contains(r.stdout, "retrying") {
		t.Fatalf("third run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if served(e, emulator.DefaultTextModel) != text1 || served(e, emulator.DefaultImageModel) != image1 {
		t.Error("a finished batch sent requests when run again")
	}
}

func TestBadConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		vars       map[string]string
		want       string
	}{
		{"negative rpm", "classes:\n  image:\n    rpm: -3\n", nil, "slideshowd: config: classes.image.rpm: -3: must be > 0"},
		{"unknown field", "classes:\n  text:\n    rmp: 5\n", nil, "slideshowd: config: slideshowd.yaml: line 3: classes.text.rmp: unknown field"},
		{"explicit zero", "# limits\n\n\nmax_active: 0\n", nil, "slideshowd: config: slideshowd.yaml: line 4: max_active: 0: must be > 0 (leave it out for the default, 64)"},
		{"tiny body limit", "max_body_bytes: 10\n", nil, "slideshowd: config: max_body_bytes: 10: must be at least 65536 (64 KiB)"},
		{"syntax", "listen: [\n", nil, "slideshowd: config: slideshowd.yaml: line 1: did not find expected node content"},
		{"unset secret_env", "keys:\n  - id: main\n    secret_env: MY_GEMINI_KEY\n", map[string]string{"GEMINI_API_KEYS": ""},
			`slideshowd: config: keys[0].secret_env: MY_GEMINI_KEY: not set in the environment (key "main")`},
		{"no keys", "listen: 127.0.0.1:8080\n", map[string]string{"GEMINI_API_KEYS": ""},
			"slideshowd: config: keys: none: set GEMINI_API_KEYS or list keys (id, secret_env) in the config file"},
		{"redis url password", "", map[string]string{"SLIDESHOWD_REDIS_URL": "redis://:pa55word@127.0.0.1:1/0?colour=red"},
			`slideshowd: config: redis_url: "redis://[REDACTED]@127.0.0.1:1/0?colour=[REDACTED]": redis: unexpected option: colour`},
		{"redis tpm", "redis_url: redis://127.0.0.1:1/0\nclasses:\n  text:\n    tpm: -5000\n", nil,
			"slideshowd: config: classes.text.tpm: -5000: must be >= 0 (0 = not enforced)"},
	}
	for _, tt := range tests {
		for _, command := range [][]string{{"batch", "b.json", "-out", "out"}, {"serve", "-addr", "127.0.0.1:0"}} {
			t.Run(tt.name+"/"+command[0], func(t *testing.T) {
				dir := t.TempDir()
				writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), tt.yaml)
				smallBatch(t, dir, 1, 1)
				os.Rename(filepath.Join(dir, "batch.json"), filepath.Join(dir, "b.json"))
				vars := map[string]string{"GEMINI_API_KEYS": secrets[0]}
				for k, v := range tt.vars {
					vars[k] = v
				}
				r := runBin(t, dir, vars, command...)
				if r.code != 2 {
					t.Errorf("exit %d, want 2", r.code)
				}
				if r.stderr != tt.want+"\n" {
					t.Errorf("stderr\n got %q\nwant %q", r.stderr, tt.want+"\n")
				}
			})
		}
	}
}

func TestBadBatch(t *testing.T) {
	entry := func(extra string) string {
		return `{"source": "s", "slides": [{"text": "t"}], "images": 2` + extra + `}`
	}
	tests := []struct {
		name, file string
		want       string // after "slideshowd: <path>: "
	}{
		{"images out of range", "[" + entry("") + ", " + entry("") + ", " + strings.Replace(entry(""), `"images": 2`, `"images": 25`, 1) + "]",
			"[2].images: 25: must be 1..20"},
		{"unknown field", "[" + entry(`, "imagez": 3`) + "]", `[0].imagez: unknown field (want source, slides, images, priority)`},
		{"unknown slide field", `[{"source": "s", "slides": [{"txt": "t"}], "images": 2}]`, `[0].slides[0].txt: unknown field (want text, image)`},
		{"missing image", `[{"source": "s", "slides": [{"text": "t", "image": "nope.png"}], "images": 2}]`, `[0].slides[0].image: "nope.png": no such file`},
		{"priority", "[" + entry(`, "priority": "asap"`) + "]", `[0].priority: "asap": want "high", "normal" or "low"`},
		{"wrong type", `[{"source": "s", "slides": [{"text": "t"}], "images": "two"}]`, `[0].images: "two": want an integer 1..20`},
		{"no slides", `[{"source": "s", "images": 2}]`, `[0].slides: none: need at least one slide`},
		{"syntax", "[\n" + entry("") + ",\n]", "line 3, column 1: invalid character ']' looking for beginning of value"},
		{"not an array", `{"source": "s"}`, "want a JSON array of slideshows, got object"},
		{"empty", `[]`, "no slideshows: want a JSON array with at least one"},
		{"NUL in source", `[{"source": "a\u0000b", "slides": [{"text": "t"}], "images": 2}]`,
			"[0].source: U+0000 at byte 1: control character: only tab, newline and carriage return are allowed"},
		{"escape in text", `[{"source": "s", "slides": [{"text": "t\tok"}, {"text": "\u001b[31mred"}], "images": 2}]`,
			"[0].slides[1].text: U+001B at byte 0: control character: only tab, newline and carriage return are allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeTestFile(t, filepath.Join(dir, "batch.json"), tt.file)
			r := runBin(t, dir, map[string]string{"GEMINI_API_KEYS": secrets[0]}, "batch", path, "-out", filepath.Join(dir, "out"))
			if r.code != 2 {
				t.Errorf("exit %d, want 2", r.code)
			}
			if want := "slideshowd: " + path + ": " + tt.want + "\n"; r.stderr != want {
				t.Errorf("stderr\n got %q\nwant %q", r.stderr, want)
			}
			if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
				t.Error("bad input opened the data directory")
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		dir := t.TempDir()
		r := runBin(t, dir, map[string]string{"GEMINI_API_KEYS": secrets[0]}, "batch", "none.json", "-out", "out")
		if r.code != 2 || r.stderr != "slideshowd: none.json: no such file\n" {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
	t.Run("arguments", func(t *testing.T) {
		r := runBin(t, t.TempDir(), nil, "batch", "x.json")
		if r.code != 2 || !strings.Contains(r.stderr, "Usage: slideshowd batch FILE.json -out DIR") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
}

func TestUsageFromDataDirectory(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	dir := t.TempDir()
	// Default limits: image chunks of one daily unit, so the stored counts are exact.
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "listen: 127.0.0.1:1\n")
	batch := smallBatch(t, dir, 1, 3)
	vars := keyEnv(base, filepath.Join(dir, "data"))
	if r := runBin(t, dir, vars, "batch", batch, "-out", "out"); r.code != 0 {
		t.Fatalf("batch: exit %d\n%s", r.code, r.stderr)
	}
	delete(vars, "GEMINI_API_KEYS") // usage needs no secrets: ids come from the config
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), `listen: 127.0.0.1:1
keys:
  - {id: key1, secret_env: K1}
  - {id: key2, secret_env: K2}
  - {id: key3, secret_env: K3}
`)
	r := runBin(t, dir, vars, "usage")
	if r.code != 0 {
		t.Fatalf("usage: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"usage from the data directory " + filepath.Join(dir, "data") + " (no daemon answered at http://127.0.0.1:1/v1/usage)",
		"text (gemini-3-flash-preview): 3 keys, 2,700 RPM, 27,000/day; today ",
		"image (gemini-3-pro-image-preview): 3 keys, 54 RPM, 720/day; today 3 used, 717 left",
		"PROJECT  KEYS  RPM USED/LIMIT  TODAY USED/LIMIT  STATE",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("usage output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runBin(t, dir, vars, "usage", "-json")
	var sum struct {
		Classes []struct {
			Name    string `json:"name"`
			DayUsed int    `json:"day_used"`
		} `json:"classes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || len(sum.Classes) != 2 || sum.Classes[1].DayUsed != 3 {
		t.Errorf("usage -json: %v %+v\n%s", err, sum, r.stdout)
	}
}

// startEmulate runs `slideshowd emulate` with args until the test ends and
// returns its output up to the export line and the variables that line sets.
func startEmulate(t *testing.T, args ...string) (string, map[string]string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"emulate", "-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = cmdEnv(t, nil)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		wg.Wait()
	})
	sc := bufio.NewScanner(stdout)
	var export string
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.HasPrefix(strings.TrimSpace(sc.Text()), "export ") {
			export = strings.TrimSpace(sc.Text())
			break
		}
	}
	wg.Add(1)
	go func() { defer wg.Done(); io.Copy(io.Discard, stdout) }()
	if export == "" {
		t.Fatalf("no export line in:\n%s", strings.Join(lines, "\n"))
	}
	vars := map[string]string{}
	for _, kv := range strings.Fields(strings.TrimPrefix(export, "export ")) {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	return strings.Join(lines, "\n"), vars
}

// emulatorStatsAt reads GET /_emulator/stats of `slideshowd emulate`.
func emulatorStatsAt(t *testing.T, base string) emulatorStats {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(base, "/") + StatsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st emulatorStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// usage on a data directory that does not exist is an error, not a table
// of zeros.
func TestUsageMissingDataDirectory(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "nowhere")
	r := runBin(t, dir, map[string]string{"SLIDESHOWD_DATA": data, "GEMINI_API_KEYS": secrets[0]}, "usage", "-addr", "127.0.0.1:1")
	want := "slideshowd: no daemon answered at http://127.0.0.1:1/v1/usage, and the data directory " + data +
		" cannot be read: no such directory (set SLIDESHOWD_DATA or data: in the config)\n"
	if r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Errorf("exit %d, want 1\nstderr %q\nwant   %q\nstdout %q", r.code, r.stderr, want, r.stdout)
	}
}

// checkSquare fails the test unless path is a square PNG, as the images
// setting aspect_ratio "1:1" makes them.
func checkSquare(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != b.Dy() {
		t.Errorf("%s is %dx%d with aspect_ratio 1:1", filepath.Base(path), b.Dx(), b.Dy())
	}
}

// demo takes -config: its limits, images and log settings apply, its keys,
// base_url, data and redis_url are the demo's own (a file's redis_url made
// the demo join that cluster, or fail to start without it).
func TestDemoConfig(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "c.yaml"), "keys:\n  - {id: real, secret_env: NOT_SET}\ndata: /nonexistent\nimages:\n  aspect_ratio: \"1:1\"\n"+
		"redis_url: redis://:pa55-w0rd@127.0.0.1:1/0\ncluster: prod\n")
	bf := smallBatch(t, dir, 1, 1)
	r := runBin(t, dir, nil, "demo", "-config", "c.yaml", "-batch", bf, "-out", "out", "-progress", "none")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	checkSquare(t, filepath.Join(dir, "out", "01-deck-number-1", "image-01.png"))
	r = runBin(t, dir, nil, "demo", "-config", "missing.yaml")
	if r.code != 2 || r.stderr != "slideshowd: config: missing.yaml: no such file\n" {
		t.Errorf("missing config: exit %d %q", r.code, r.stderr)
	}
}

func TestEmulateCommand(t *testing.T) {
	dir := t.TempDir()
	out, vars := startEmulate(t, "-keys", "2", "-image-rpm", "0", "-seed", "3")
	if !strings.Contains(out, "These keys are the emulator's own") {
		t.Error("the emulator does not say its keys are its own")
	}
	vars["SLIDESHOWD_DATA"] = filepath.Join(dir, "data")
	if vars["GEMINI_BASE_URL"] == "" || len(strings.Split(vars["GEMINI_API_KEYS"], ",")) != 2 {
		t.Fatalf("export line sets %v", vars)
	}
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	batch := smallBatch(t, dir, 1, 2)
	if r := runBin(t, dir, vars, "batch", batch, "-out", "out"); r.code != 0 {
		t.Fatalf("batch against emulate: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st := emulatorStatsAt(t, vars["GEMINI_BASE_URL"])
	total := 0
	for _, rc := range st.Requests {
		if rc.Status == 200 {
			total += rc.Count
		}
	}
	if total != 3 {
		t.Errorf("emulator served %d requests, want 3 (1 analysis, 2 images): %+v", total, st)
	}
	// What the API saw, per lane: one analysis and two images, no 429.
	sent := map[string]int{}
	for _, l := range st.Sent {
		sent[l.Model] += len(l.Times)
		if !slices.IsSortedFunc(l.Times, time.Time.Compare) {
			t.Errorf("sent times of %s/%s out of order: %v", l.Project, l.Model, l.Times)
		}
	}
	windows := map[string]int{}
	for _, l := range st.MaxSentWindow {
		windows[l.Model] += l.Count
	}
	if sent[emulator.DefaultTextModel] != 1 || sent[emulator.DefaultImageModel] != 2 ||
		windows[emulator.DefaultTextModel] != 1 || windows[emulator.DefaultImageModel] != 2 || len(st.RateLimitedPerMinute) != 0 {
		t.Errorf("stats: sent %v, max sent window %v, per-minute 429s %v", sent, windows, st.RateLimitedPerMinute)
	}
}

// TestEmulateProjectsExport: with -projects, the printed export line keeps
// the grouping, so the next step (a batch with those variables) counts the
// keys of one project together. Three keys over two projects at 3 image RPM
// per project: six images sent at once fit exactly (key1 and key3 share
// project1); counted as three projects, project1 would get a 429.
func TestEmulateProjectsExport(t *testing.T) {
	dir := t.TempDir()
	out, vars := startEmulate(t, "-keys", "3", "-projects", "2", "-image-rpm", "3", "-seed", "3")
	for _, want := range []string{"key1 (project project1)", "key2 (project project2)", "key3 (project project1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("emulate output lacks %q:\n%s", want, out)
		}
	}
	keys := strings.Split(vars["GEMINI_API_KEYS"], ",")
	if len(keys) != 3 || !strings.HasPrefix(keys[0], "project1:") || !strings.HasPrefix(keys[2], "project1:") {
		t.Fatalf("export line sets GEMINI_API_KEYS=%q: want PROJECT:SECRET entries", vars["GEMINI_API_KEYS"])
	}
	vars["SLIDESHOWD_DATA"] = filepath.Join(dir, "data")
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "listen: 127.0.0.1:1\nclasses:\n  image:\n    rpm: 3\n    burst: 3\n")
	batch := smallBatch(t, dir, 1, 6)
	if r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "none"); r.code != 0 {
		t.Fatalf("batch: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st := emulatorStatsAt(t, vars["GEMINI_BASE_URL"])
	if n := len(st.RateLimited); n != 0 {
		t.Errorf("the batch got 429s: %v", st.RateLimited)
	}
	r := runBin(t, dir, vars, "usage")
	if r.code != 0 || !strings.Contains(r.stdout, "image (gemini-3-pro-image-preview): 3 keys, 6 RPM") ||
		!regexp.MustCompile(`(?m)^  project1 +key1,key3 `).MatchString(r.stdout) {
		t.Errorf("usage: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	r := runBin(t, t.TempDir(), nil, "help")
	if r.code != 0 || !strings.Contains(r.stdout, "batch    FILE.json -out DIR") {
		t.Errorf("help: exit %d\n%s", r.code, r.stdout)
	}
	r = runBin(t, t.TempDir(), nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "slideshowd ") {
		t.Errorf("version: exit %d %q", r.code, r.stdout)
	}
	// Every command's -h prints its flags and exits 0.
	for _, c := range commands() {
		if c.run == nil || c.name == "version" {
			continue
		}
		r := runBin(t, t.TempDir(), nil, c.name, "-h")
		if r.code != 0 || !strings.Contains(r.stderr, "-") {
			t.Errorf("%s -h: exit %d, want 0\n%s", c.name, r.code, r.stderr)
		}
	}
	r = runBin(t, t.TempDir(), nil, "frobnicate")
	if r.code != 2 || r.stderr != "slideshowd: unknown command \"frobnicate\" (see slideshowd help)\n" {
		t.Errorf("unknown command: exit %d %q", r.code, r.stderr)
	}
}

// The images block of the configuration reaches the image requests: a 1:1
// setting gives square images (the default is 9:16).
func TestImagesConfig(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"images:\n  aspect_ratio: \"1:1\"\n")
	batch := smallBatch(t, dir, 1, 2)
	r := runBin(t, dir, keyEnv(base, filepath.Join(dir, "data")), "batch", batch, "-out", "out", "-progress", "none")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	checkSquare(t, filepath.Join(dir, "out", "01-deck-number-1", "image-01.png"))
}
