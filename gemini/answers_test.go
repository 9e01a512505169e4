package gemini

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
)

// Successful answers for the tests.

// testSlideshow has 3 slides (one image-only) and asks for 2 image prompts.
func testSlideshow() Slideshow {
	return Slideshow{
		Source: "https://example.com/deck",
		Slides: []Slide{
			{Text: "Tides are driven by the moon."},
			{Text: "Spring tides happen at new and full moon.", Image: pngBytes(4, 3), ImageMIME: "image/png"},
			{Image: pngBytes(2, 2)}, // MIME sniffed
		},
		Images: 2,
	}
}

const okAnalysisText = `{"summary":"How the moon drives the tides.","hook":"Why does the sea breathe twice a day?",
 "slides":[{"index":2,"notes":"Spring tides."},{"index":1,"notes":"The moon pulls."},{"index":3,"notes":"A chart."}],
 "image_prompts":["A full moon over a harbour at high tide","A beach at low tide at dawn"]}`

var (
	okAnalysisBody = textAnswer(okAnalysisText, "STOP", 321)
	okImageBody    = imageAnswer("image/png", pngBytes(9, 16))
)

// textAnswer is a 200 body whose first candidate says text.
func textAnswer(text, finish string, promptTokens int) string {
	return mustJSON(map[string]any{
		"candidates": []any{map[string]any{
			"content":      map[string]any{"role": "model", "parts": []any{map[string]any{"text": text}}},
			"finishReason": finish, "index": 0,
		}},
		"usageMetadata": map[string]any{"promptTokenCount": promptTokens, "candidatesTokenCount": 50, "totalTokenCount": promptTokens + 50},
		"modelVersion":  "gemini-3-flash-preview",
		"responseId":    "resp-1",
	})
}

// answerWithParts is a 200 body with the given parts and finishReason.
func answerWithParts(finish string, parts ...map[string]any) string {
	ps := make([]any, len(parts))
	for i, p := range parts {
		ps[i] = p
	}
	return mustJSON(map[string]any{
		"candidates": []any{map[string]any{
			"content":      map[string]any{"role": "model", "parts": ps},
			"finishReason": finish, "index": 0,
		}},
		"usageMetadata": map[string]any{"promptTokenCount": 17, "candidatesTokenCount": 1290, "totalTokenCount": 1307},
		"modelVersion":  "gemini-3-pro-image-preview",
	})
}

func imageAnswer(mime string, data []byte) string {
	return answerWithParts("STOP",
		map[string]any{"text": "Here is your image."},
		map[string]any{"inlineData": map[string]any{"mimeType": mime, "data": data}}) // []byte marshals as std base64
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// pngBytes is a w x h PNG.
func pngBytes(w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(40 * x), uint8(40 * y), 200, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err)
	}
	return b.Bytes()
}
