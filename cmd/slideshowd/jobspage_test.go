package main

import (
	"net/url"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/internal/pipeline"
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
		printJobs(&b, pipeline.Page{Next: "NEXT"}, tc.q)
		got := b.String()[strings.Index(b.String(), "more:"):]
		if got != tc.want {
			t.Errorf("query %v: printed %q, want %q", tc.q, got, tc.want)
		}
	}
	var b strings.Builder
	printJobs(&b, pipeline.Page{}, url.Values{"limit": {"1"}})
	if strings.Contains(b.String(), "more:") {
		t.Errorf("last page printed a next page: %q", b.String())
	}
}
