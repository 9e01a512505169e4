package scheduler

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// slowCharges is a dayCharger (as store.Redis) whose ChargeDay takes slow[class]
// (a slow Redis round trip); it records when each class's charges arrived and
// how many units they held.
type slowCharges struct {
	*store.Memory
	slow  map[string]time.Duration
	mu    sync.Mutex
	at    map[string][]time.Time // class -> ChargeDay times (after the wait)
	units map[string]int         // class -> units charged
}

func newSlowCharges(slow map[string]time.Duration) *slowCharges {
	return &slowCharges{Memory: store.NewMemory(), slow: slow, at: map[string][]time.Time{}, units: map[string]int{}}
}

func (d *slowCharges) ChargeDay(ctx context.Context, day string, lane store.LaneID, n int) (int, error) {
	time.Sleep(d.slow[lane.Class])
	d.mu.Lock()
	d.at[lane.Class] = append(d.at[lane.Class], time.Now())
	d.units[lane.Class] += n
	d.mu.Unlock()
	return d.Memory.AddDaily(ctx, day, lane, n)
}

// since returns ts relative to m.
func since(ts []time.Time, m time.Time) []time.Duration {
	var out []time.Duration
	for _, t := range ts {
		out = append(out, t.Sub(m))
	}
	return out
}

// preChargeJob is a job of class submitted before (a duration) midnight
// whose request is written wrote after it.
type preChargeJob struct {
	class         string
	before, wrote time.Duration
}

// preChargeRun starts a scheduler on st with the classes, submits at each
// offset before midnight a job of the class whose request is written at the
// given offset after it, waits for them and returns the midnight.
func preChargeRun(t *testing.T, st *slowCharges, classes []ClassConfig, jobs []preChargeJob) time.Time {
	t.Helper()
	s, err := New(Config{Classes: classes, Keys: keys(1), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
	var hs []*Handle
	for _, j := range jobs {
		time.Sleep(time.Until(midnight.Add(-j.before)))
		h, err := s.Submit(context.Background(), Job{Class: j.class, Work: func(_ context.Context, l Lease) error {
			time.Sleep(time.Until(midnight.Add(j.wrote)))
			l.Wrote(time.Now())
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		if err := h.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Second)
	return midnight
}

// TestPreChargeClassesNotSerial: text and image each have a request in
// flight at their day's last margin (250 ms), written 1.5 s after midnight;
// text's ChargeDay takes 1 s. Image's unit of the new day reaches the shared
// count before midnight: the classes are charged in memory first and
// recorded at once, not one after the other (where image's PreCharge ran
// after midnight, found its lane rolled and skipped it: review10 R10-3).
func TestPreChargeClassesNotSerial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newSlowCharges(map[string]time.Duration{"text": time.Second})
		m := preChargeRun(t, st, []ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 100}, WindowMargin: 250 * time.Millisecond},
			{Name: "image", Limits: bucket.Limits{RPM: 10, RPD: 100}, WindowMargin: 250 * time.Millisecond},
		}, []preChargeJob{{"text", 500 * time.Millisecond, 1500 * time.Millisecond}, {"image", 500 * time.Millisecond, 1500 * time.Millisecond}})
		checkPreCharged(t, st, m, "image", 0, "before it", "text")
	})
}

// TestPreChargeAfterLateWake: image's margin is 2 s and its record takes 3 s,
// so the loop that pre-charges wakes for text's margin (250 ms) only 1 s
// after midnight (as a timer firing late on a loaded machine). Text's lane
// has not rolled yet, so its request still in flight (written 1.5 s after
// midnight) is charged and recorded then, as at the day's last instant, once,
// before its late write is reported; the old loop moved on to the next day
// and left it to that report.
func TestPreChargeAfterLateWake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newSlowCharges(map[string]time.Duration{"image": 3 * time.Second})
		m := preChargeRun(t, st, []ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 100}, WindowMargin: 250 * time.Millisecond},
			{Name: "image", Limits: bucket.Limits{RPM: 10, RPD: 100}, WindowMargin: 2 * time.Second},
		}, []preChargeJob{{"image", 2500 * time.Millisecond, 3 * time.Second}, {"text", 500 * time.Millisecond, 1500 * time.Millisecond}})
		checkPreCharged(t, st, m, "text", 1500*time.Millisecond, "before its write (1.5 s)", "image")
	})
}

// checkPreCharged logs when text's and image's ChargeDay calls came after
// midnight m, and fails the test unless class's new-day unit was charged
// once, one unit, strictly before m + by (when says that instant in the
// message), and other's new-day units are 1 (charged, at any time).
func checkPreCharged(t *testing.T, st *slowCharges, m time.Time, class string, by time.Duration, when, other string) {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	t.Logf("ChargeDay after midnight: text %v, image %v", since(st.at["text"], m), since(st.at["image"], m))
	if len(st.at[class]) != 1 || !st.at[class][0].Before(m.Add(by)) || st.units[class] != 1 {
		t.Errorf("%s's new-day unit charged %d times (%d units) at %v after midnight; want once, %s",
			class, len(st.at[class]), st.units[class], since(st.at[class], m), when)
	}
	if st.units[other] != 1 {
		t.Errorf("%s's new-day units %d, want 1", other, st.units[other])
	}
}
