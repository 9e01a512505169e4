package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/rs/zerolog"
	"hash/crc32"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

func TestMain(m *testing.M) {
	// go.opencensus.io, imported by the SDK's dependencies, starts a worker
	// in an init function.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

var testKeys = []emulator.Key{
	{Name: "k1", Secret: "AIzaTEST-secret-one"},
	{Name: "k2", Secret: "AIzaTEST-secret-two"},
	{Name: "k3", Secret: "AIzaTEST-secret-three"},
}

// harness is a pipeline on a scheduler, a gemini client and an emulator
// reached through its in-process transport.
type harness struct {
	t      *testing.T
	e      *emulator.Emulator
	st     store.Store
	dir    string
	p      *Pipeline
	sched  *scheduler.Scheduler
	cancel context.CancelFunc
	done   chan struct{}
}

type setup struct {
	emu       *emulator.Emulator // reuse (a restart); nil: a new one
	st        store.Store        // reuse; nil: a new Memory
	dir       string             // reuse; "": a new temporary directory
	textModel string             // "": the default
	onChange  func(Status)
	retention time.Duration
	noRun     bool
	logger    *zerolog.Logger // nil: none
	secrets   []string
	maxActive int // 0: the default
	// imageLimits replaces the image class's limits (RPM 18, RPD 240)
	// when RPD is set; critical is the scheduler's Critical (0: default).
	imageLimits bucket.Limits
	critical    float64
}

func newHarness(t *testing.T, s setup) *harness {
	t.Helper()
	h := &harness{t: t, e: s.emu, st: s.st, dir: s.dir}
	if h.e == nil {
		e, err := emulator.New(emulator.Config{Keys: testKeys, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		h.e = e
	}
	if h.st == nil {
		h.st = store.NewMemory()
	}
	if h.dir == "" {
		h.dir = t.TempDir()
	}
	var bkeys []bucket.Key
	var gkeys []gemini.Key
	for _, k := range testKeys {
		bkeys = append(bkeys, bucket.Key{ID: k.Name, Project: k.Name})
		gkeys = append(gkeys, gemini.Key{ID: k.Name, Secret: k.Secret})
	}
	imageLimits := bucket.Limits{RPM: 18, RPD: 240}
	if s.imageLimits.RPD > 0 {
		imageLimits = s.imageLimits
	}
	s2, err := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 900, RPD: 9000}},
			// Burst 1 (not the default, RPM): a lane paces its images, so
			// tests can have one waiting in the scheduler.
			{Name: "image", Limits: imageLimits, Burst: 1},
		},
		Critical:   s.critical,
		Keys:       bkeys,
		Store:      h.st,
		Classifier: gemini.Classify,
		Seed:       1,
	})
	if err != nil {
		t.Fatal(err)
	}
	gc, err := gemini.New(t.Context(), gemini.Config{
		Keys: gkeys, BaseURL: "http://emulator.test", Scheduler: s2,
		HTTPClient: &http.Client{Transport: h.e.Transport()}, TextModel: s.textModel,
	})
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	if s.logger != nil {
		log = *s.logger
	}
	h.sched = s2
	h.p, err = New(Config{Store: h.st, Gemini: gc, DataDir: h.dir, OnChange: s.onChange, Retention: s.retention, Logger: log, Secrets: s.secrets, MaxActive: s.maxActive})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s2.Run(ctx) }()
	if !s.noRun {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.p.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
	}
	go func() { wg.Wait(); close(h.done) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
}

func (h *harness) wait(id string) Status {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	st, err := h.p.Wait(ctx, id)
	if err != nil {
		h.t.Fatalf("Wait(%s): %v", id, err)
	}
	return st
}

// served counts the emulator's 200 answers for model.
func served(e *emulator.Emulator, model string) int {
	n := 0
	for k, c := range e.Stats().Requests {
		if k.Model == model && k.Status == 200 {
			n += c
		}
	}
	return n
}

func tinyPNG(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "slide.png"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func request(images int) Request {
	return Request{
		Source: "How tides work",
		Slides: []SlideInput{{Text: "The moon pulls the sea."}, {Text: "Twice a day the water rises."}},
		Images: images,
	}
}

func TestJobRunsToDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, setup{})
		req := request(4)
		req.Slides = append(req.Slides, SlideInput{Image: tinyPNG(t)})
		req.Priority = "high"
		id, err := h.p.Submit(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		st := h.wait(id)
		if st.State != JobDone || st.Error != "" {
			t.Fatalf("state %s error %q, want done", st.State, st.Error)
		}
		if st.Priority != "high" || st.Source != req.Source || st.Analysis == nil || len(st.Analysis.ImagePrompts) != 4 {
			t.Errorf("status %+v", st)
		}
		for n := 1; n <= 4; n++ {
			is := st.Images[n-1]
			if is.N != n || is.State != ImageDone || is.Prompt != st.Analysis.ImagePrompts[n-1] || is.MIMEType != "image/png" {
				t.Errorf("image %d: %+v", n, is)
			}
			path, err := h.p.ImagePath(t.Context(), id, n)
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(path) != fmt.Sprintf("image-%02d.png", n) {
				t.Errorf("path %s", path)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := png.Decode(bytes.NewReader(data)); err != nil {
				t.Errorf("image %d is not a PNG: %v", n, err)
			}
		}
		var a gemini.Analysis
		data, err := os.ReadFile(filepath.Join(h.dir, "jobs", id, AnalysisFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &a); err != nil || len(a.Slides) != 3 {
			t.Errorf("analysis.json: %v, %+v", err, a)
		}
		if got := served(h.e, emulator.DefaultTextModel); got != 1 {
			t.Errorf("text requests %d, want 1", got)
		}
		if got := served(h.e, emulator.DefaultImageModel); got != 4 {
			t.Errorf("image requests %d, want 4", got)
		}
		// The images spread over the keys.
		keys := map[string]bool{}
		for k, c := range h.e.Stats().Requests {
			if k.Model == emulator.DefaultImageModel && c > 0 {
				keys[k.Key] = true
			}
		}
		if len(keys) < 2 {
			t.Errorf("images went to keys %v, want them spread", keys)
		}
	})
}

// hugePNG returns png with its IHDR saying 100000x100000 pixels.
func hugePNG(t *testing.T, png []byte) []byte {
	t.Helper()
	b := bytes.Clone(png)
	if string(b[12:16]) != "IHDR" {
		t.Fatal("no IHDR")
	}
	binary.BigEndian.PutUint32(b[16:], 100000)
	binary.BigEndian.PutUint32(b[20:], 100000)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func TestSubmitValidation(t *testing.T) {
	png := tinyPNG(t)
	big := make([]byte, MaxInlineBytes/2+1)
	copy(big, png) // a valid header; DecodeConfig reads no further
	garbage := []byte("\x89PNG\r\n\x1a\n" + strings.Repeat("\x00", 32))
	huge := hugePNG(t, png)
	tests := []struct {
		name   string
		edit   func(*Request)
		field  string
		reason string
	}{
		{"images zero", func(r *Request) { r.Images = 0 }, "images", "must be 1..20"},
		{"images 25", func(r *Request) { r.Images = 25 }, "images", "must be 1..20"},
		{"priority", func(r *Request) { r.Priority = "urgent" }, "priority", `want "high", "normal" or "low"`},
		{"no source", func(r *Request) { r.Source = "  " }, "source", "empty: name the slideshow (a title or a URL)"},
		{"no slides", func(r *Request) { r.Slides = nil }, "slides", "none: need at least one slide"},
		{"empty slide", func(r *Request) { r.Slides[1] = SlideInput{} }, "slides[1]", "no text and no image"},
		{"bad utf8", func(r *Request) { r.Slides[0].Text = "\xff" }, "slides[0].text", "not valid UTF-8"},
		{"NUL in source", func(r *Request) { r.Source = "a\x00b" }, "source", "control character: only tab, newline and carriage return are allowed"},
		{"NUL in text", func(r *Request) { r.Slides[1].Text = "x\x00" }, "slides[1].text", "control character: only tab, newline and carriage return are allowed"},
		{"escape in text", func(r *Request) { r.Slides[0].Text = "\x1b[2J" }, "slides[0].text", "control character: only tab, newline and carriage return are allowed"},
		{"DEL in source", func(r *Request) { r.Source = "a\x7f" }, "source", "control character: only tab, newline and carriage return are allowed"},
		{"C1 next line in text", func(r *Request) { r.Slides[0].Text = "a\u0085b" }, "slides[0].text", "control character: only tab, newline and carriage return are allowed"},
		{"vertical tab in text", func(r *Request) { r.Slides[0].Text = "a\vb" }, "slides[0].text", "control character: only tab, newline and carriage return are allowed"},
		{"not an image", func(r *Request) { r.Slides[0].Image = []byte("hello") }, "slides[0].image", "not a PNG, JPEG, WebP or GIF image"},
		{"bad mime", func(r *Request) { r.Slides[0].Image, r.Slides[0].ImageMIME = png, "image/tiff" }, "slides[0].image_mime", "want one of image/png, image/jpeg, image/webp, image/gif"},
		{"PNG signature then garbage", func(r *Request) { r.Slides[0].Image = garbage }, "slides[0].image", "not a valid png image: png: invalid format: invalid checksum"},
		{"huge dimensions", func(r *Request) { r.Slides[0].Image = huge }, "slides[0].image",
			fmt.Sprintf("100000x100000 pixels: want sides of 1 to %d pixels and at most %d pixels in all", MaxImageSide, MaxImagePixels)},
		{"too many bytes", func(r *Request) {
			r.Slides = []SlideInput{{Image: big}, {Image: big}}
		}, "slides", fmt.Sprintf("above the %d bytes one request can carry", MaxInlineBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, setup{noRun: true})
				r := request(3)
				tt.edit(&r)
				_, err := h.p.Submit(t.Context(), r)
				var ie *InputError
				if !errors.As(err, &ie) {
					t.Fatalf("error %v, want *InputError", err)
				}
				if ie.Field != tt.field || ie.Reason != tt.reason {
					t.Errorf("got field %q reason %q, want %q %q", ie.Field, ie.Reason, tt.field, tt.reason)
				}
				if list, err := h.p.List(t.Context()); err != nil || len(list) != 0 {
					t.Errorf("a refused request was stored: %v %v", list, err)
				}
			})
		})
	}
}

func TestKeyedSubmitIsIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, setup{noRun: true})
		r := request(2)
		r.Key = "batch-entry-1"
		id1, err := h.p.Submit(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		id2, err := h.p.Submit(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		r.Key = ""
		id3, _ := h.p.Submit(t.Context(), r)
		if id1 != id2 || id1 == id3 {
			t.Errorf("ids %s %s %s: want the keyed ones equal, the other distinct", id1, id2, id3)
		}
		// Concurrent Submits of one key make one job.
		r.Key = "batch-entry-2"
		ids := make([]string, 8)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Go(func() { ids[i], _ = h.p.Submit(t.Context(), r) })
		}
		wg.Wait()
		for _, id := range ids {
			if id == "" || id != ids[0] {
				t.Fatalf("concurrent keyed Submits gave ids %v", ids)
			}
		}
		list, _ := h.p.List(t.Context())
		if len(list) != 3 {
			t.Errorf("%d jobs stored, want 3", len(list))
		}
		st, err := h.p.Status(t.Context(), id1)
		if err != nil || st.State != JobQueued || len(st.Images) != 2 || st.Images[0].State != ImagePending {
			t.Errorf("status %+v %v", st, err)
		}
	})
}

func TestNotFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, setup{noRun: true})
		id, err := h.p.Submit(t.Context(), request(1))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			id string
			n  int
		}{{"0123456789abcdef01234567", 1}, {"../../etc/passwd", 1}, {id, 0}, {id, 2}, {id, 1}} {
			if _, err := h.p.ImagePath(t.Context(), c.id, c.n); !errors.Is(err, ErrNotFound) {
				t.Errorf("ImagePath(%q, %d): %v, want ErrNotFound", c.id, c.n, err)
			}
		}
		if _, err := h.p.Status(t.Context(), "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Status: %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := h.p.Wait(ctx, id); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait without Run: %v, want the deadline", err)
		}
	})
}

func TestFailuresAreRecorded(t *testing.T) {
	t.Run("analysis", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, setup{textModel: "gemini-no-such-model"})
			id, err := h.p.Submit(t.Context(), request(2))
			if err != nil {
				t.Fatal(err)
			}
			st := h.wait(id)
			if st.State != JobFailed || !strings.HasPrefix(st.Error, "analysis: ") || !strings.Contains(st.Error, "404") {
				t.Errorf("state %s error %q", st.State, st.Error)
			}
			if served(h.e, emulator.DefaultImageModel) != 0 {
				t.Error("images asked for after a failed analysis")
			}
		})
	})
	t.Run("images", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e, err := emulator.New(emulator.Config{Keys: testKeys, Seed: 1, Faults: emulator.Faults{NoImage: 1}})
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, setup{emu: e})
			id, err := h.p.Submit(t.Context(), request(2))
			if err != nil {
				t.Fatal(err)
			}
			st := h.wait(id)
			if st.State != JobFailed || !strings.HasPrefix(st.Error, "2 of 2 images failed; image 1: ") {
				t.Errorf("state %s error %q", st.State, st.Error)
			}
			for _, is := range st.Images {
				if is.State != ImageFailed || !strings.Contains(is.Error, "IMAGE_SAFETY") {
					t.Errorf("image %+v", is)
				}
			}
			for _, k := range testKeys {
				if strings.Contains(st.Error+st.Images[0].Error, k.Secret) {
					t.Error("a failure reason shows a secret")
				}
			}
		})
	})
}

// TestResumeAfterStop stops the pipeline in the middle of a job and starts
// a new one on the same store and directory: it finishes the job without
// asking again for what was stored.
func TestResumeAfterStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		dir := t.TempDir()
		e, err := emulator.New(emulator.Config{Keys: testKeys, Seed: 1,
			Faults: emulator.Faults{Latency: emulator.UniformLatency(2*time.Second, 2*time.Second)}})
		if err != nil {
			t.Fatal(err)
		}
		var stopOnce sync.Once
		stopped := make(chan struct{})
		h1 := newHarness(t, setup{emu: e, st: st, dir: dir, onChange: func(s Status) {
			done := 0
			for _, is := range s.Images {
				if is.State == ImageDone {
					done++
				}
			}
			if done == 2 {
				stopOnce.Do(func() { close(stopped) })
			}
		}})
		id, err := h1.p.Submit(t.Context(), request(8))
		if err != nil {
			t.Fatal(err)
		}
		<-stopped
		h1.stop()
		mid, err := h1.p.Status(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		doneBefore := 0
		for _, is := range mid.Images {
			if is.State == ImageDone {
				doneBefore++
			}
			if is.State == ImageFailed {
				t.Errorf("image %d failed at shutdown: %s", is.N, is.Error)
			}
		}
		if mid.State.Final() || doneBefore < 2 || doneBefore == 8 {
			t.Fatalf("after the stop: state %s, %d images done; want a job in the middle", mid.State, doneBefore)
		}
		text0, image0 := served(e, emulator.DefaultTextModel), served(e, emulator.DefaultImageModel)

		h2 := newHarness(t, setup{emu: e, st: st, dir: dir})
		final := h2.wait(id)
		if final.State != JobDone {
			t.Fatalf("state %s error %q", final.State, final.Error)
		}
		if got := served(e, emulator.DefaultTextModel) - text0; got != 0 {
			t.Errorf("the analysis was asked for %d more times after the restart, want 0", got)
		}
		if got, want := served(e, emulator.DefaultImageModel)-image0, 8-doneBefore; got != want {
			t.Errorf("%d images generated after the restart, want %d (8 less the %d done)", got, want, doneBefore)
		}
		if mid.Analysis == nil || final.Analysis.Summary != mid.Analysis.Summary {
			t.Error("the analysis changed across the restart")
		}
	})
}

// TestFilesWithoutRecords plays a crash after files were renamed into place
// but before their states were stored: the files count as done.
func TestFilesWithoutRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		dir := t.TempDir()
		h1 := newHarness(t, setup{st: st, dir: dir, noRun: true})
		id, err := h1.p.Submit(t.Context(), request(3))
		if err != nil {
			t.Fatal(err)
		}
		h1.stop()
		jobDir := filepath.Join(dir, "jobs", id)
		a := gemini.Analysis{Summary: "s", Hook: "h", Slides: []gemini.SlideNote{{Index: 1, Notes: "n"}, {Index: 2, Notes: "n"}},
			ImagePrompts: []string{"a red kite", "a blue boat", "a green hill"}}
		data, _ := json.Marshal(a)
		if err := os.WriteFile(filepath.Join(jobDir, AnalysisFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(jobDir, "image-02.png"), tinyPNG(t), 0o600); err != nil {
			t.Fatal(err)
		}
		// A write cut short: never renamed, so not output.
		tmp := filepath.Join(jobDir, ".image-03.png.tmp-12345")
		if err := os.WriteFile(tmp, []byte("\x89PNG half"), 0o600); err != nil {
			t.Fatal(err)
		}
		h2 := newHarness(t, setup{st: st, dir: dir})
		final := h2.wait(id)
		if final.State != JobDone || final.Analysis.Hook != "h" || final.Images[1].Prompt != "a blue boat" {
			t.Fatalf("status %+v", final)
		}
		if n := served(h2.e, emulator.DefaultTextModel); n != 0 {
			t.Errorf("analysis asked for %d times, want 0: analysis.json was there", n)
		}
		if n := served(h2.e, emulator.DefaultImageModel); n != 2 {
			t.Errorf("%d images generated, want 2: image-02.png was there", n)
		}
		if _, err := os.Stat(tmp); !os.IsNotExist(err) {
			t.Errorf("temporary file left: %v", err)
		}
	})
}

func TestListAndPriorityOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, setup{noRun: true})
		var ids []string
		for _, pr := range []string{"low", "normal", "high"} {
			r := request(1)
			r.Priority = pr
			id, err := h.p.Submit(t.Context(), r)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			time.Sleep(time.Second) // distinct creation times (virtual)
		}
		list, err := h.p.List(t.Context())
		if err != nil || len(list) != 3 {
			t.Fatalf("List: %v %v", list, err)
		}
		for i, s := range list {
			if s.ID != ids[i] {
				t.Errorf("List[%d] = %s, want %s (oldest first)", i, s.ID, ids[i])
			}
		}
		var order []string
		for j := h.p.next(); j != nil; j = h.p.next() {
			order = append(order, j.rec.Priority)
		}
		if strings.Join(order, ",") != "high,normal,low" {
			t.Errorf("queue order %v, want high first", order)
		}
	})
}

// service is the interface the HTTP API (internal/httpapi) serves.
type service interface {
	Submit(ctx context.Context, r Request) (string, error)
	Status(ctx context.Context, id string) (Status, error)
	ImagePath(ctx context.Context, id string, n int) (string, error)
	Wait(ctx context.Context, id string) (Status, error)
}

var _ service = (*Pipeline)(nil)

// TestParseSinceAndCheck: ParseSince takes what ?since= and jobs -since
// take (an RFC 3339 time, a duration back from now, not negative) and
// Filter.Check refuses what Jobs refuses, each an *InputError naming the
// field, so a client can check its arguments before asking.
func TestParseSinceAndCheck(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if got, err := ParseSince("24h", now); err != nil || !got.Equal(now.Add(-24*time.Hour)) {
		t.Errorf("24h: %v, %v", got, err)
	}
	if got, err := ParseSince("2026-02-01T00:00:00Z", now); err != nil || !got.Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("RFC 3339: %v, %v", got, err)
	}
	for _, v := range []string{"yesterday", "-5h", ""} {
		_, err := ParseSince(v, now)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != "since" || ie.Reason != SinceReason {
			t.Errorf("%q: %v; want an *InputError on since", v, err)
		}
	}
	for _, tt := range []struct {
		f     Filter
		field string
	}{
		{Filter{}, ""},
		{Filter{States: []JobState{JobDone, JobQueued}, Priority: "low", Limit: MaxPageSize + 1}, ""},
		{Filter{States: []JobState{JobDone, "lost"}}, "state"},
		{Filter{Priority: "urgent"}, "priority"},
		{Filter{Limit: -1}, "limit"},
		{Filter{Cursor: "x"}, "cursor"},
	} {
		err := tt.f.Check()
		var ie *InputError
		if tt.field == "" && err != nil || tt.field != "" && (!errors.As(err, &ie) || ie.Field != tt.field) {
			t.Errorf("%+v: %v; want an error on %q", tt.f, err, tt.field)
		}
	}
}
