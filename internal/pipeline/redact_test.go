package pipeline

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/internal/testutil"
)

// A key pasted into a slideshow's source is not logged, nor is a
// configured secret, nor a URL's user information; the source is cut.
func TestSourceRedactedInLogs(t *testing.T) {
	var buf testutil.Buffer
	log := zerolog.New(&buf)
	h := newHarness(t, setup{logger: &log, secrets: []string{"configured-secret"}})
	const key = "AIzaSyA1234567890abcdefghijklmnopqrstuv"
	req := request(1)
	req.Source = "see " + key + " and configured-secret at http://u:pw@host/ " + strings.Repeat("z", 500)
	id, err := h.p.Submit(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	h.wait(id)
	h.stop()
	out := buf.String()
	if !strings.Contains(out, `"source":"see [REDACTED] and [REDACTED] at http://[REDACTED]@host/ z`) {
		t.Fatalf("source not logged as expected:\n%s", out)
	}
	for _, bad := range []string{key, "configured-secret", "u:pw", strings.Repeat("z", 100)} {
		if strings.Contains(out, bad) {
			t.Errorf("log shows %q:\n%s", bad, out)
		}
	}
}
