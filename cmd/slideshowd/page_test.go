package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// chromium returns the path of a Chromium to drive, or skips the test
// (fails it when SLIDESHOWD_REQUIRE_CHROMIUM is set, as CI does).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SLIDESHOWD_REQUIRE_CHROMIUM") != "" {
		t.Fatal("no chromium found (PATH, or CHROMIUM=path) and SLIDESHOWD_REQUIRE_CHROMIUM is set")
	}
	t.Skip("no chromium found: install Debian's chromium (apt-get install chromium) or set CHROMIUM=path to run the status page test")
	return ""
}

// browser starts a headless Chromium with a fresh profile; it is closed
// when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// Start the browser now, without a time limit (a limit on the first
	// call would stop the browser with it), so a failure to start is
	// reported as such.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// runBrowser runs chromedp steps with a time limit.
func runBrowser(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one chromedp action that returns a value, with a time limit.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// The status page in a real headless Chromium against the binary: log in
// with the token, see the lanes, enable a key the API disabled, cancel a
// job; then, on a daemon whose page reloads every second, a new job shows
// up by itself. With SLIDESHOWD_SCREENSHOTS=DIR it saves the screenshots
// the README shows (docs/).
func TestStatusPageInBrowser(t *testing.T) {
	ctx := browser(t)
	cfg := emulator.Config{Seed: 9}
	for i, s := range secrets {
		cfg.Keys = append(cfg.Keys, emulator.Key{Name: fmt.Sprintf("key%d", i+1), Secret: s, Leaked: i == 1})
	}
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base := newLoopbackServer(t, e)
	dir := t.TempDir()
	// Small limits, so the page's bars show the use.
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), `
log: {format: json, level: debug}
classes:
  text: {rpm: 30, rpd: 40}
  image: {rpm: 20, rpd: 12}
`)
	vars := keyEnv(base, filepath.Join(dir, "data"))
	vars["SLIDESHOWD_TOKEN"] = testToken
	d := startServeWith(t, dir, vars, "-page-refresh", "0")
	submit := func(d *daemonProc, source string, images int) string {
		t.Helper()
		code, body := d.call(t, "POST", "/v1/slideshows", testToken,
			fmt.Sprintf(`{"source": %q, "slides": [{"text": "The moon pulls the sea."}], "images": %d, "priority": "high"}`, source, images))
		if code != http.StatusAccepted {
			t.Fatalf("create: %d %s", code, body)
		}
		var created struct{ ID string }
		json.Unmarshal(body, &created)
		return created.ID
	}
	// A first job runs to the end (its images are the thumbnails) and meets
	// the leaked key2 on the way.
	first := submit(d, "How tides work", 3)
	if st := d.waitJob(t, first, testToken, nil); st.State != "done" {
		t.Fatalf("first job: %+v", st)
	}
	d.waitLog(t, "key disabled")
	// The key is fixed at Google's end; the daemon does not know until an
	// operator enables it.
	if err := e.SetLeaked("key2", false); err != nil {
		t.Fatal(err)
	}
	// The next one's images take a minute: it is in progress when canceled.
	if err := e.SetFaults(emulator.Faults{Latency: func(model string, _ *rand.Rand) time.Duration {
		if model == emulator.DefaultImageModel {
			return time.Minute
		}
		return 0
	}}); err != nil {
		t.Fatal(err)
	}
	second := submit(d, "Lighthouses", 4)
	shots := os.Getenv("SLIDESHOWD_SCREENSHOTS")

	url := "http://" + d.addr + "/"
	runBrowser(t, ctx, "open the page",
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("token")),
	)
	loginShot := get(t, ctx, "screenshot", chromedp.FullScreenshot(100))
	runBrowser(t, ctx, "log in",
		chromedp.SendKeys(chromedp.ID("token"), "not-the-token-0123456789"),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("login-error")),
		chromedp.SendKeys(chromedp.ID("token"), testToken),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("lanes-text")),
		chromedp.WaitVisible(chromedp.CSS("#recent img")), // thumbnails of the first job
	)
	lanes := get(t, ctx, "lanes", chromedp.Text(chromedp.ID("lanes-image")))
	disabled := get(t, ctx, "disabled keys", chromedp.Text(chromedp.ID("disabled-keys")))
	pageShot := get(t, ctx, "screenshot", chromedp.FullScreenshot(100))
	for _, want := range []string{"key1", "key2", "key3", "/20", "/12"} {
		if !strings.Contains(lanes, want) {
			t.Errorf("image lanes %q lack %q", lanes, want)
		}
	}
	if !strings.Contains(disabled, "key2") || !strings.Contains(disabled, "leak") {
		t.Errorf("disabled keys %q: want key2, leaked", disabled)
	}
	runBrowser(t, ctx, "enable key2",
		chromedp.Click(chromedp.ID("enable-key2")),
		chromedp.WaitVisible(chromedp.ID("no-disabled-keys")),
	)
	if flash := get(t, ctx, "flash", chromedp.Text(chromedp.ID("flash"))); flash != "key key2 enabled" {
		t.Errorf("flash after enable: %q", flash)
	}
	var kl keyList
	if code, body := d.call(t, "GET", "/v1/keys", testToken, ""); code != 200 || json.Unmarshal(body, &kl) != nil || kl.Keys[1].Disabled != "" {
		t.Fatalf("key2 after the page enabled it: %d %s", code, body)
	}
	runBrowser(t, ctx, "cancel the second job",
		// A fresh page without the last message, so the message waited
		// for below is the cancel's.
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("queue")),
		chromedp.Click(chromedp.ID("cancel-"+second)),
		// The page before the click has a flash too (the enable's): wait
		// for the reloaded page, where the canceled job has no button.
		chromedp.WaitNotPresent(chromedp.ID("cancel-"+second)),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	if flash := get(t, ctx, "flash", chromedp.Text(chromedp.ID("flash"))); flash != "job "+second+" canceled" {
		t.Errorf("flash after cancel: %q", flash)
	}
	var st jobState
	if code, body := d.call(t, "GET", "/v1/slideshows/"+second, testToken, ""); code != 200 || json.Unmarshal(body, &st) != nil || st.State != "canceled" {
		t.Fatalf("second job after the page canceled it: %d %s", code, body)
	}
	d.stop(t)

	// A daemon whose page reloads every second: a job submitted meanwhile
	// appears without the browser doing anything.
	d2 := startServeWith(t, dir, vars, "-page-refresh", "1s")
	url = "http://" + d2.addr + "/"
	runBrowser(t, ctx, "log in again",
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), testToken),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("lanes-text")),
	)
	third := submit(d2, "Bread", 1)
	runBrowser(t, ctx, "see the new job after a reload",
		chromedp.WaitVisible(chromedp.CSS(`#recent tr[data-id="`+third+`"]`)))

	if shots != "" {
		for name, data := range map[string][]byte{"status-login.png": loginShot, "status-page.png": pageShot} {
			if err := os.WriteFile(filepath.Join(shots, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// The README's screenshots of the status page are committed PNG files.
func TestREADMEScreenshots(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"docs/status-page.png", "docs/status-login.png"} {
		if !strings.Contains(string(readme), "("+name+")") {
			t.Errorf("README does not show %s", name)
		}
		data, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s: not a PNG file (%v)", name, err)
		}
	}
}
