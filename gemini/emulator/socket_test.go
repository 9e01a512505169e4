package emulator

import (
	"context"
	"net/http/httptest"
	"testing"

	"google.golang.org/genai"
)

// TestOverRealSockets serves the emulator with net/http on a loopback port
// and talks to it with genai's default HTTP stack.
func TestOverRealSockets(t *testing.T) {
	cfg := oneKey(Limits{RPM: 2})
	cfg.Layout = Layout2026
	cfg.FreeTier = true
	e := mustNew(t, cfg)
	srv := httptest.NewServer(e)
	defer srv.Close()
	c, err := genai.NewClient(context.Background(), &genai.ClientConfig{
		APIKey:      "secret-1",
		Backend:     genai.BackendGeminiAPI,
		HTTPClient:  srv.Client(),
		HTTPOptions: genai.HTTPOptions{BaseURL: srv.URL, APIVersion: "v1beta"},
	})
	mustOK(t, err)
	ctx := t.Context()

	resp, err := c.Models.GenerateContent(ctx, textModel, genai.Text("paper boats on a pond"), &genai.GenerateContentConfig{
		ResponseMIMEType: "application/json",
		ResponseSchema: &genai.Schema{Type: genai.TypeObject, Required: []string{"prompts"}, Properties: map[string]*genai.Schema{
			"prompts": {Type: genai.TypeArray, MinItems: genai.Ptr[int64](2), MaxItems: genai.Ptr[int64](2), Items: str()},
		}},
	})
	mustOK(t, err)
	if resp.Text() == "" {
		t.Fatal("empty answer")
	}
	for r, err := range c.Models.GenerateContentStream(ctx, textModel, genai.Text("paper boats"), nil) {
		mustOK(t, err)
		if r.Text() == "" {
			t.Fatal("empty stream answer")
		}
	}
	_, err = generate(ctx, c, textModel, "third")
	ae := asAPIError(t, err)
	if ae.Code != 429 || len(ae.Details) != 3 || ae.Details[0]["@type"] != typeHelp {
		t.Fatalf("429 over sockets: %+v", ae)
	}
	if ids := quotaIDs(ae.Details); len(ids) != 1 || ids[0] != QuotaRequestsPerMinute+FreeTierSuffix {
		t.Fatalf("quota ids %v", ids)
	}
	img, err := c.Models.GenerateContent(ctx, imageModel, genai.Text("a kite"), &genai.GenerateContentConfig{
		ResponseModalities: []string{"TEXT", "IMAGE"}, ImageConfig: &genai.ImageConfig{AspectRatio: "9:16"}})
	mustOK(t, err)
	if pic, _ := decodePNG(t, img); pic.Bounds().Dx() != 96 || pic.Bounds().Dy() != 172 {
		t.Errorf("9:16 image %v", pic.Bounds())
	}
	s := e.Stats()
	if s.Requests[RequestKey{"k1", textModel, 200}] != 2 || s.Requests[RequestKey{"k1", textModel, 429}] != 1 || s.Total() != 4 || s.Status(200) != 3 {
		t.Errorf("Requests %v", s.Requests)
	}
}
