package main

import (
	"strings"
	"testing"
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
