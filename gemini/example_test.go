package gemini_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"net/http"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// setup starts a scheduler with one key and returns a Client whose requests
// go to an in-process emulator of the Gemini API, and a function that stops
// the scheduler. With real keys, leave BaseURL and HTTPClient out.
func setup() (*gemini.Client, func()) {
	emu, err := emulator.New(emulator.Config{
		Keys:       []emulator.Key{{Name: "key-1", Secret: "AIza-example-secret", Project: "project-a"}},
		ImageScale: 1.0 / 8,
	})
	if err != nil {
		panic(err)
	}
	sched, err := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 900, RPD: 9000}},
			{Name: "image", Limits: bucket.Limits{RPM: 18, RPD: 240}},
		},
		Keys:       []bucket.Key{{ID: "key-1", Project: "project-a"}},
		Classifier: gemini.Classify,
	})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()

	client, err := gemini.New(context.Background(), gemini.Config{
		Keys:       []gemini.Key{{ID: "key-1", Secret: "AIza-example-secret"}},
		BaseURL:    "http://emulator",
		HTTPClient: &http.Client{Transport: emu.Transport()},
		Scheduler:  sched,
	})
	if err != nil {
		panic(err)
	}
	return client, func() { stop(); <-done }
}

// Analyse a slideshow: a summary, a hook, one note per slide and the
// number of image prompts asked for.
func ExampleClient_AnalyzeSlideshow() {
	client, stop := setup()
	defer stop()

	a, err := client.AnalyzeSlideshow(context.Background(), gemini.Slideshow{
		Source: "lighthouses.pdf",
		Slides: []gemini.Slide{
			{Text: "Lighthouses guided ships along dangerous coasts."},
			{Text: "Fresnel lenses made their beams visible for miles."},
			{Text: "Today most lighthouses are automated."},
		},
		Images:   4,
		Priority: scheduler.PriorityHigh,
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("summary and hook:", a.Summary != "" && a.Hook != "")
	for _, n := range a.Slides {
		fmt.Printf("slide %d has notes: %v\n", n.Index, n.Notes != "")
	}
	fmt.Println("image prompts:", len(a.ImagePrompts))
	// Output:
	// summary and hook: true
	// slide 1 has notes: true
	// slide 2 has notes: true
	// slide 3 has notes: true
	// image prompts: 4
}

// Generate a 16:9 image and decode it.
func ExampleClient_GenerateImage() {
	client, stop := setup()
	defer stop()

	img, err := client.GenerateImage(context.Background(),
		"A lighthouse on a cliff at dusk, waves below, warm light",
		gemini.ImageOptions{AspectRatio: "16:9", Size: "1K"})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img.Data))
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	// The emulator draws images at 1/8 of the real size (1376x768).
	fmt.Println(img.MIMEType, cfg.Width, "x", cfg.Height)
	// Output:
	// image/png 172 x 96
}

// Classify tells the scheduler what a failure means: here a per-day quota
// is exhausted, so the lane is out until the next Pacific midnight even
// though the answer says to retry in 0s.
func ExampleClassify() {
	err := genai.APIError{
		Code:    429,
		Status:  "RESOURCE_EXHAUSTED",
		Message: "You exceeded your current quota, please check your plan and billing details.",
		Details: []map[string]any{
			{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []any{
				map[string]any{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"},
			}},
			{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"},
		},
	}
	var rl *scheduler.RateLimitedError
	if errors.As(gemini.Classify(err), &rl) {
		fmt.Println(rl.Scope, rl.Quota, rl.RetryAfter)
	}

	var ke *scheduler.KeyError
	leaked := genai.APIError{Code: 403, Status: "PERMISSION_DENIED", Message: "Your API key was reported as leaked. Please use another API key."}
	if errors.As(gemini.Classify(leaked), &ke) {
		fmt.Println("key:", ke.Reason)
	}
	// Output:
	// day GenerateRequestsPerDayPerProjectPerModel-FreeTier 0s
	// key: leaked
}
