package bench

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/scheduler"
)

// TestDayPriority is scenario 6: a steady stream of low-priority image jobs
// at 1.5 times the image class's summed RPM for the first 10 minutes of the
// day, plus high-priority slideshows (an analysis, then 2 images) at 1, 3,
// 5, 7 and 9 minutes and at 2, 4, 6, 8 and 10 hours. Daily protection is on
// (the default: below high priority, nothing is dispatched once 90 % of the
// class's day is used).
func TestDayPriority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := dayScale()
		high := scheduler.PriorityHigh
		s := startAtMidnight(t, simConfig{Keys: keysIn(5, 5), Scale: sc, Protect: &high})
		day1 := bucket.NextMidnight(s.start, bucket.Pacific)
		stopSampling := s.sampleEvery(10 * time.Second)

		var mu sync.Mutex
		var lows, highs []*job
		var wg sync.WaitGroup
		perMin := 15 * sc.image.RPM / 2 // 1.5 x 5 lanes x RPM
		gap := time.Minute / time.Duration(perMin)
		wg.Go(func() {
			for i := range 10 * perMin {
				time.Sleep(time.Until(s.start.Add(time.Duration(i) * gap)))
				wg.Go(func() {
					j := s.call(t.Context(), imageClass, i, scheduler.PriorityLow)
					mu.Lock()
					lows = append(lows, j)
					mu.Unlock()
				})
			}
		})
		var arrivals []time.Duration
		for _, m := range []int{1, 3, 5, 7, 9} {
			arrivals = append(arrivals, time.Duration(m)*time.Minute)
		}
		for _, h := range []int{2, 4, 6, 8, 10} {
			arrivals = append(arrivals, time.Duration(h)*time.Hour)
		}
		for i, at := range arrivals {
			wg.Go(func() {
				time.Sleep(time.Until(s.start.Add(at)))
				ss := slideshow(i, scheduler.PriorityHigh)
				ss.Images = 2
				a, err := s.client.AnalyzeSlideshow(t.Context(), ss)
				if err != nil {
					t.Error(err)
					return
				}
				for _, p := range a.ImagePrompts {
					wg.Go(func() {
						j := &job{class: imageClass, priority: scheduler.PriorityHigh, called: time.Now()}
						_, j.err = s.client.GenerateImage(t.Context(), gemini.Prompt(p), gemini.ImageOptions{Priority: scheduler.PriorityHigh})
						j.ended = time.Now()
						mu.Lock()
						highs = append(highs, j)
						mu.Unlock()
					})
				}
			})
		}
		time.Sleep(30 * time.Minute)
		samples := stopSampling()
		wg.Wait()
		evs, reqs := s.rec.snapshot()

		for _, j := range append(append([]*job(nil), lows...), highs...) {
			if j.err != nil {
				t.Errorf("%v image call failed: %v", j.priority, j.err)
			}
		}
		// When the class became critical: the dispatch that used 90 % of its day.
		capacity := 5 * sc.image.RPD
		var critical time.Time
		n := 0
		waits := map[scheduler.Priority][]time.Duration{}
		var highPressure, highCalm []time.Duration
		lowPerMin := map[int]int{}
		lowAfterCritical, lowNextDay := 0, 0
		var firstLowNextDay time.Time
		for _, e := range eventsOf(evs, scheduler.EventDispatched, imageClass) {
			if e.Time.Before(day1) {
				n++
				if critical.IsZero() && 10*n >= 9*capacity {
					critical = e.Time
				}
			}
			if e.Attempt == 1 {
				waits[e.Priority] = append(waits[e.Priority], e.Waited)
				if e.Priority == scheduler.PriorityHigh {
					if e.Time.Sub(s.start) < time.Hour {
						highPressure = append(highPressure, e.Waited)
					} else {
						highCalm = append(highCalm, e.Waited)
					}
				}
			}
			if e.Priority == scheduler.PriorityLow {
				switch {
				case !e.Time.Before(day1):
					lowNextDay++
					if firstLowNextDay.IsZero() {
						firstLowNextDay = e.Time
					}
				case !critical.IsZero() && e.Time.After(critical):
					lowAfterCritical++
				default:
					lowPerMin[int(e.Time.Sub(s.start)/time.Minute)]++
				}
			}
		}
		if critical.IsZero() {
			t.Fatal("the image class never became critical: no pressure")
		}
		// Low priority progresses: dispatched in every minute until the
		// class is critical, held after it, resumed at the next midnight.
		for m := 0; m < int(critical.Sub(s.start)/time.Minute); m++ {
			if lowPerMin[m] == 0 {
				t.Errorf("no low-priority dispatch in minute %d, before the class became critical at %v", m, clock(critical.Sub(s.start)))
			}
		}
		if lowAfterCritical != 0 {
			t.Errorf("%d low-priority dispatches after the class became critical", lowAfterCritical)
		}
		if lowNextDay == 0 || !firstLowNextDay.Equal(day1) {
			t.Errorf("%d low-priority dispatches the next day, the first at %v; want them from midnight %v", lowNextDay, firstLowNextDay, day1)
		}
		for _, j := range highs {
			if !j.ended.Before(day1) {
				t.Errorf("a high-priority image ended at %v, after the day: the protected 10 %% should have served it", j.ended)
			}
		}
		if len(highs) != 2*len(arrivals) {
			t.Errorf("%d high-priority images, want %d", len(highs), 2*len(arrivals))
		}
		// A high job goes ahead of the low backlog (younger than 2 x Aging):
		// it waits at most for the next pacing token of some lane.
		interval := time.Minute / time.Duration(sc.image.RPM)
		for _, w := range highPressure {
			if w > interval {
				t.Errorf("a high-priority image waited %v behind low-priority work, more than one lane's pacing interval %v", w, interval)
			}
		}
		if percentile(waits[scheduler.PriorityHigh], 50) >= percentile(waits[scheduler.PriorityLow], 50) {
			t.Errorf("high priority waited %v (p50), low priority %v: priority made no difference",
				percentile(waits[scheduler.PriorityHigh], 50), percentile(waits[scheduler.PriorityLow], 50))
		}

		tb := table{header: []string{"image jobs", "n", "wait queued → dispatched p50", "p99", "max"}}
		row := func(name string, ws []time.Duration) {
			var m time.Duration
			for _, w := range ws {
				m = max(m, w)
			}
			tb.add(name, len(ws), dur(percentile(ws, 50)), dur(percentile(ws, 99)), dur(m))
		}
		row("high, during the pressure (first 10 min)", highPressure)
		row("high, later in the day (protected 10 %)", highCalm)
		row("low, all", waits[scheduler.PriorityLow])
		prog := table{header: []string{"low-priority jobs", "count"}}
		prog.add("arrived (00:00-00:10)", len(lows))
		prog.add(fmt.Sprintf("dispatched before the class became critical at %s", clock(critical.Sub(s.start))), len(waits[scheduler.PriorityLow])-lowNextDay)
		prog.add("dispatched after that, on the day", lowAfterCritical)
		prog.add(fmt.Sprintf("dispatched the next day, from %s", firstLowNextDay.In(bucket.Pacific).Format("15:04:05")), lowNextDay)
		var lowMin []string
		for m := 0; m < 15; m++ {
			lowMin = append(lowMin, fmt.Sprint(lowPerMin[m]))
		}
		prog.add("low-priority dispatches per minute, 00:00-00:15", fmt.Sprint(lowMin))
		printReport(t, "Scenario 6: priority under pressure (image class)", tb, prog)

		c := chart{title: fmt.Sprintf("Priority under pressure: image jobs queued (%s)", sc.name),
			xLabel: "minutes after Pacific midnight", yLabel: "jobs queued", dx: 1}
		if len(samples) > 1 {
			c.dx = samples[1].at.Sub(samples[0].at).Minutes()
		}
		hs, ls := series{name: "high"}, series{name: "low"}
		for _, x := range samples {
			hs.ys = append(hs.ys, float64(x.high[imageClass]))
			ls.ys = append(ls.ys, float64(x.low[imageClass]))
		}
		c.series = []series{ls, hs}
		writePlot(t, plotName("priority", "queue"), c)
		_ = reqs
	})
}
