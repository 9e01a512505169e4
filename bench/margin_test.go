package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/examples"
	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// slotHeader carries a request's window stamp (scheduler.Lease.Slot, margin
// 0) to the server, which subtracts it from the time the body was in.
const slotHeader = "X-Slideshowd-Slot"

// arrivals wraps the emulator: it reads each request's body, notes how long
// after its stamp it was in, and passes it on.
type arrivals struct {
	next http.Handler
	mu   sync.Mutex
	lag  []time.Duration
}

func (a *arrivals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	in := time.Now()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ns, err := strconv.ParseInt(r.Header.Get(slotHeader), 10, 64); err == nil {
		a.mu.Lock()
		a.lag = append(a.lag, in.Sub(time.Unix(0, ns)))
		a.mu.Unlock()
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	a.next.ServeHTTP(w, r)
}

// BenchmarkStampToArrival measures what WindowMargin must cover: the time
// from a request's window stamp (the dispatcher's, right after its durable
// record on a bbolt file) until its whole body is in at the API, here the
// emulator over loopback, through the genai SDK. Text requests carry a
// prompt; image requests carry three slide images. Four keys; the lanes'
// limits are the published text RPM (1000, default burst) and, for images,
// 120 RPM with burst = RPM (the case that sent a minute's requests at once),
// so the process works at the rates a quota allows, not flat out. Every
// request is submitted at once. Reported: the 50th, 99th percentile and the
// largest lag in milliseconds.
func BenchmarkStampToArrival(b *testing.B) {
	var slides []*genai.Part
	for _, name := range []string{"slides/bread-1.png", "slides/tides-1.png", "slides/tides-2.png"} {
		data, err := examples.Batch.ReadFile(name)
		if err != nil {
			b.Fatal(err)
		}
		slides = append(slides, genai.NewPartFromBytes(data, "image/png"))
	}
	for _, class := range []string{"text", "image"} {
		b.Run("class="+class, func(b *testing.B) {
			model := gemini.DefaultTextModel
			if class == "image" {
				model = gemini.DefaultImageModel
			}
			const keys = 4
			var ek []emulator.Key
			var bk []bucket.Key
			for i := range keys {
				id := fmt.Sprintf("key%d", i+1)
				ek = append(ek, emulator.Key{Name: id, Secret: "secret-" + id})
				bk = append(bk, bucket.Key{ID: id, Project: id})
			}
			limits := bucket.Limits{RPM: 1000, RPD: 1 << 30}
			burst := 0
			if class == "image" {
				limits.RPM, burst = 120, 120
			}
			e, err := emulator.New(emulator.Config{Keys: ek, Models: map[string]emulator.Limits{model: {RPM: limits.RPM, RPD: limits.RPD}}})
			if err != nil {
				b.Fatal(err)
			}
			arr := &arrivals{next: e}
			srv := httptest.NewServer(arr)
			defer srv.Close()
			sdks := map[string]*genai.Client{}
			for _, k := range ek {
				c, err := genai.NewClient(context.Background(), &genai.ClientConfig{APIKey: k.Secret, Backend: genai.BackendGeminiAPI,
					HTTPOptions: genai.HTTPOptions{BaseURL: srv.URL, APIVersion: gemini.APIVersion}})
				if err != nil {
					b.Fatal(err)
				}
				sdks[k.Name] = c
			}
			st, err := store.Open(filepath.Join(b.TempDir(), "slideshowd.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			s, err := scheduler.New(scheduler.Config{
				Classes: []scheduler.ClassConfig{{Name: class, Limits: limits, Burst: burst, Concurrency: 32}},
				Keys:    bk, Store: st,
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			work := func(ctx context.Context, l scheduler.Lease) error {
				parts := []*genai.Part{genai.NewPartFromText("Analyse this slideshow: " + string(bytes.Repeat([]byte("slide text "), 200)))}
				if class == "image" {
					parts = append(parts, slides...)
				}
				cfg := &genai.GenerateContentConfig{HTTPOptions: &genai.HTTPOptions{Headers: http.Header{slotHeader: {strconv.FormatInt(l.Slot.UnixNano(), 10)}}}}
				if class == "image" {
					cfg.ResponseModalities = []string{"IMAGE"}
				}
				_, err := sdks[l.KeyID].Models.GenerateContent(ctx, model, []*genai.Content{genai.NewContentFromParts(parts, genai.RoleUser)}, cfg)
				return err
			}
			var wg sync.WaitGroup
			b.ResetTimer()
			for b.Loop() {
				h, err := s.Submit(context.Background(), scheduler.Job{Class: class, Work: work})
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := h.Wait(context.Background()); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			cancel()
			<-done
			arr.mu.Lock()
			lag := slices.Clone(arr.lag)
			arr.mu.Unlock()
			if len(lag) == 0 {
				b.Fatal("no request arrived")
			}
			slices.Sort(lag)
			ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
			b.ReportMetric(ms(lag[len(lag)/2]), "p50-ms")
			b.ReportMetric(ms(lag[len(lag)*99/100]), "p99-ms")
			b.ReportMetric(ms(lag[len(lag)-1]), "max-ms")
		})
	}
}
