package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// TestDayFaults is scenario 4: 20 % of answers are 503, image calls take
// 2-20 s, k5 of five keys is invalid, and k4's project is reported leaked
// five minutes into the day, while 110 % of the day's capacity is queued.
func TestDayFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keys := keysIn(5, 5)
		keys[4].Invalid = true
		imageLatency := emulator.UniformLatency(2*time.Second, 20*time.Second)
		const maxAttempts = 5
		sc := dayScale()
		s := startAtMidnight(t, simConfig{
			Keys:  keys,
			Scale: sc,
			Faults: emulator.Faults{
				Rate503: 0.2,
				Latency: func(model string, r *rand.Rand) time.Duration {
					if model == imageModel {
						return imageLatency(model, r)
					}
					return 0
				},
			},
			// Little's law: 5 lanes x RPM/60 per second x 20 s of latency
			// must fit in the pool, or the pool, not the quota, bounds
			// throughput.
			Concurrency: map[string]int{imageClass: max(8, 5*sc.image.RPM*20/60+8)},
			MaxAttempts: maxAttempts,
		})
		leakAt := s.start.Add(5 * time.Minute)
		var lwg sync.WaitGroup
		dw := overbook(t, s, 5, 1.1, func() {
			lwg.Go(func() {
				time.Sleep(time.Until(leakAt))
				if err := s.emu.SetLeaked("k4", true); err != nil {
					t.Error(err)
				}
			})
		})
		lwg.Wait()
		evs, reqs := s.rec.snapshot()
		day1 := bucket.NextMidnight(s.start, bucket.Pacific)

		// No job lost: each ended, done or failed after its retry budget of 503s.
		jobs, failed := 0, 0
		for class, js := range dw.jobs {
			for _, j := range js {
				jobs++
				if j == nil {
					t.Fatalf("%s: a call never ran", class)
				}
				if j.err != nil {
					failed++
					if !errors.Is(j.err, scheduler.ErrRetriesExhausted) || !strings.Contains(j.err.Error(), "503") {
						t.Errorf("%s: call failed other than by its retry budget of 503s: %v", class, j.err)
					}
				}
			}
		}
		for _, c := range s.sched.Summary().Classes {
			if n := c.QueuedHigh + c.QueuedNormal + c.QueuedLow + c.Delayed + c.Running; n != 0 {
				t.Errorf("%s: %d jobs still held after every call ended", c.Name, n)
			}
		}
		checkWaitedForNextDay(t, s, dw)

		// Retries within budget.
		transient := map[uint64]int{}
		attempts := map[uint64]int{}
		for _, e := range evs {
			switch {
			case e.Kind == scheduler.EventFinished && e.Outcome == "transient":
				transient[e.JobID]++
			case e.Kind == scheduler.EventDispatched:
				attempts[e.JobID] = max(attempts[e.JobID], e.Attempt)
			}
		}
		hist := make([]int, 6)
		maxTries := 0
		for id, n := range attempts {
			hist[min(n, 6)-1]++
			maxTries = max(maxTries, n)
			if transient[id] > maxAttempts || n > 4*maxAttempts {
				t.Errorf("job %d: %d attempts, %d transient failures; budget %d transient, %d in all", id, n, transient[id], maxAttempts, 4*maxAttempts)
			}
		}

		// No request on a bad key after its first answer.
		after := func(key string, bad func(request) bool) (first time.Time, total, later int) {
			for _, r := range reqs {
				if r.key == key && bad(r) && (first.IsZero() || r.end.Before(first)) {
					first = r.end
				}
			}
			for _, r := range reqs {
				if r.key != key || first.IsZero() || r.at.Before(first) {
					continue
				}
				total++
				if r.at.After(first) {
					later++
				}
			}
			return first, total, later
		}
		invalidAt, invalidN, invalidLater := after("k5", func(request) bool { return true })
		leakedAt, leakedN, leakedLater := after("k4", status(403))
		if invalidAt.IsZero() || invalidLater != 0 {
			t.Errorf("invalid key k5: first answer at %v, %d requests after it", invalidAt, invalidLater)
		}
		if leakedAt.IsZero() || leakedAt.Before(leakAt) || leakedLater != 0 {
			t.Errorf("leaked key k4: first 403 at %v (leaked at %v), %d requests after it", leakedAt, leakAt, leakedLater)
		}
		disabled := map[string]string{}
		for _, e := range eventsOf(evs, scheduler.EventKeyDisabled, "") {
			disabled[e.KeyID] = e.Reason
		}
		if len(disabled) != 2 || disabled["k4"] == "" || disabled["k5"] == "" {
			t.Errorf("disabled keys %v, want k4 and k5", disabled)
		}

		// Healthy lanes (p1-p3) send their whole day at full rate.
		win := maxWindow(reqs)
		keyTable := table{title: "Per key, on the day", header: []string{"key", "state", "class", "sent / RPD", "200", "503", "400 / 403", "429", "max sent in any 60 s", "day's requests sent by"}}
		for _, k := range keys {
			for _, class := range []string{textClass, imageClass} {
				limits := sc.text
				if class == imageClass {
					limits = sc.image
				}
				onKey := func(code int) func(request) bool {
					return func(r request) bool { return r.key == k.ID && (code == 0 || r.status == code) }
				}
				sent := countRequests(reqs, class, s.start, day1, onKey(0))
				var last time.Duration
				for _, r := range reqs {
					if r.key == k.ID && r.class == class && r.at.Before(day1) {
						last = max(last, r.at.Sub(s.start))
					}
				}
				state := "healthy"
				switch k.ID {
				case "k4":
					state = "leaked at 00:05"
				case "k5":
					state = "invalid"
				}
				keyTable.add(k.ID, state, class, fmt.Sprintf("%d / %d", sent, limits.RPD),
					countRequests(reqs, class, s.start, day1, onKey(200)), countRequests(reqs, class, s.start, day1, onKey(503)),
					countRequests(reqs, class, s.start, day1, onKey(400))+countRequests(reqs, class, s.start, day1, onKey(403)),
					countRequests(reqs, class, s.start, day1, onKey(429)), win[laneID{class, k.Project}], clock(last))
				if state == "healthy" && (sent != limits.RPD || win[laneID{class, k.Project}] != limits.RPM) {
					t.Errorf("healthy %s %s: sent %d of its RPD %d, at most %d in 60 s of RPM %d: faults elsewhere slowed it",
						k.ID, class, sent, limits.RPD, win[laneID{class, k.Project}], limits.RPM)
				}
			}
		}
		if n := countRequests(reqs, textClass, s.start, day1.AddDate(0, 0, 7), status(429)) + countRequests(reqs, imageClass, s.start, day1.AddDate(0, 0, 7), status(429)); n != 0 {
			t.Errorf("%d 429s", n)
		}
		var capWait []string
		for _, class := range []string{textClass, imageClass} {
			limits := sc.text
			if class == imageClass {
				limits = sc.image
			}
			cw, err := capacityWaits(evs, class, limits, 0, s.rec.project, s.start)
			if err != nil {
				t.Fatal(err)
			}
			if cw.early != 0 {
				t.Errorf("%s: %d dispatches before the lane's quota allowed one", class, cw.early)
			}
			capWait = append(capWait, fmt.Sprintf("%s %s / %s", class, dur(percentile(cw.waits, 50)), dur(percentile(cw.waits, 99))))
		}
		sum := table{header: []string{"calls", "done", "failed after 5 × 503 (budget)", "lost", "attempts per job: 1 / 2 / 3 / 4 / 5 / 6+",
			"requests on k5 (invalid) at / after its first answer", "requests on k4 at / after its first 403", "capacity free → dispatched p50 / p99"}}
		sum.add(jobs, jobs-failed, failed, 0, fmt.Sprintf("%d / %d / %d / %d / %d / %d", hist[0], hist[1], hist[2], hist[3], hist[4], hist[5]),
			fmt.Sprintf("%d / %d", invalidN, invalidLater), fmt.Sprintf("%d / %d", leakedN, leakedLater), strings.Join(capWait, "; "))
		printReport(t, "Scenario 4: faults (20 % 503, image latency 2-20 s, one invalid key, one project leaked at 00:05)", sum, keyTable)
	})
}

// clock formats a duration after midnight as a time of day.
func clock(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}
