package gemini

import (
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// firstLate writes the first request it carries late by delay (it waits,
// reports the write to the request's trace as http.Transport does, then
// hands it to the emulator, which counts it on arrival); the others at once.
type firstLate struct {
	base  http.RoundTripper
	delay time.Duration
	n     atomic.Int64
}

func (f *firstLate) RoundTrip(req *http.Request) (*http.Response, error) {
	if f.n.Add(1) == 1 {
		time.Sleep(f.delay)
	}
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.WroteRequest != nil {
		tr.WroteRequest(httptrace.WroteRequestInfo{})
	}
	return f.base.RoundTrip(req)
}

// TestLateWriteAcrossMidnight (review 8, F1): the real genai client, the
// scheduler and the emulator at equal limits (RPM 10, RPD 2, margin
// 250 ms). A request dispatched 0.5 s before Pacific midnight is written
// 2 s late, after midnight: the API counts it on the new day. Two more
// requests come 2.5 s after midnight. Before the fix the lane counted the
// late one on the old day only, sent both at once, and the new day got 3
// arrivals and a per-day 429 (which exhausts the lane until the next
// midnight); now the late write charges the new day too: one is sent, the
// other waits for the next day, and no day gets more than RPD.
func TestLateWriteAcrossMidnight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { lateAcrossMidnight(t, 3*time.Second) })
}

// TestInFlightAcrossMidnight (gap 1 of the midnight charge): as
// TestLateWriteAcrossMidnight, but the two more requests come 0.5 s after
// midnight, while the late one is still being written (its write reported
// 1.5 s after midnight). The request in flight at midnight holds one
// provisional unit of the new day, so one of the two is sent then, the
// other the next day, and no day gets more than RPD. Before, both were sent
// at once (the lane did not know of the late write yet): 3 arrivals on the
// new day and a per-day 429.
func TestInFlightAcrossMidnight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { lateAcrossMidnight(t, time.Second) })
}

// lateAcrossMidnight runs the midnight tests: one request dispatched 0.5 s
// before Pacific midnight and written 2 s late, two more after, from the
// first's dispatch (RPD 2, RPM 10).
func lateAcrossMidnight(t *testing.T, after time.Duration) {
	const rpd = 2
	r := newLateWriteRig(t, 10, rpd)
	c := r.client(t, &firstLate{base: r.emu.Transport(), delay: 2 * time.Second})
	midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
	time.Sleep(time.Until(midnight.Add(-500 * time.Millisecond)))
	var wg sync.WaitGroup
	startAnalyses(t, &wg, c, 1)
	time.Sleep(after)
	startAnalyses(t, &wg, c, 2)
	wg.Wait()

	stats := r.emu.Stats()
	perDay := make(map[string]int)
	for _, at := range stats.Sent[r.lane] {
		perDay[bucket.Day(at, bucket.Pacific)]++
	}
	newDay := bucket.Day(midnight, bucket.Pacific)
	t.Logf("arrivals %v; per Pacific day %v; 429s %v", stats.Sent[r.lane], perDay, stats.RateLimited)
	if n := stats.RateLimited[emulator.QuotaRequestsPerDay]; n != 0 {
		t.Errorf("%d per-day 429s", n)
	}
	for day, n := range perDay {
		if n > rpd {
			t.Errorf("%d requests reached the API on the Pacific day %s, RPD %d", n, day, rpd)
		}
	}
	if perDay[newDay] != rpd {
		t.Errorf("%d requests on the new day %s, want %d (the late one and one more)", perDay[newDay], newDay, rpd)
	}
}
