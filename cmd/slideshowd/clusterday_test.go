package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/scheduler"
)

// TestClusterDayShown: with redis_url, a daemon that used none of the day
// itself shows the cluster's day as the day used and left, with its own
// use labelled as its part: on the status page (header and lane bars, also
// in a real Chromium when one is installed), in /v1/usage's lanes, in
// /metrics, in `usage -addr`, and in `usage` reading its data directory
// with no daemon answering. Before, the page showed "day 0/150" and 0/50
// bars next to the cluster table's counts, and offline usage printed
// "today 0 used, 150 left".
func TestClusterDayShown(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	_, base := startEmulator(t, emulator.Faults{})
	const config = "log: {format: json, level: debug}\nclasses:\n  text: {rpm: 600, rpd: 1000}\n  image: {rpm: 20, rpd: 50}\n"
	env := func(dir string) map[string]string {
		vars := keyEnv(base, filepath.Join(dir, "data"))
		vars["SLIDESHOWD_REDIS_URL"] = srv.URL()
		return vars
	}
	// Daemon a makes 4 images, then stops cleanly (its unused day units
	// given back): the shared day counts are then what it sent.
	adir := t.TempDir()
	writeTestFile(t, filepath.Join(adir, "slideshowd.yaml"), config)
	a := startServe(t, adir, env(adir))
	code, body := a.call(t, "POST", "/v1/slideshows", "", `{"source": "Tides", "slides": [{"text": "The moon pulls the sea."}], "images": 4, "priority": "high"}`)
	var created struct{ ID string }
	if code != http.StatusAccepted || json.Unmarshal(body, &created) != nil {
		t.Fatalf("create: %d %s", code, body)
	}
	if st := a.waitJob(t, created.ID, "", nil); st.State != "done" {
		t.Fatalf("job on a: %+v", st)
	}
	a.stop(t)

	// Daemon b, fresh: none of the day is its own.
	bdir := t.TempDir()
	writeTestFile(t, filepath.Join(bdir, "slideshowd.yaml"), config)
	b := startServe(t, bdir, env(bdir))
	// b reads the shared day counts before its dispatchers start (and
	// logs it); a stopped, they stay as they are.
	b.waitLog(t, "daily protection counts the cluster's day")
	code, body = b.call(t, "GET", "/v1/usage", "", "")
	var sum scheduler.Summary
	if code != http.StatusOK || json.Unmarshal(body, &sum) != nil || sum.Cluster == nil || sum.Cluster.Error != "" {
		t.Fatalf("GET /v1/usage: %d %s", code, body)
	}
	lanes := map[string]int{} // the cluster's count per image lane
	total := 0
	for _, l := range sum.Cluster.Lanes {
		if l.Class == "image" {
			lanes[l.Project] = l.DayUsed
			total += l.DayUsed
		}
	}
	var image scheduler.ClassSummary
	for _, c := range sum.Classes {
		if c.Name == "image" {
			image = c
		}
	}
	if total < 4 || image.ClusterDayUsed != total {
		t.Fatalf("b's image class: cluster day used %d, the cluster's lanes %v (sum %d, want at least the 4 images)", image.ClusterDayUsed, lanes, total)
	}
	if image.DayUsed != 0 || image.DayLimit != 150 || image.DayRemaining != 150-total {
		t.Errorf("b's image class: own day used %d, limit %d, remaining %d; want 0, 150, %d", image.DayUsed, image.DayLimit, image.DayRemaining, 150-total)
	}
	for _, l := range image.Lanes {
		if l.DayUsed != 0 || l.ClusterDayUsed != lanes[l.Project] {
			t.Errorf("/v1/usage lane image/%s: day_used %d, cluster_day_used %d; want 0 of its own and the cluster's %d", l.Project, l.DayUsed, l.ClusterDayUsed, lanes[l.Project])
		}
	}

	// The status page: the cluster's day first, b's own as its part.
	code, body = b.call(t, "GET", "/", "", "")
	page := string(body)
	head := fmt.Sprintf("day %d/150 used by the cluster (0 by this process) · %d left", total, 150-total)
	if code != http.StatusOK || !strings.Contains(page, head) {
		t.Errorf("status page: %d, want %q in\n%s", code, head, page)
	}
	for p, n := range lanes {
		cell := regexp.MustCompile(`(?s)<tr class="lane" data-project="` + p + `">.*?<td class="day"><meter [^>]*value="(\d+)">.*?<span class="num">(\d+)/50</span> <span class="muted own">\((\d+) by this process\)</span>`)
		_, imageLanes, _ := strings.Cut(page, `id="lanes-image"`)
		m := cell.FindStringSubmatch(imageLanes)
		if m == nil || m[1] != fmt.Sprint(n) || m[2] != fmt.Sprint(n) || m[3] != "0" {
			t.Errorf("status page: lane image/%s's day %q, want the bar and the number at the cluster's %d and 0 by this process", p, m, n)
		}
	}
	t.Run("chromium", func(t *testing.T) {
		ctx := browser(t)
		runBrowser(t, ctx, "open b's page", chromedp.Navigate("http://"+b.addr+"/"), chromedp.WaitVisible(chromedp.ID("cluster-lanes")))
		if h := get(t, ctx, "image header", chromedp.Text(chromedp.ID("head-image"))); !strings.Contains(h, head) {
			t.Errorf("image header %q, want %q", h, head)
		}
		if l := get(t, ctx, "image lanes", chromedp.Text(chromedp.ID("lanes-image"))); !strings.Contains(l, "today (cluster)") || !strings.Contains(l, "(0 by this process)") {
			t.Errorf("image lanes %q: want the cluster's day with this process's part", l)
		}
		cl := get(t, ctx, "cluster lanes", chromedp.Text(chromedp.ID("cluster-lanes")))
		for p, n := range lanes {
			if !strings.Contains(cl, fmt.Sprintf("%d/50", n)) || !strings.Contains(cl, p) {
				t.Errorf("cluster lanes %q: want %s at %d/50", cl, p, n)
			}
		}
	})

	// /metrics: the cluster's day and what it leaves.
	code, body = b.call(t, "GET", "/metrics", "", "")
	metrics := string(body)
	for _, want := range []string{fmt.Sprintf("slideshowd_cluster_day_used{class=\"image\"} %d\n", total),
		fmt.Sprintf("slideshowd_day_remaining{class=\"image\"} %d\n", 150-total), "slideshowd_day_used{class=\"image\"} 0\n"} {
		if code != http.StatusOK || !strings.Contains(metrics, want) {
			t.Errorf("/metrics: %d, no %q", code, want)
		}
	}
	for p, n := range lanes {
		if want := fmt.Sprintf("slideshowd_lane_day_remaining{class=\"image\",project=%q} %d\n", p, 50-n); !strings.Contains(metrics, want) {
			t.Errorf("/metrics: no %q", want)
		}
	}

	// usage asking b.
	r := runBin(t, bdir, env(bdir), "usage", "-addr", b.addr)
	want := fmt.Sprintf("today %d used by the cluster (0 by this process), %d left", total, 150-total)
	if r.code != 0 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "TODAY CLUSTER/LIMIT  BY THIS PROCESS") {
		t.Errorf("usage -addr: exit %d, want %q\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	// usage on b's data directory, no daemon answering: the same day, read
	// from Redis, with the data directory's own count as its part.
	b.stop(t)
	r = runBin(t, bdir, env(bdir), "usage", "-addr", "127.0.0.1:1")
	want = fmt.Sprintf("today %d used by the cluster (0 by this data directory), %d left", total, 150-total)
	if r.code != 0 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "BY THIS DATA DIRECTORY") {
		t.Errorf("usage from the data directory: exit %d, want %q\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	for p, n := range lanes {
		row := regexp.MustCompile(`(?m)^  ` + p + `\s+\S+\s+\d+/20\s+(\d+)/50\s+0\s`)
		if m := row.FindStringSubmatch(r.stdout); m == nil || m[1] != fmt.Sprint(n) {
			t.Errorf("usage from the data directory: lane %s: %q, want the cluster's %d/50 and 0 here\n%s", p, m, n, r.stdout)
		}
	}
}
