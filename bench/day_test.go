package bench

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/scheduler"
)

// The simulated-day scenarios of issue 6. Each runs the real stack in one
// synctest bubble from a Pacific midnight and asserts its bounds; with
// -report it prints its tables and writes its plots (README.md).

// dayWork is a day's worth of queued calls per class, more than the day allows.
type dayWork struct {
	jobs map[string][]*job
	// queuedAtEnd is what the scheduler held queued one second before the
	// next midnight, and dayRemaining what it had left of the day then.
	queuedAtEnd, dayRemaining map[string]int
	atEnd                     scheduler.Summary
	samples                   []sample
}

// overbook queues factor times the day's capacity of both classes (capacity:
// lanes x RPD) through the client, checks one second before the next Pacific
// midnight that what is left waits for the next day because every lane has
// used its day, and returns when every call has ended.
func overbook(t *testing.T, s *sim, lanes int, factor float64, during func()) dayWork {
	t.Helper()
	sc := s.cfg.Scale
	n := map[string]int{
		textClass:  int(float64(lanes*sc.text.RPD) * factor),
		imageClass: int(float64(lanes*sc.image.RPD) * factor),
	}
	dw := dayWork{jobs: map[string][]*job{}, queuedAtEnd: map[string]int{}, dayRemaining: map[string]int{}}
	stopSampling := s.sampleEvery(10 * time.Second)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, class := range []string{textClass, imageClass} {
		wg.Go(func() {
			jobs := s.batch(t.Context(), class, n[class], sc.callers, scheduler.PriorityNormal)
			mu.Lock()
			dw.jobs[class] = jobs
			mu.Unlock()
		})
	}
	if during != nil {
		during()
	}
	time.Sleep(30*time.Minute - time.Since(s.start))
	dw.samples = stopSampling()
	day1 := bucket.NextMidnight(s.start, bucket.Pacific)
	time.Sleep(time.Until(day1.Add(-time.Second)))
	dw.atEnd = s.sched.Summary()
	for _, c := range dw.atEnd.Classes {
		dw.queuedAtEnd[c.Name] = c.QueuedHigh + c.QueuedNormal + c.QueuedLow + c.Delayed
		dw.dayRemaining[c.Name] = c.DayRemaining
	}
	wg.Wait()
	return dw
}

// classReport is the per-class line of a saturation table, with its checks.
type classReport struct {
	class        string
	limits       bucket.Limits
	lanes        int
	capacity     int // the day's capacity of the lanes slideshowd could use
	calls        int // answered 200 on the day
	sent         int // requests sent on the day, whatever the answer
	tooMany      int // 429s answered, from the request log
	emuTooMany   int // 429s the emulator counted
	maxWin       int // most requests sent on one lane in any 60 s window
	maxWinLane   laneID
	emuMaxWin    int // the emulator's own count (admitted requests, Spend included)
	waits        capacityWait
	drained      time.Duration // from midnight to the last call of the day
	nextDayCalls int
}

func (s *sim) classReport(t *testing.T, class string, lanes int, evs []recEvent, reqs []request) classReport {
	t.Helper()
	limits, model := s.cfg.Scale.text, textModel
	if class == imageClass {
		limits, model = s.cfg.Scale.image, imageModel
	}
	day1 := bucket.NextMidnight(s.start, bucket.Pacific)
	cr := classReport{class: class, limits: limits, lanes: lanes, capacity: lanes * limits.RPD}
	cr.calls = countRequests(reqs, class, s.start, day1, status(200))
	cr.sent = countRequests(reqs, class, s.start, day1, nil)
	cr.tooMany = countRequests(reqs, class, s.start, day1.AddDate(0, 0, 2), status(429))
	cr.nextDayCalls = countRequests(reqs, class, day1, day1.AddDate(0, 0, 1), status(200))
	for id, n := range maxWindow(reqs) {
		if id.class == class && n > cr.maxWin {
			cr.maxWin, cr.maxWinLane = n, id
		}
	}
	stats := s.emu.Stats()
	for k, n := range stats.MaxWindow {
		if k.Model == model {
			cr.emuMaxWin = max(cr.emuMaxWin, n)
		}
	}
	for k, n := range stats.Requests {
		if k.Model == model && k.Status == 429 {
			cr.emuTooMany += n
		}
	}
	for _, r := range reqs {
		if r.class == class && r.status == 200 && r.at.Before(day1) {
			cr.drained = max(cr.drained, r.at.Sub(s.start))
		}
	}
	var err error
	cr.waits, err = capacityWaits(evs, class, limits, s.cfg.Burst[class], s.rec.project, s.start)
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

func saturationTable(title string, crs ...classReport) table {
	tb := table{title: title, header: []string{"class", "lanes", "limits per lane", "calls on the day / capacity", "used",
		"429s", "max sent on a lane in any 60 s", "capacity free → dispatched p50 / p99 (n)", "day's quota used by", "calls next day"}}
	for _, c := range crs {
		tb.add(c.class, c.lanes, fmt.Sprintf("%d RPM, %d RPD", c.limits.RPM, c.limits.RPD),
			fmt.Sprintf("%d / %d", c.calls, c.capacity), pct(c.calls, c.capacity), c.tooMany,
			fmt.Sprintf("%d (limit %d)", c.maxWin, c.limits.RPM),
			fmt.Sprintf("%s / %s (%d)", dur(percentile(c.waits.waits, 50)), dur(percentile(c.waits.waits, 99)), len(c.waits.waits)),
			"00:"+fmt.Sprintf("%02d:%02d", int(c.drained.Minutes()), int(c.drained.Seconds())%60), c.nextDayCalls)
	}
	return tb
}

// checkSaturated asserts the saturation bounds on one class.
func checkSaturated(t *testing.T, c classReport) {
	t.Helper()
	if c.calls*100 < 99*c.capacity {
		t.Errorf("%s: %d calls answered on the day, %s of the capacity %d; want >= 99 %%", c.class, c.calls, pct(c.calls, c.capacity), c.capacity)
	}
	if c.tooMany != 0 || c.emuTooMany != 0 {
		t.Errorf("%s: the emulator answered %d 429s (its stats: %d), want 0", c.class, c.tooMany, c.emuTooMany)
	}
	if c.maxWin > c.limits.RPM || c.emuMaxWin > c.limits.RPM {
		t.Errorf("%s: lane %s sent %d requests in one 60 s window (emulator saw %d), limit %d", c.class, c.maxWinLane.project, c.maxWin, c.emuMaxWin, c.limits.RPM)
	}
	if c.waits.early != 0 {
		t.Errorf("%s: %d dispatches before the lane's quota allowed one", c.class, c.waits.early)
	}
}

// checkJobs asserts that every call ended without error.
func checkJobs(t *testing.T, dw dayWork) {
	t.Helper()
	for class, jobs := range dw.jobs {
		failed := 0
		for _, j := range jobs {
			if j == nil {
				t.Fatalf("%s: a call never ran", class)
			}
			if j.err != nil {
				if failed == 0 {
					t.Errorf("%s: call failed: %v", class, j.err)
				}
				failed++
			}
		}
		if failed > 0 {
			t.Errorf("%s: %d of %d calls failed", class, failed, len(jobs))
		}
	}
}

// checkWaitedForNextDay asserts that what was left one second before
// midnight was queued (no job failed for lack of quota) and that the day was
// used up.
func checkWaitedForNextDay(t *testing.T, s *sim, dw dayWork) {
	t.Helper()
	day1 := bucket.NextMidnight(s.start, bucket.Pacific)
	for class, jobs := range dw.jobs {
		left := 0
		for _, j := range jobs {
			if j.ended.After(day1.Add(-time.Second)) {
				left++
				if j.ended.Before(day1) {
					t.Errorf("%s: a call ended at %v, in the last second of the day", class, j.ended)
				}
			}
		}
		if want := min(left, s.cfg.Scale.callers); left == 0 || dw.queuedAtEnd[class] != want {
			t.Errorf("%s: %d calls ended after midnight; %d jobs were queued at 23:59:59, want %d", class, left, dw.queuedAtEnd[class], want)
		}
		for _, c := range dw.atEnd.Classes {
			if c.Name != class {
				continue
			}
			for _, l := range c.Lanes {
				// The reason each lane has for not serving the waiting jobs.
				if l.Enabled && l.DayUsed < l.DayLimit && !l.ExhaustedUntil.Equal(day1) {
					t.Errorf("%s: at 23:59:59 jobs waited while lane %s was enabled, not exhausted and had used %d of %d", class, l.Project, l.DayUsed, l.DayLimit)
				}
			}
		}
	}
}

func lanePlot(t *testing.T, s *sim, name, class string, reqs []request, minutes int) {
	t.Helper()
	pm := perMinute(reqs, class, s.start, minutes, status(200))
	var ps []string
	for p := range pm {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	c := chart{title: fmt.Sprintf("%s: %s calls answered per minute, per lane (%s)", name, class, s.cfg.Scale.name),
		xLabel: "minutes after Pacific midnight", yLabel: "calls per minute", x0: 0.5, dx: 1}
	for _, p := range ps {
		c.series = append(c.series, series{name: p, ys: pm[p]})
	}
	writePlot(t, plotName(name, class+"-lanes"), c)
}

func queuePlot(t *testing.T, s *sim, name string, samples []sample, classes ...string) {
	t.Helper()
	c := chart{title: fmt.Sprintf("%s: jobs queued (%s)", name, s.cfg.Scale.name),
		xLabel: "minutes after Pacific midnight", yLabel: "jobs queued", dx: 1}
	if len(samples) > 1 {
		c.x0 = samples[0].at.Sub(s.start).Minutes()
		c.dx = samples[1].at.Sub(samples[0].at).Minutes()
	}
	for _, class := range classes {
		sr := series{name: class}
		for _, x := range samples {
			sr.ys = append(sr.ys, float64(x.queued[class]))
		}
		c.series = append(c.series, sr)
	}
	writePlot(t, plotName(name, "queue"), c)
}

func plotName(scenario, what string) string {
	sc := "small"
	if *fullDay {
		sc = "day"
	}
	return fmt.Sprintf("%s-%s-%s.svg", scenario, what, sc)
}

func projectsOf(keys []simKey) int {
	ps := map[string]bool{}
	for _, k := range keys {
		if !k.Invalid {
			ps[k.Project] = true
		}
	}
	return len(ps)
}

// saturate is scenarios 1 and 2: keys spread over projects, the scheduler
// at the emulator's limits, 110 % of the day's capacity queued at midnight.
func saturate(t *testing.T, name, title string, keys []simKey) {
	synctest.Test(t, func(t *testing.T) {
		s := startAtMidnight(t, simConfig{Keys: keys, Scale: dayScale()})
		lanes := projectsOf(keys)
		dw := overbook(t, s, lanes, 1.1, nil)
		checkJobs(t, dw)
		checkWaitedForNextDay(t, s, dw)
		evs, reqs := s.rec.snapshot()
		text := s.classReport(t, textClass, lanes, evs, reqs)
		image := s.classReport(t, imageClass, lanes, evs, reqs)
		for _, c := range []classReport{text, image} {
			checkSaturated(t, c)
		}
		perKey := table{title: "Requests per key on the day (keys of a project share its lanes)", header: []string{"key", "project", "text", "image"}}
		day1 := bucket.NextMidnight(s.start, bucket.Pacific)
		for _, k := range keys {
			n := map[string]int{}
			for _, r := range reqs {
				if r.key == k.ID && r.at.Before(day1) {
					n[r.class]++
				}
			}
			perKey.add(k.ID, k.Project, n[textClass], n[imageClass])
			if n[textClass] == 0 || n[imageClass] == 0 {
				t.Errorf("key %s served text %d, image %d: keys of a project must share its lanes", k.ID, n[textClass], n[imageClass])
			}
		}
		printReport(t, title, saturationTable("", text, image), perKey)
		lanePlot(t, s, name, textClass, reqs, 20)
		lanePlot(t, s, name, imageClass, reqs, 20)
		queuePlot(t, s, name, dw.samples, textClass, imageClass)
	})
}

// TestDaySaturation is scenario 1: 5 keys in 5 projects.
func TestDaySaturation(t *testing.T) {
	saturate(t, "saturation", "Scenario 1: saturation, 5 keys in 5 projects", keysIn(5, 5))
}

// TestDaySharedProjects is scenario 2: 6 keys in 3 projects, 2 each.
func TestDaySharedProjects(t *testing.T) {
	saturate(t, "shared", "Scenario 2: shared projects, 6 keys in 3 projects", keysIn(6, 3))
}
