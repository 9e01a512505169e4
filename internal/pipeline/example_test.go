package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// A pipeline on a scheduler and a Gemini client (here talking to the
// emulator in process): submit a slideshow, run, wait for its images.
func Example() {
	em, _ := emulator.New(emulator.Config{Keys: []emulator.Key{{Name: "k1", Secret: "emulator-secret-1"}}})
	st := store.NewMemory()
	s, _ := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 900, RPD: 9000}},
			{Name: "image", Limits: bucket.Limits{RPM: 600, RPD: 240}},
		},
		Keys:       []bucket.Key{{ID: "k1", Project: "k1"}},
		Store:      st,
		Classifier: gemini.Classify,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gc, _ := gemini.New(ctx, gemini.Config{
		Keys:       []gemini.Key{{ID: "k1", Secret: "emulator-secret-1"}},
		BaseURL:    "http://emulator.test",
		HTTPClient: &http.Client{Transport: em.Transport()},
		Scheduler:  s,
	})
	dir, _ := os.MkdirTemp("", "pipeline-example-")
	defer os.RemoveAll(dir)
	p, err := pipeline.New(pipeline.Config{Store: st, Gemini: gc, DataDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Go(func() { s.Run(ctx) })
		p.Run(ctx)
		wg.Wait()
	}()

	id, err := p.Submit(ctx, pipeline.Request{
		Source: "How tides work",
		Slides: []pipeline.SlideInput{{Text: "The moon pulls the sea."}, {Text: "Twice a day the water rises."}},
		Images: 2,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	status, _ := p.Wait(ctx, id)
	fmt.Println(status.State, len(status.Analysis.ImagePrompts), "prompts")
	for _, img := range status.Images {
		path, _ := p.ImagePath(ctx, id, img.N)
		_, err := os.Stat(path)
		fmt.Println(img.N, img.State, img.MIMEType, err == nil)
	}

	_, err = p.Submit(ctx, pipeline.Request{Source: "x", Slides: []pipeline.SlideInput{{Text: "t"}}, Images: 25})
	fmt.Println(err)
	cancel()
	<-done
	// Output:
	// done 2 prompts
	// 1 done image/png true
	// 2 done image/png true
	// pipeline: images: 25: must be 1..20
}

// A job that failed (here the emulator answers every image without one)
// is reopened by Retry: only its failed images are made again.
func ExamplePipeline_Retry() {
	em, _ := emulator.New(emulator.Config{Keys: []emulator.Key{{Name: "k1", Secret: "emulator-secret-1"}},
		Faults: emulator.Faults{NoImage: 1}})
	st := store.NewMemory()
	s, _ := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 900, RPD: 9000}},
			{Name: "image", Limits: bucket.Limits{RPM: 600, RPD: 240}},
		},
		Keys:       []bucket.Key{{ID: "k1", Project: "k1"}},
		Store:      st,
		Classifier: gemini.Classify,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gc, _ := gemini.New(ctx, gemini.Config{
		Keys:       []gemini.Key{{ID: "k1", Secret: "emulator-secret-1"}},
		BaseURL:    "http://emulator.test",
		HTTPClient: &http.Client{Transport: em.Transport()},
		Scheduler:  s,
	})
	dir, _ := os.MkdirTemp("", "pipeline-example-")
	defer os.RemoveAll(dir)
	p, _ := pipeline.New(pipeline.Config{Store: st, Gemini: gc, DataDir: dir})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Go(func() { s.Run(ctx) })
		p.Run(ctx)
		wg.Wait()
	}()

	id, _ := p.Submit(ctx, pipeline.Request{Source: "How tides work", Slides: []pipeline.SlideInput{{Text: "The moon pulls the sea."}}, Images: 2})
	status, _ := p.Wait(ctx, id)
	fmt.Println(status.State, "attempt", status.Attempts, "analysis kept:", status.Analysis != nil)

	em.SetFaults(emulator.Faults{}) // what made the images fail is gone
	if err := p.Retry(ctx, id); err != nil {
		fmt.Println(err)
		return
	}
	status, _ = p.Wait(ctx, id)
	fmt.Println(status.State, "attempt", status.Attempts, status.Images[0].State, status.Images[1].State)
	fmt.Println(em.Stats().Total(), "requests in all: 1 analysis, 2 images refused, 2 made")
	err := p.Retry(ctx, id)
	fmt.Println("again:", errors.Is(err, pipeline.ErrNotFailed))
	cancel()
	<-done
	// Output:
	// failed attempt 1 analysis kept: true
	// done attempt 2 done done
	// 5 requests in all: 1 analysis, 2 images refused, 2 made
	// again: true
}
