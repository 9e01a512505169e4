package emulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

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

// The emulator is an http.Handler: serve it on a socket for any client.
func ExampleEmulator_ServeHTTP() {
	e, err := emulator.New(emulator.Config{Keys: []emulator.Key{{Name: "key-1", Secret: "s3cret"}}})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(e)
	defer srv.Close()

	body := `{"contents":[{"parts":[{"text":"hello"}]}]}`
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1beta/models/gemini-3-flash-preview:generateContent", strings.NewReader(body))
	req.Header.Set("x-goog-api-key", "wrong")
	resp, err := srv.Client().Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var out struct {
		Error struct {
			Code    int
			Message string
			Details []struct{ Reason string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		panic(err)
	}
	fmt.Println(resp.StatusCode, out.Error.Message, out.Error.Details[0].Reason)
	// Output:
	// 400 API key not valid. Please pass a valid API key. API_KEY_INVALID
}

// Spend plays a consumer of the same project that slideshowd does not see:
// it uses up quota, so slideshowd's next request is rate limited.
func ExampleEmulator_Spend() {
	e, err := emulator.New(emulator.Config{
		Keys:   []emulator.Key{{Name: "key-1", Secret: "s3cret", Project: "shared"}},
		Models: map[string]emulator.Limits{"gemini-3-pro-image-preview": {RPM: 20, RPD: 250}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("admitted:", e.Spend("shared", "gemini-3-pro-image-preview", 25, 0))
	fmt.Println("today:", e.Stats().Day[emulator.LaneKey{Project: "shared", Model: "gemini-3-pro-image-preview"}])
	// Output:
	// admitted: 20
	// today: 20
}

// SetFaults changes the injected failures while the emulator serves.
func ExampleEmulator_SetFaults() {
	e, err := emulator.New(emulator.Config{Keys: []emulator.Key{{Name: "key-1", Secret: "s3cret"}}})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	client, err := genai.NewClient(ctx, &genai.ClientConfig{
		APIKey:      "s3cret",
		Backend:     genai.BackendGeminiAPI,
		HTTPClient:  &http.Client{Transport: e.Transport()},
		HTTPOptions: genai.HTTPOptions{BaseURL: "http://emulator", APIVersion: "v1beta"},
	})
	if err != nil {
		panic(err)
	}
	if err := e.SetFaults(emulator.Faults{Rate503: 1}); err != nil {
		panic(err)
	}
	_, err = client.Models.GenerateContent(ctx, "gemini-3-flash-preview", genai.Text("hi"), nil)
	var ae genai.APIError
	if errors.As(err, &ae) {
		fmt.Println(ae.Code, ae.Status, ae.Message)
	}
	if err := e.SetFaults(emulator.Faults{}); err != nil {
		panic(err)
	}
	_, err = client.Models.GenerateContent(ctx, "gemini-3-flash-preview", genai.Text("hi"), nil)
	fmt.Println("error:", err)
	// Output:
	// 503 UNAVAILABLE The model is overloaded. Please try again later.
	// error: <nil>
}
