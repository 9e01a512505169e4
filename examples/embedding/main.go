// Command embedding is the program of the README's "Embedding the library"
// section: a scheduler on a bbolt store and a Gemini client that asks for
// an analysis and an image through it. Run as is, it talks to an
// in-process emulator of the Gemini API (no key, no network); with a real
// key, pass it to run with an empty base URL and a nil HTTP client.
//
// The README shows the lines between the "README begin" and "README end"
// markers, word for word (a test checks it).
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// emulatorSecret is the emulator's own key: it works nowhere else.
const emulatorSecret = "AIza-embedding-example-secret"

func main() {
	emu, err := emulator.New(emulator.Config{
		Keys: []emulator.Key{{Name: "key-1", Secret: emulatorSecret, Project: "project-a"}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "embedding:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "slideshowd-embedding-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "embedding:", err)
		os.Exit(1)
	}
	err = run(context.Background(), os.Stdout, dir, emulatorSecret, "http://emulator", &http.Client{Transport: emu.Transport()})
	os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "embedding:", err)
		os.Exit(1)
	}
}

// run analyses a one-slide slideshow and generates its first image, with
// key-1 of project-a and the scheduler's state in dataDir/slideshowd.db.
// baseURL "" and httpClient nil mean Google's endpoint.
func run(ctx context.Context, w io.Writer, dataDir, secret, baseURL string, httpClient *http.Client) error {
	// README begin
	st, err := store.Open(filepath.Join(dataDir, "slideshowd.db"), store.Options{}) // or store.NewMemory()
	if err != nil {
		return err
	}
	defer st.Close()

	sched, err := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 900, RPD: 9000}},
			{Name: "image", Limits: bucket.Limits{RPM: 18, RPD: 240}},
		},
		Keys:       []bucket.Key{{ID: "key-1", Project: "project-a"}},
		Classifier: gemini.Classify, // the API's errors -> cooldowns, day exhaustion, disabled keys, retries
		Store:      st,
	})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sched.Run(runCtx) }() // owns every goroutine it starts
	defer func() { stop(); <-done }()         // stops it, before the store closes

	client, err := gemini.New(ctx, gemini.Config{
		Keys:       []gemini.Key{{ID: "key-1", Secret: secret}}, // e.g. os.Getenv("GEMINI_KEY_1")
		BaseURL:    baseURL,                                     // "" for Google's endpoint
		HTTPClient: httpClient,                                  // nil for the default client
		Scheduler:  sched,
	})
	if err != nil {
		return err
	}
	a, err := client.AnalyzeSlideshow(ctx, gemini.Slideshow{
		Source:   "lighthouses.pdf",
		Slides:   []gemini.Slide{{Text: "Lighthouses guided ships along dangerous coasts."}},
		Images:   4,
		Priority: scheduler.PriorityHigh,
	})
	if err != nil {
		return err
	}
	img, err := client.GenerateImage(ctx, gemini.Prompt(a.ImagePrompts[0]), gemini.ImageOptions{AspectRatio: "9:16"})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%d image prompts; image 1: %s, %d bytes\n", len(a.ImagePrompts), img.MIMEType, len(img.Data))
	// README end
	return nil
}
