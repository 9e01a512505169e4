package gemini

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

func TestImageRequest(t *testing.T) {
	tests := []struct {
		name      string
		opts      ImageOptions
		ratio, sz string
	}{
		{"defaults", ImageOptions{}, "9:16", "1K"},
		{"explicit", ImageOptions{AspectRatio: "16:9", Size: "4K", Priority: scheduler.PriorityHigh}, "16:9", "4K"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(answer{200, nil, okImageBody})
			c := newTestClient(t, rec)
			var reported []int
			c.reportTokens = func(_ scheduler.Lease, n int) { reported = append(reported, n) }
			img, err := c.image(t.Context(), testLease("image"), "  a lighthouse at dusk ", tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if img.MIMEType != "image/png" || !bytes.Equal(img.Data, pngBytes(9, 16)) {
				t.Errorf("image %s, %d bytes", img.MIMEType, len(img.Data))
			}
			if !reflect.DeepEqual(reported, []int{17}) {
				t.Errorf("reported tokens %v, want [17]", reported)
			}
			r := rec.requests()[0]
			if r.Path != "/v1beta/models/gemini-3-pro-image-preview:generateContent" {
				t.Errorf("path %s", r.Path)
			}
			gc := r.Body["generationConfig"].(map[string]any)
			if got := gc["responseModalities"]; !reflect.DeepEqual(got, []any{"TEXT", "IMAGE"}) {
				t.Errorf("responseModalities %v", got)
			}
			if got := gc["imageConfig"]; !reflect.DeepEqual(got, map[string]any{"aspectRatio": tt.ratio, "imageSize": tt.sz}) {
				t.Errorf("imageConfig %v", got)
			}
			parts := r.Body["contents"].([]any)[0].(map[string]any)["parts"].([]any)
			if len(parts) != 1 || parts[0].(map[string]any)["text"] != "a lighthouse at dusk" {
				t.Errorf("parts %v", parts)
			}
		})
	}
}

// TestImageTypeFromBytes: the type of an image answer comes from its bytes
// (issue #10 kind 8), whatever the part declares.
func TestImageTypeFromBytes(t *testing.T) {
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewRGBA(image.Rect(0, 0, 4, 4)), nil); err != nil {
		t.Fatal(err)
	}
	webp := append([]byte("RIFF\x1a\x00\x00\x00WEBPVP8L"), make([]byte, 14)...)
	png := pngBytes(2, 2)
	tests := []struct {
		name, declared string
		data           []byte
		want           string
		repaired       bool
	}{
		{"PNG as PNG", "image/png", png, MIMEPNG, false},
		{"JPEG declared PNG", "image/png", jpg.Bytes(), MIMEJPEG, true},
		{"JPEG as JPEG", "image/jpeg", jpg.Bytes(), MIMEJPEG, false},
		{"WebP declared PNG", "image/png", webp, MIMEWebP, true},
		{"WebP undeclared", "", webp, MIMEWebP, true},
		{"PNG declared upper-case", "IMAGE/PNG", png, MIMEPNG, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, serve(200, imageAnswer(tt.declared, tt.data)))
			img, err := c.image(t.Context(), testLease("image"), "a lighthouse", ImageOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if img.MIMEType != tt.want || !bytes.Equal(img.Data, tt.data) {
				t.Fatalf("got %s, want %s", img.MIMEType, tt.want)
			}
			_, repair, _ := firstImage("m", &genai.GenerateContentResponse{Candidates: []*genai.Candidate{{Content: &genai.Content{
				Parts: []*genai.Part{{InlineData: &genai.Blob{MIMEType: tt.declared, Data: tt.data}}}}}}})
			if (repair != "") != tt.repaired {
				t.Errorf("repair %q, want repaired %v", repair, tt.repaired)
			}
		})
	}
	for _, b := range [][]byte{nil, []byte("GIF89a...."), []byte("RIFF\x00\x00\x00\x00WAVE"), {0xFF, 0xD8}} {
		if got := ImageType(b); got != "" {
			t.Errorf("ImageType(%q) = %q, want \"\"", b, got)
		}
	}
}

func TestImageAnswers(t *testing.T) {
	final := pngBytes(3, 5)
	draft := pngBytes(1, 1)
	tests := []struct {
		name     string
		body     string
		kind     string // "" for success
		mime     string
		blocked  bool
		problems []string
	}{
		{name: "thought image skipped", mime: "image/png", body: answerWithParts("STOP",
			map[string]any{"text": "Drafting.", "thought": true},
			map[string]any{"inlineData": map[string]any{"mimeType": "image/png", "data": draft}, "thought": true},
			map[string]any{"inlineData": map[string]any{"mimeType": "image/png", "data": final}})},
		{name: "MIME type sniffed", mime: "image/png", body: answerWithParts("STOP",
			map[string]any{"inlineData": map[string]any{"data": final}})},
		{name: "declared JPEG, bytes PNG: PNG", mime: "image/png", body: imageAnswer("image/jpeg", final)},
		{name: "non-image inline data skipped", kind: "transient", body: answerWithParts("STOP",
			map[string]any{"inlineData": map[string]any{"mimeType": "text/plain", "data": []byte("hello")}}),
			problems: []string{"answer has no image", `declared "text/plain" holds 5 bytes that are no PNG, JPEG or WebP image`}},
		{name: "declared PNG, bytes no image", kind: "transient", body: answerWithParts("STOP",
			map[string]any{"inlineData": map[string]any{"mimeType": "image/png", "data": []byte("<html>oops</html>")}}),
			problems: []string{"answer has no image", `declared "image/png" holds 17 bytes that are no PNG, JPEG or WebP image`}},
		{name: "text only", kind: "transient", body: answerWithParts("NO_IMAGE", map[string]any{"text": "I cannot draw that."}),
			problems: []string{"finishReason NO_IMAGE", "answer has no image", `the model said "I cannot draw that."`}},
		{name: "image safety", kind: "permanent", blocked: true, body: `{"candidates":[{"finishReason":"IMAGE_SAFETY","index":0}],"usageMetadata":{"promptTokenCount":9}}`,
			problems: []string{"answer blocked", "finishReason IMAGE_SAFETY"}},
		{name: "prompt blocked", kind: "permanent", blocked: true, body: `{"promptFeedback":{"blockReason":"SAFETY"}}`,
			problems: []string{"blockReason SAFETY", "finishReason none"}},
		{name: "no candidates", kind: "transient", body: `{}`, problems: []string{"answer has no candidates"}},
		{name: "unspecified block reason is no block", kind: "transient", body: `{"promptFeedback":{"blockReason":"BLOCKED_REASON_UNSPECIFIED"}}`,
			problems: []string{"answer has no candidates"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, serve(200, tt.body))
			img, err := c.image(t.Context(), testLease("image"), "a lighthouse", ImageOptions{})
			if tt.kind == "" {
				if err != nil {
					t.Fatal(err)
				}
				if img.MIMEType != tt.mime || !bytes.Equal(img.Data, final) {
					t.Errorf("got %s (%d bytes), want %s final image", img.MIMEType, len(img.Data), tt.mime)
				}
				if tt.mime == "image/png" {
					if _, err := png.Decode(bytes.NewReader(img.Data)); err != nil {
						t.Errorf("not a PNG: %v", err)
					}
				}
				return
			}
			if got := outcomeKind(err); got != tt.kind {
				t.Fatalf("outcome %q, want %q: %v", got, tt.kind, err)
			}
			var ae *AnswerError
			if !errors.As(err, &ae) || ae.Blocked() != tt.blocked || errors.Is(err, ErrBlocked) != tt.blocked {
				t.Errorf("want an *AnswerError blocked=%v: %v", tt.blocked, err)
			}
			for _, p := range tt.problems {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error lacks %q:\n%v", p, err)
				}
			}
		})
	}
}

func TestImageValidation(t *testing.T) {
	tests := []struct {
		name  string
		p     Prompt
		o     ImageOptions
		field string
	}{
		{"empty prompt", "  ", ImageOptions{}, "prompt: empty"},
		{"invalid UTF-8", "a\xffb", ImageOptions{}, "prompt: not valid UTF-8"},
		{"aspect ratio", "a cat", ImageOptions{AspectRatio: "7:3"}, `aspect_ratio: "7:3"`},
		{"size", "a cat", ImageOptions{Size: "8K"}, `size: "8K"`},
		{"size lower case", "a cat", ImageOptions{Size: "1k"}, `size: "1k"`},
	}
	c := newTestClient(t, serve(500, "must not be called"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.GenerateImage(t.Context(), tt.p, tt.o)
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %v, want ErrInvalidInput naming %q", err, tt.field)
			}
		})
	}
	for _, r := range strings.Split(aspectRatioList, ", ") {
		if _, err := c.imageRequest("a cat", ImageOptions{AspectRatio: r}); err != nil {
			t.Errorf("aspect ratio %s refused: %v", r, err)
		}
	}
	// The emulator accepts exactly the same aspect ratios.
	if got, want := strings.Join(emulator.AspectRatios(), ", "), aspectRatioList; got != want {
		t.Errorf("emulator aspect ratios %q, this package's %q", got, want)
	}
	if _, err := c.GenerateImage(t.Context(), "a cat", ImageOptions{}); !errors.Is(err, ErrNoScheduler) {
		t.Errorf("error %v, want ErrNoScheduler", err)
	}
}
