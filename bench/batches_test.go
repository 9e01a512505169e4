package bench

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// TestDayOldPlanBatches is scenario 5: the old plan's batches, 2 slideshows
// x 5 images and 5 slideshows x 10 images, each slideshow analysed (text)
// and then its images generated in parallel, on 5 keys in 5 projects at the
// published limits, with a fixed latency of 5 s per analysis and 10 s per
// image. The wall time is compared with two theoretical minima given the
// image RPM: the quotas' own (every image within the first 60 s window when
// they fit: one analysis plus one image latency) and a client sending at
// exactly the summed RPM, evenly spaced.
func TestDayOldPlanBatches(t *testing.T) {
	const (
		textLatency  = 5 * time.Second
		imageLatency = 10 * time.Second
		lanes        = 5
	)
	tb := table{header: []string{"batch", "image concurrency", "image burst", "images", "wall time (simulated)", "minimum: quotas", "minimum: even at the summed RPM", "wall / quota minimum", "image requests", "429s", "image capacity free → dispatched p50 / p99"}}
	// 0 is the scheduler's default: concurrency sized by Little's law under
	// the window (the summed RPM, 100, times the windows a 10 s call spans:
	// 1), burst RPM (20: a lane's whole minute at once). The other rows are
	// the baseline of the same run: the former defaults (8 workers, a burst
	// of one second's worth: 1 for image lanes), and steady-state Little's
	// law (100 images a minute x 10 s = 17 in flight, rounded up to 24).
	for _, b := range []struct{ slideshows, images, concurrency, burst int }{
		{2, 5, 0, 0}, {5, 10, 0, 0},
		{2, 5, 8, 1}, {5, 10, 8, 1}, {2, 5, 24, 1}, {5, 10, 24, 1}, {2, 5, 24, 20}, {5, 10, 24, 20},
	} {
		t.Run(fmt.Sprintf("%dx%d/concurrency=%d/burst=%d", b.slideshows, b.images, b.concurrency, b.burst), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := startSim(t, simConfig{Keys: keysIn(lanes, lanes), Scale: published, Concurrency: map[string]int{imageClass: b.concurrency},
					Burst: map[string]int{imageClass: b.burst}, Faults: emulator.Faults{
						Latency: func(model string, _ *rand.Rand) time.Duration {
							if model == imageModel {
								return imageLatency
							}
							return textLatency
						},
					}})
				start := time.Now()
				var wg sync.WaitGroup
				for i := range b.slideshows {
					wg.Go(func() {
						ss := slideshow(i, scheduler.PriorityNormal)
						ss.Images = b.images
						a, err := s.client.AnalyzeSlideshow(t.Context(), ss)
						if err != nil {
							t.Error(err)
							return
						}
						for _, p := range a.ImagePrompts {
							wg.Go(func() {
								if _, err := s.client.GenerateImage(t.Context(), gemini.Prompt(p), gemini.ImageOptions{}); err != nil {
									t.Error(err)
								}
							})
						}
					})
				}
				wg.Wait()
				wall := time.Since(start)
				n := b.slideshows * b.images
				perWindow := lanes * published.image.RPM
				quotaMin := textLatency + imageLatency + time.Duration((n-1)/perWindow)*time.Minute
				evenMin := textLatency + imageLatency + time.Duration(n-1)*time.Minute/time.Duration(perWindow)
				evs, reqs := s.rec.snapshot()
				cw, err := capacityWaits(evs, imageClass, published.image, b.burst, s.rec.project, start)
				conc := b.concurrency
				if conc == 0 {
					conc = perWindow // the default: the summed RPM, 10 s calls spanning one window
				}
				burst := b.burst
				if burst == 0 {
					burst = published.image.RPM
				}
				if err != nil {
					t.Fatal(err)
				}
				if cw.early != 0 {
					t.Errorf("%d image dispatches before the lane's quota allowed one", cw.early)
				}
				imgs := countRequests(reqs, imageClass, start, start.Add(time.Hour), nil)
				tooMany := countRequests(reqs, imageClass, start, start.Add(time.Hour), status(429)) +
					countRequests(reqs, textClass, start, start.Add(time.Hour), status(429))
				if imgs != n || tooMany != 0 {
					t.Errorf("%d image requests for %d images, %d 429s", imgs, n, tooMany)
				}
				// Each image lane is paced at RPM/60 per second: with enough
				// workers, the batch may not take longer than the even client
				// plus one pacing interval. With the default 8 workers, 10 s
				// of latency caps the class at 48 images a minute.
				enough := conc*int(time.Minute/imageLatency) >= perWindow
				if slack := time.Minute / time.Duration(published.image.RPM); enough && wall > evenMin+slack {
					t.Errorf("batch took %v, more than the even minimum %v plus one pacing interval %v", wall, evenMin, slack)
				}
				// With a burst of a whole minute and a worker per image, every
				// image that fits in the first window starts at once.
				if burst == published.image.RPM && conc >= n && wall != quotaMin {
					t.Errorf("batch took %v with a burst of %d, want the quotas' minimum %v", wall, burst, quotaMin)
				}
				if limit := time.Duration((n+conc-1)/conc) * imageLatency; !enough && wall < textLatency+limit {
					t.Errorf("batch took %v with %d workers, less than their bound %v", wall, conc, textLatency+limit)
				}
				// With no configuration, both batches at the quotas' minimum
				// (within 10 %).
				if b.concurrency == 0 && b.burst == 0 && wall.Seconds() > 1.1*quotaMin.Seconds() {
					t.Errorf("batch took %v with the defaults, more than 1.1 × the quotas' minimum %v", wall, quotaMin)
				}
				if got := s.sched.Summary().Classes[1].Concurrency; b.concurrency == 0 && got != conc {
					t.Errorf("default image concurrency %d, want %d (summed RPM x one window)", got, conc)
				}
				concS, burstS := fmt.Sprint(b.concurrency), fmt.Sprint(b.burst)
				if b.concurrency == 0 {
					concS = fmt.Sprintf("%d (default)", conc)
				}
				if b.burst == 0 {
					burstS = fmt.Sprintf("%d (default: RPM)", burst)
				}
				tb.add(fmt.Sprintf("%d slideshows × %d images", b.slideshows, b.images), concS, burstS, n, dur(wall), dur(quotaMin), dur(evenMin),
					fmt.Sprintf("%.2f", wall.Seconds()/quotaMin.Seconds()), imgs, tooMany,
					fmt.Sprintf("%s / %s", dur(percentile(cw.waits, 50)), dur(percentile(cw.waits, 99))))
			})
		})
	}
	if !t.Failed() && *report {
		// Printed once, whatever the scale: these batches always run at the published limits.
		fmt.Printf("\n#### Scenario 5: the old plan's batches (published limits, 5 keys in 5 projects, latency 5 s per analysis, 10 s per image)\n\n%s\n", tb)
	}
}
