package main

import (
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// TestPrintJobsNextPageKeepsFilters: the command printed for the next page
// of `slideshowd jobs` repeats the listing's filters, so that running it as
// printed continues the same listing (it used to print only -cursor, which
// lists the next page of every job).
func TestPrintJobsNextPageKeepsFilters(t *testing.T) {
	for _, tc := range []struct {
		q    url.Values
		want string
	}{
		{url.Values{"state": {"done,failed"}, "priority": {"high"}, "since": {"2026-12-01T00:00:00Z"}, "limit": {"1"}, "cursor": {"old"}},
			"more: slideshowd jobs list -state done,failed -priority high -since 2026-12-01T00:00:00Z -limit 1 -cursor NEXT\n"},
		{url.Values{"since": {"24h"}}, "more: slideshowd jobs list -since 24h -cursor NEXT\n"},
		{url.Values{"state": {"queued generating"}}, "more: slideshowd jobs list -state 'queued generating' -cursor NEXT\n"},
		{url.Values{"state": {"it's"}}, `more: slideshowd jobs list -state 'it'\''s' -cursor NEXT` + "\n"},
		{url.Values{}, "more: slideshowd jobs list -cursor NEXT\n"},
	} {
		var b strings.Builder
		printJobs(&b, pipeline.Page{Next: "NEXT"}, nil, tc.q)
		got := b.String()[strings.Index(b.String(), "more:"):]
		if got != tc.want {
			t.Errorf("query %v: printed %q, want %q", tc.q, got, tc.want)
		}
	}
	// The -config and -addr it was run with are kept (a daemon on another
	// address, a config elsewhere).
	var g strings.Builder
	printJobs(&g, pipeline.Page{Next: "NEXT"}, []string{"-config", "/etc/my slideshowd.yaml", "-addr", "10.0.0.2:9090"}, url.Values{"limit": {"2"}})
	if want := "more: slideshowd jobs list -config '/etc/my slideshowd.yaml' -addr 10.0.0.2:9090 -limit 2 -cursor NEXT\n"; !strings.HasSuffix(g.String(), want) {
		t.Errorf("printed %q, want it to end with %q", g.String(), want)
	}
	var b strings.Builder
	printJobs(&b, pipeline.Page{}, nil, url.Values{"limit": {"1"}})
	if strings.Contains(b.String(), "more:") {
		t.Errorf("last page printed a next page: %q", b.String())
	}
}

// TestPrintJobsTable: the jobs table shows CREATED in Pacific time with its
// zone (as keys and the status page do; it was the machine's local time
// with no zone), and a job waiting for quota keeps its STATE cell short:
// its reason, however long, is on a line of its own under the table (it
// used to stretch the STATE column to the reason's length). The table is
// the README's example.
func TestPrintJobsTable(t *testing.T) {
	pst := func(hms string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05", "2026-12-01 "+hms, bucket.Pacific)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UTC() // as decoded from JSON
	}
	images := func(done, n int) []pipeline.ImageStatus {
		out := make([]pipeline.ImageStatus, n)
		for i := range out {
			out[i] = pipeline.ImageStatus{N: i + 1, State: pipeline.ImagePending}
			if i < done {
				out[i].State = pipeline.ImageDone
			}
		}
		return out
	}
	reason := "daily protection: image has used its critical share of today's quota; only high priority starts until 2026-12-02 00:00 PST"
	pg := pipeline.Page{Jobs: []pipeline.Status{
		{ID: "5d0e6a0b1c2d3e4f5a6b7c8d", State: pipeline.JobGenerating, Priority: "high", CreatedAt: pst("09:40:12"),
			Source: "q3-review.pptx", Images: images(2, 5)},
		{ID: "0c1f5d3e9a8b7c6d5e4f3a2b", State: pipeline.JobQueued, Priority: "normal", CreatedAt: pst("09:41:02"),
			Source: "How tides work", Images: images(0, 3), Wait: &scheduler.Wait{Class: "image", Kind: scheduler.WaitProtected, Reason: reason}},
	}}
	var b strings.Builder
	printJobs(&b, pg, nil, url.Values{})
	out := b.String()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(readme), "$ slideshowd jobs -state queued,generating -since 24h\n")
	if !ok {
		t.Fatal("README: no example of the jobs table")
	}
	example, _, _ = strings.Cut(example, "\n$ ")
	want := strings.Split(example, "\n")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !slices.Equal(lines, want) {
		t.Errorf("jobs table:\n%s\nthe README's:\n%s", out, strings.Join(want, "\n"))
	}
	if len(lines) < 3 || !strings.Contains(lines[1], " PST ") {
		t.Errorf("no Pacific time with its zone in %q", lines)
	}
	for _, l := range lines[:min(3, len(lines))] {
		if len(l) > 100 {
			t.Errorf("table line of %d characters: %q", len(l), l)
		}
	}
}
