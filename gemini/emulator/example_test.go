package emulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// A genai client talks to the emulator in-process; the emulator counts
// what it served and enforces each project's quotas.
func ExampleNew() {
	e, err := emulator.New(emulator.Config{
		Keys:   []emulator.Key{{Name: "key-1", Secret: "AIza-example-secret", Project: "project-a"}},
		Models: map[string]emulator.Limits{"gemini-3-flash-preview": {RPM: 1, RPD: 100}},
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	client, err := genai.NewClient(ctx, &genai.ClientConfig{
		APIKey:      "AIza-example-secret",
		Backend:     genai.BackendGeminiAPI,
		HTTPClient:  &http.Client{Transport: e.Transport()},
		HTTPOptions: genai.HTTPOptions{BaseURL: "http://emulator", APIVersion: "v1beta"},
	})
	if err != nil {
		panic(err)
	}

	resp, err := client.Models.GenerateContent(ctx, "gemini-3-flash-preview",
		genai.Text("Slide 1: a lighthouse at dusk. Slide 2: boats in the fog."),
		&genai.GenerateContentConfig{
			ResponseMIMEType: "application/json",
			ResponseSchema: &genai.Schema{
				Type:     genai.TypeObject,
				Required: []string{"title", "imagePrompts"},
				Properties: map[string]*genai.Schema{
					"title": {Type: genai.TypeString},
					"imagePrompts": {Type: genai.TypeArray, Items: &genai.Schema{Type: genai.TypeString},
						MinItems: genai.Ptr[int64](3), MaxItems: genai.Ptr[int64](3)},
				},
			},
		})
	if err != nil {
		panic(err)
	}
	var analysis struct {
		Title        string
		ImagePrompts []string
	}
	if err := json.Unmarshal([]byte(resp.Text()), &analysis); err != nil {
		panic(err)
	}
	fmt.Println("image prompts:", len(analysis.ImagePrompts))
	fmt.Println("prompt tokens:", resp.UsageMetadata.PromptTokenCount)

	// The second request in the same minute exceeds the 1 RPM quota.
	_, err = client.Models.GenerateContent(ctx, "gemini-3-flash-preview", genai.Text("again"), nil)
	var ae genai.APIError
	if errors.As(err, &ae) {
		fmt.Println(ae.Code, ae.Status, ae.Details[0]["violations"].([]any)[0].(map[string]any)["quotaId"])
	}
	s := e.Stats()
	fmt.Println("served:", s.Status(200), "rate limited:", s.Status(429))
	// Output:
	// image prompts: 3
	// prompt tokens: 15
	// 429 RESOURCE_EXHAUSTED GenerateRequestsPerMinutePerProjectPerModel
	// served: 1 rate limited: 1
}
