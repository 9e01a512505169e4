package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/redistest"
)

// TestUsageOfflineReseeding: a daemon makes 4 images and stops cleanly,
// Redis loses the cluster's state (FLUSHALL), and `usage` on its data
// directory with no daemon answering reads the cluster from Redis: it says
// re-seeding (the data directory's counts were added to a state Redis no
// longer holds) and shows the image lanes' day at least the data
// directory's counts, with what Redis holds (0) in parentheses. Before, the
// cluster table read day 0 with nothing said.
func TestUsageOfflineReseeding(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	_, base := startEmulator(t, emulator.Faults{})
	const config = "log: {format: json, level: debug}\nclasses:\n  text: {rpm: 600, rpd: 1000}\n  image: {rpm: 20, rpd: 50}\n"
	dir := t.TempDir()
	vars := keyEnv(base, filepath.Join(dir, "data"))
	vars["SLIDESHOWD_REDIS_URL"] = srv.URL()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), config)
	a := startServe(t, dir, vars)
	code, body := a.call(t, "POST", "/v1/slideshows", "", `{"source": "Tides", "slides": [{"text": "The moon pulls the sea."}], "images": 4, "priority": "high"}`)
	var created struct{ ID string }
	if code != http.StatusAccepted || json.Unmarshal(body, &created) != nil {
		t.Fatalf("create: %d %s", code, body)
	}
	if st := a.waitJob(t, created.ID, "", nil); st.State != "done" {
		t.Fatalf("job: %+v", st)
	}
	a.stop(t)
	r := runBin(t, dir, vars, "usage", "-addr", "127.0.0.1:1")
	if r.code != 0 || strings.Contains(r.stdout, "re-seeding") || strings.Contains(r.stdout, "(Redis ") {
		t.Fatalf("usage before Redis lost its state: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	if err := rc.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, dir, vars, "usage", "-addr", "127.0.0.1:1")
	if r.code != 0 || !strings.Contains(r.stdout, "  re-seeding: Redis lost the cluster's state (restarted empty) and not every process has put its counts back;") {
		t.Fatalf("usage after Redis lost its state: exit %d, no re-seeding line\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The data directory's own part of a lane is labelled as such, not a
	// nameless process "(gone)" (newcomer11 N11-2).
	if strings.Contains(r.stdout, " (gone)") || !strings.Contains(r.stdout, "  this data directory  ") {
		t.Errorf("usage after Redis lost its state: want the data directory's part labelled, no process gone\n%s", r.stdout)
	}
	r = runBin(t, dir, vars, "usage", "-addr", "127.0.0.1:1", "-json")
	var sum struct {
		Cluster struct {
			Process   string `json:"process"`
			Reseeding bool   `json:"reseeding"`
			Lanes     []struct {
				Class        string `json:"class"`
				DayUsed      int    `json:"day_used"`
				RedisDayUsed *int   `json:"redis_day_used"`
				Processes    []struct {
					Process string `json:"process"`
					DayUsed int    `json:"day_used"`
				} `json:"processes"`
			} `json:"lanes"`
		} `json:"cluster"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sum) != nil || !sum.Cluster.Reseeding {
		t.Fatalf("usage -json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if sum.Cluster.Process != "this data directory" {
		t.Errorf("usage -json: cluster.process %q, want \"this data directory\"", sum.Cluster.Process)
	}
	images, own := 0, 0
	for _, l := range sum.Cluster.Lanes {
		if l.RedisDayUsed == nil || *l.RedisDayUsed != 0 {
			t.Errorf("lane %+v: want redis_day_used 0", l)
		}
		if l.Class == "image" {
			images += l.DayUsed
		}
		for _, p := range l.Processes {
			if p.Process != "this data directory" {
				t.Errorf("lane %s: process %q, want only the data directory's part", l.Class, p.Process)
			}
			if l.Class == "image" {
				own += p.DayUsed
			}
		}
	}
	if own < 4 {
		t.Errorf("the data directory's part of the image lanes %d, want at least the 4 images sent\n%s", own, r.stdout)
	}
	if images < 4 {
		t.Errorf("image lanes' day used %d, want at least the 4 images sent\n%s", images, r.stdout)
	}
}
