package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/internal/pipeline"
)

// TestBatchArgumentsSayWhatIsWrong: batch without -out, without a file or
// with two files prints which, then the usage (exit 2); before, the usage
// alone.
func TestBatchArgumentsSayWhatIsWrong(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // the first line of stderr
	}{
		{[]string{"batch", "b1.json"}, "slideshowd batch: missing -out DIR, the output directory (required unless -dry-run)"},
		{[]string{"batch", "-out", "out"}, "slideshowd batch: missing FILE.json, the batch file"},
		{[]string{"batch", "a.json", "b.json", "-out", "out"}, `slideshowd batch: unexpected argument "b.json": one batch file at a time`},
	} {
		r := runBin(t, t.TempDir(), nil, tt.args...)
		first, rest, _ := strings.Cut(r.stderr, "\n")
		if r.code != exitBadArgs || first != tt.want || !strings.HasPrefix(rest, "Usage: slideshowd batch FILE.json -out DIR") {
			t.Errorf("%v: exit %d, stderr\n%s\nwant %q then the usage", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

// TestJobsLimitRange: -limit takes what the API's limit takes (1..500); 0
// listed a default page where ?limit=0 is a 400, and 501 was cut to 500 on
// the data directory where the API refuses it. Refused before anything is
// asked (no daemon needed).
func TestJobsLimitRange(t *testing.T) {
	for _, n := range []int{0, -1, pipeline.MaxPageSize + 1} {
		r := runBin(t, t.TempDir(), nil, "jobs", "-limit", fmt.Sprint(n), "-addr", "127.0.0.1:1")
		want := fmt.Sprintf("slideshowd jobs: -limit %d: want 1..%d (leave it out for %d)\n", n, pipeline.MaxPageSize, pipeline.DefaultPageSize)
		if r.code != exitBadArgs || r.stderr != want {
			t.Errorf("-limit %d: exit %d, stderr %q; want 2 and %q", n, r.code, r.stderr, want)
		}
	}
}

// TestLogDurationsAreStrings: a duration in a log line says its unit
// ("cooldown":"20s"); zerolog's default wrote float milliseconds
// ("cooldown":20000) under names without a unit.
func TestLogDurationsAreStrings(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(env{stdout: &buf, stderr: &buf}, config.Log{Format: "json", Level: "info"}, zerolog.InfoLevel)
	log.Info().Dur("cooldown", 20*time.Second).Dur("duration", 1500*time.Microsecond).Msg("lane cooling down")
	if s := buf.String(); !strings.Contains(s, `"cooldown":"20s"`) || !strings.Contains(s, `"duration":"1.5ms"`) {
		t.Errorf("log line %s: want \"cooldown\":\"20s\" and \"duration\":\"1.5ms\"", s)
	}
}

// TestServePageRefreshRange: -page-refresh is 0 (never) or whole seconds; a
// negative value meant never and 1500ms became 1s, without a word. Refused
// before the config is read (no daemon starts).
func TestServePageRefreshRange(t *testing.T) {
	for _, tt := range []struct{ arg, want string }{
		{"-5s", "slideshowd serve: -page-refresh -5s: must not be negative (0: never)\n"},
		{"1500ms", "slideshowd serve: -page-refresh 1.5s: want whole seconds (1s, 5s, 1m; 0: never): the page reloads in seconds\n"},
		{"300ms", "slideshowd serve: -page-refresh 300ms: want whole seconds (1s, 5s, 1m; 0: never): the page reloads in seconds\n"},
	} {
		r := runBin(t, t.TempDir(), nil, "serve", "-page-refresh", tt.arg) // no keys: the old code stopped at the config
		if r.code != exitBadArgs || r.stderr != tt.want {
			t.Errorf("-page-refresh %s: exit %d, stderr %q; want 2 and %q", tt.arg, r.code, r.stderr, tt.want)
		}
	}
}
