package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// lanesOf runs `slideshowd lanes -json` with args and returns the lanes.
func lanesOf(t *testing.T, dir string, vars map[string]string, args ...string) []laneRow {
	t.Helper()
	r := runBin(t, dir, vars, append([]string{"lanes", "-json"}, args...)...)
	var ll struct{ Lanes []laneRow }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ll) != nil || len(ll.Lanes) == 0 {
		t.Fatalf("lanes -json %v: exit %d\n%s\n%s", args, r.code, r.stdout, r.stderr)
	}
	return ll.Lanes
}

// createTides creates, through d, a slideshow of one slide with one image
// and returns its job's id.
func (d *daemonProc) createTides(t *testing.T) string {
	t.Helper()
	code, body := d.call(t, "POST", "/v1/slideshows", testToken, `{"source": "Tides", "slides": [{"text": "The moon pulls the sea."}], "images": 1}`)
	var created struct{ ID string }
	if code != http.StatusAccepted || json.Unmarshal(body, &created) != nil {
		t.Fatalf("create: %d %s", code, body)
	}
	return created.ID
}

// stoppedLanes returns the lanes that are stopped, as "class/project: reason".
func stoppedLanes(lanes []laneRow) []string {
	var out []string
	for _, l := range lanes {
		if l.Stopped != "" {
			out = append(out, l.Class+"/"+l.Project+": "+l.Stopped)
		}
	}
	return out
}

// A project without quota on the image model (`slideshowd emulate
// -no-quota`): the first image request stops its lane, `slideshowd lanes`
// shows it stopped with the reason, `lanes resume` puts it back into
// service (through the daemon, and on the data directory when none
// runs), durably, and the resumed lane sends to the API again.
func TestLanesCommand(t *testing.T) {
	dir := t.TempDir()
	_, vars := startEmulate(t, "-keys", "1", "-image-rpm", "600", "-seed", "5", "-no-quota", "key1:image")
	vars["SLIDESHOWD_DATA"] = filepath.Join(dir, "data")
	vars["SLIDESHOWD_TOKEN"] = testToken
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	imageRequests := func() int {
		return requestsBy(emulatorStatsAt(t, vars["GEMINI_BASE_URL"]), "key1", emulator.DefaultImageModel)
	}
	d := startServe(t, dir, vars)
	addr := []string{"-addr", d.addr}
	id := d.createTides(t)
	if st := d.waitJob(t, id, testToken, nil); st.State != "failed" {
		t.Fatalf("job %+v, want failed: its only image lane has no quota", st)
	}
	if n := imageRequests(); n != 1 {
		t.Fatalf("the API saw %d image requests, want 1", n)
	}
	want := []string{"image/key1: " + scheduler.ReasonNoQuota}
	if got := stoppedLanes(lanesOf(t, dir, vars, addr...)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stopped lanes %q, want %q", got, want)
	}
	r := runBin(t, dir, vars, append([]string{"lanes"}, addr...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "lanes from the running daemon") || !strings.Contains(r.stdout, "stopped: "+scheduler.ReasonNoQuota) ||
		!strings.Contains(r.stdout, "slideshowd lanes resume CLASS PROJECT") {
		t.Fatalf("lanes: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// Refused: no token, unknown class or project, wrong arguments.
	if code, body := d.call(t, "POST", "/v1/lanes/image/key1/resume", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("resume without the token: %d %s", code, body)
	}
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"resume", "video", "key1"}, exitFailed, `class "video" not found`},
		{[]string{"resume", "image", "key9"}, exitFailed, `class "image" has no lane of project "key9"`},
		{[]string{"resume", "image"}, exitBadArgs, "slideshowd lanes resume: want 2 argument(s), got 1"},
		{[]string{"frobnicate"}, exitBadArgs, `unknown sub-command "frobnicate"`},
	} {
		r := runBin(t, dir, vars, append(append([]string{"lanes"}, c.args...), addr...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.stderr) {
			t.Errorf("lanes %v: exit %d %q, want %d %q", c.args, r.code, r.stderr, c.code, c.stderr)
		}
	}
	if got := stoppedLanes(lanesOf(t, dir, vars, addr...)); len(got) != 1 {
		t.Fatalf("stopped lanes %q after refused resumes, want the one", got)
	}

	r = runBin(t, dir, vars, append([]string{"lanes", "resume", "image", "key1"}, addr...)...)
	if wantOut := fmt.Sprintf("lane key1 of image resumed (the running daemon at http://%s)\n", d.addr); r.code != 0 || r.stdout != wantOut {
		t.Fatalf("lanes resume: exit %d %q %s, want %q", r.code, r.stdout, r.stderr, wantOut)
	}
	if got := stoppedLanes(lanesOf(t, dir, vars, addr...)); len(got) != 0 {
		t.Fatalf("stopped lanes %q after resume", got)
	}
	// The resumed lane serves: the retried job's image reaches the API,
	// which still says limit 0, and the lane stops again.
	if code, body := d.call(t, "POST", "/v1/slideshows/"+id+"/retry", testToken, ""); code != http.StatusAccepted {
		t.Fatalf("retry: %d %s", code, body)
	}
	if st := d.waitJob(t, id, testToken, nil); st.State != "failed" {
		t.Fatalf("retried job %+v, want failed", st)
	}
	if n := imageRequests(); n != 2 {
		t.Fatalf("the API saw %d image requests after the resume, want 2", n)
	}
	d.stop(t)

	// No daemon: the data directory, where the stop was stored.
	off := []string{"-addr", "127.0.0.1:1"}
	if got := stoppedLanes(lanesOf(t, dir, vars, off...)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stopped lanes on the data directory %q, want %q", got, want)
	}
	r = runBin(t, dir, vars, append([]string{"lanes", "resume", "image", "key1", "-json"}, off...)...)
	var ans laneAnswer
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ans) != nil || ans.Class != "image" || ans.Project != "key1" || ans.Lane == nil || ans.Lane.Stopped != "" {
		t.Fatalf("lanes resume on the data directory: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, dir, vars, append([]string{"lanes"}, off...)...); r.code != 0 || !strings.Contains(r.stdout, "lanes from the data directory") ||
		strings.Contains(r.stdout, "stopped") {
		t.Fatalf("lanes on the data directory after resume: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The resume is stored: a new daemon starts with the lane in service.
	d2 := startServe(t, dir, vars)
	if got := stoppedLanes(lanesOf(t, dir, vars, "-addr", d2.addr)); len(got) != 0 {
		t.Fatalf("stopped lanes %q after a restart", got)
	}
	if strings.Contains(d.logs()+d2.logs(), vars["GEMINI_API_KEYS"]) {
		t.Fatal("a secret in the logs")
	}
}
