package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// noisePNG is a side x side PNG of noise: it does not compress, so it
// takes about 4*side*side bytes.
func noisePNG(t *testing.T, side int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(r.Uint32())
	}
	img.Set(0, 0, color.NRGBA{A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A full disk is answered, not hidden: 507 naming the cause, /healthz
// degraded with the reason, /readyz 503, a metric, no empty job folders;
// service resumes by itself when space returns. On a 2 MiB tmpfs; skipped
// where mounting one is not allowed.
func TestDiskFull(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs a Linux tmpfs")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", data).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a 2 MiB tmpfs here (needs root): %v %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", data).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", data, err, out)
		}
	})
	filler := filepath.Join(data, "filler")
	if err := os.WriteFile(filler, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, base := startEmulator(t, emulator.Faults{})
	vars := keyEnv(base, data)
	d := startServe(t, dir, vars)

	img := base64.StdEncoding.EncodeToString(noisePNG(t, 200)) // about 160 KB
	body := fmt.Sprintf(`{"source":"disk","slides":[{"text":"a","image":%q}],"images":1}`, img)
	accepted := 0
	var full []byte
	for range 40 {
		code, b := d.call(t, "POST", "/v1/slideshows", "", body)
		if code == 202 {
			accepted++
			continue
		}
		if code != 507 {
			t.Fatalf("submit: %d %s, want 202 or 507", code, b)
		}
		full = b
		break
	}
	if full == nil {
		t.Fatalf("40 submits of 160 KB fitted in 2 MiB")
	}
	if !strings.Contains(string(full), "no space left on the data directory's disk") || !strings.Contains(string(full), "RESOURCE_EXHAUSTED") {
		t.Errorf("507 body %s", full)
	}
	code, b := d.call(t, "GET", "/healthz", "", "")
	if code != 200 || !strings.Contains(string(b), `"status":"degraded"`) || !strings.Contains(string(b), "no space left") {
		t.Errorf("/healthz: %d %s, want degraded with the reason", code, b)
	}
	if code, b := d.call(t, "GET", "/readyz", "", ""); code != 503 || !strings.Contains(string(b), "degraded") {
		t.Errorf("/readyz: %d %s, want 503", code, b)
	}
	if _, m := d.call(t, "GET", "/metrics", "", ""); !strings.Contains(string(m), "slideshowd_disk_full_total 1") {
		t.Errorf("metrics lack slideshowd_disk_full_total 1")
	}
	// Nothing half-written: one folder per accepted job.
	ents, err := os.ReadDir(filepath.Join(data, "jobs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != accepted {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%d job folders for %d accepted jobs: %v", len(ents), accepted, names)
	}

	// Space returns: service resumes by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	code, b = d.call(t, "POST", "/v1/slideshows", "", body)
	if code != 202 {
		t.Fatalf("submit after space returned: %d %s", code, b)
	}
	var h struct{ Status string }
	if _, b := d.call(t, "GET", "/healthz", "", ""); json.Unmarshal(b, &h) != nil || h.Status != "ok" {
		t.Errorf("/healthz after space returned: %s", b)
	}
	if code, _ := d.call(t, "GET", "/readyz", "", ""); code != 200 {
		t.Errorf("/readyz after space returned: %d", code)
	}
}

// An unwritable jobs/ stops start-up (it started "healthy" and answered
// 500 to every submit).
func TestUnwritableJobsDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere: make jobs/ a file instead.
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		writeTestFile(t, filepath.Join(data, "jobs"), "not a directory")
		r := runBin(t, dir, keyEnv("http://127.0.0.1:1", data), "serve", "-addr", "127.0.0.1:0")
		if r.code == 0 || !strings.Contains(r.stderr, "jobs") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		return
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "jobs"), 0o500); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, dir, keyEnv("http://127.0.0.1:1", data), "serve", "-addr", "127.0.0.1:0")
	if r.code == 0 || !strings.Contains(r.stderr, "is not writable") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}
