package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genai"
)

// conforms reports the first way v breaks s, or "".
func conforms(v any, s *genai.Schema, path string) string {
	if len(s.Enum) > 0 {
		if str, ok := v.(string); !ok || !slices.Contains(s.Enum, str) {
			return fmt.Sprintf("%s: %v not in enum %v", path, v, s.Enum)
		}
	}
	switch s.Type {
	case genai.TypeObject:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %T, want object", path, v)
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				return fmt.Sprintf("%s: required %q missing", path, r)
			}
		}
		for k, x := range m {
			ps, ok := s.Properties[k]
			if !ok {
				return fmt.Sprintf("%s: unexpected property %q", path, k)
			}
			if msg := conforms(x, ps, path+"."+k); msg != "" {
				return msg
			}
		}
	case genai.TypeArray:
		l, ok := v.([]any)
		if !ok {
			return fmt.Sprintf("%s: %T, want array", path, v)
		}
		if s.MinItems != nil && int64(len(l)) < *s.MinItems || s.MaxItems != nil && int64(len(l)) > *s.MaxItems {
			return fmt.Sprintf("%s: %d items outside [%v, %v]", path, len(l), s.MinItems, s.MaxItems)
		}
		for i, x := range l {
			if msg := conforms(x, s.Items, fmt.Sprintf("%s[%d]", path, i)); msg != "" {
				return msg
			}
		}
	case genai.TypeString:
		if str, ok := v.(string); !ok || str == "" {
			return fmt.Sprintf("%s: %v, want a non-empty string", path, v)
		}
	case genai.TypeInteger, genai.TypeNumber:
		f, ok := v.(float64)
		if !ok {
			return fmt.Sprintf("%s: %T, want number", path, v)
		}
		if s.Type == genai.TypeInteger && f != math.Trunc(f) {
			return fmt.Sprintf("%s: %v is not an integer", path, f)
		}
		if s.Minimum != nil && f < *s.Minimum || s.Maximum != nil && f > *s.Maximum {
			return fmt.Sprintf("%s: %v outside [%v, %v]", path, f, s.Minimum, s.Maximum)
		}
	case genai.TypeBoolean:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("%s: %T, want boolean", path, v)
		}
	}
	return ""
}

func str() *genai.Schema { return &genai.Schema{Type: genai.TypeString} }

func analysisSchema(prompts int64) *genai.Schema {
	return &genai.Schema{
		Type:     genai.TypeObject,
		Required: []string{"title", "summary", "mood", "slides", "imagePrompts", "meta"},
		Properties: map[string]*genai.Schema{
			"title":   str(),
			"summary": str(),
			"mood":    {Type: genai.TypeString, Enum: []string{"calm", "tense", "joyful"}},
			"slides": {Type: genai.TypeArray, MinItems: genai.Ptr[int64](3), MaxItems: genai.Ptr[int64](3), Items: &genai.Schema{
				Type:     genai.TypeObject,
				Required: []string{"index", "caption", "keywords"},
				Properties: map[string]*genai.Schema{
					"index":    {Type: genai.TypeInteger, Minimum: genai.Ptr(1.0), Maximum: genai.Ptr(3.0)},
					"caption":  str(),
					"keywords": {Type: genai.TypeArray, MinItems: genai.Ptr[int64](2), MaxItems: genai.Ptr[int64](4), Items: str()},
					"score":    {Type: genai.TypeNumber, Minimum: genai.Ptr(0.0), Maximum: genai.Ptr(1.0)},
				},
			}},
			"imagePrompts": {Type: genai.TypeArray, MinItems: genai.Ptr(prompts), MaxItems: genai.Ptr(prompts), Items: str()},
			"meta": {Type: genai.TypeObject, Required: []string{"language", "safe", "nested"}, Properties: map[string]*genai.Schema{
				"language": str(),
				"safe":     {Type: genai.TypeBoolean},
				"nested": {Type: genai.TypeObject, Required: []string{"deep"}, Properties: map[string]*genai.Schema{
					"deep": {Type: genai.TypeArray, MinItems: genai.Ptr[int64](0), MaxItems: genai.Ptr[int64](0), Items: str()},
				}},
			}},
			"optionalNote": str(),
		},
	}
}

const slidesPrompt = `Analyse this slideshow and return JSON.
Slide 1: The old lighthouse keeper climbs the spiral stairs at dusk.
Slide 2: Fishing boats return through the fog, their lanterns glowing.
Slide 3: At dawn the lighthouse beam fades over the quiet harbor.`

func TestStructuredOutputFollowsSchema(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	c := client(t, e, "secret-1")
	for _, n := range []int64{0, 1, 5, 12} {
		t.Run(fmt.Sprintf("%d prompts", n), func(t *testing.T) {
			s := analysisSchema(n)
			resp, err := c.Models.GenerateContent(t.Context(), textModel, genai.Text(slidesPrompt),
				&genai.GenerateContentConfig{ResponseMIMEType: "application/json", ResponseSchema: s})
			mustOK(t, err)
			var v map[string]any
			if err := json.Unmarshal([]byte(resp.Text()), &v); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, resp.Text())
			}
			if msg := conforms(v, s, "$"); msg != "" {
				t.Fatalf("%s\n%s", msg, resp.Text())
			}
			if got := len(v["imagePrompts"].([]any)); int64(got) != n {
				t.Fatalf("%d image prompts, want %d", got, n)
			}
			// Strings come from the prompt's words.
			if !sharesWord(v["summary"].(string), slidesPrompt) {
				t.Errorf("summary %q shares no word with the slides", v["summary"])
			}
			if cand := resp.Candidates[0]; cand.FinishReason != genai.FinishReasonStop || cand.Content.Role != "model" {
				t.Errorf("candidate %+v", cand)
			}
			u := resp.UsageMetadata
			if u.PromptTokenCount != int32(len(slidesPrompt)+3)/4 || u.CandidatesTokenCount == 0 || u.TotalTokenCount != u.PromptTokenCount+u.CandidatesTokenCount {
				t.Errorf("usage %+v", u)
			}
			if resp.ModelVersion != textModel || resp.ResponseID == "" {
				t.Errorf("modelVersion %q responseId %q", resp.ModelVersion, resp.ResponseID)
			}
		})
	}
}

// sharesWord reports whether text has a word of four letters or more from source.
func sharesWord(text, source string) bool {
	words := map[string]bool{}
	for _, w := range strings.FieldsFunc(strings.ToLower(source), func(r rune) bool { return r < 'a' || r > 'z' }) {
		if len(w) >= 4 {
			words[w] = true
		}
	}
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return r < 'a' || r > 'z' }) {
		if words[w] && !stopWords[w] {
			return true
		}
	}
	return false
}

func TestImagePromptsDiffer(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	resp, err := client(t, e, "secret-1").Models.GenerateContent(t.Context(), textModel, genai.Text(slidesPrompt),
		&genai.GenerateContentConfig{ResponseMIMEType: "application/json", ResponseSchema: analysisSchema(8)})
	mustOK(t, err)
	var v struct{ ImagePrompts []string }
	mustOK(t, json.Unmarshal([]byte(resp.Text()), &v))
	seen := map[string]bool{}
	for _, p := range v.ImagePrompts {
		if seen[p] {
			t.Errorf("prompt %q repeated", p)
		}
		seen[p] = true
	}
}

func TestOutputsAreDeterministic(t *testing.T) {
	cfg := &genai.GenerateContentConfig{ResponseMIMEType: "application/json", ResponseSchema: analysisSchema(3)}
	text := func(seed int64, prompt string) string {
		e := mustNew(t, Config{Keys: []Key{{Name: "k", Secret: "s"}}, Seed: seed})
		resp, err := client(t, e, "s").Models.GenerateContent(t.Context(), textModel, genai.Text(prompt), cfg)
		mustOK(t, err)
		return resp.Text()
	}
	a := text(1, slidesPrompt)
	if b := text(1, slidesPrompt); a != b {
		t.Errorf("same request and seed, different answers:\n%s\n%s", a, b)
	}
	if b := text(2, slidesPrompt); a == b {
		t.Error("another seed gave the same answer")
	}
	if b := text(1, "A market in the rain, umbrellas and spices."); a == b {
		t.Error("another prompt gave the same answer")
	}
}

func TestResponseJSONSchema(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	// Properties in a known order (genai would sort a map): zeta first.
	schema := `{"type": "object",
		"properties": {
			"zeta": {"type": "string"},
			"alpha": {"type": ["integer", "null"], "minimum": 10, "maximum": 12},
			"kind": {"const": "analysis"},
			"pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "minItems": 2, "maxItems": 2},
			"scenes": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"$ref": "#/$defs/scene"}}
		},
		"required": ["zeta", "alpha", "kind", "pair", "scenes"],
		"$defs": {"scene": {"type": "object", "required": ["title", "tags"], "properties": {
			"title": {"type": "string", "maxLength": 12},
			"tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 1}
		}}}
	}`
	body := `{"contents":[{"parts":[{"text":"` + strings.ReplaceAll(slidesPrompt, "\n", `\n`) + `"}]}],
	"generationConfig":{"responseMimeType":"application/json","responseJsonSchema":` + schema + `}}`
	code, out := rawPost(t, e, genPath, "secret-1", body)
	if code != 200 {
		t.Fatalf("%d %s", code, out)
	}
	var resp genai.GenerateContentResponse
	mustOK(t, json.Unmarshal(out, &resp))
	text := resp.Text()
	var v struct {
		Zeta   string
		Alpha  *int
		Kind   string
		Pair   []any
		Scenes []struct {
			Title string
			Tags  []string
		}
	}
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if v.Zeta == "" || v.Alpha == nil || *v.Alpha < 10 || *v.Alpha > 12 || v.Kind != "analysis" || len(v.Scenes) != 4 || len(v.Pair) != 2 {
		t.Fatalf("answer does not follow the schema:\n%s", text)
	}
	if _, ok := v.Pair[0].(string); !ok {
		t.Errorf("pair[0] %T, want string", v.Pair[0])
	}
	if _, ok := v.Pair[1].(bool); !ok {
		t.Errorf("pair[1] %T, want bool", v.Pair[1])
	}
	for _, s := range v.Scenes {
		if s.Title == "" || len([]rune(s.Title)) > 12 || len(s.Tags) < 1 {
			t.Errorf("scene %+v", s)
		}
		for _, tag := range s.Tags {
			if tag != "a" && tag != "b" {
				t.Errorf("tag %q not in enum", tag)
			}
		}
	}
	if strings.Index(text, `"zeta"`) > strings.Index(text, `"alpha"`) {
		t.Errorf("JSON Schema property order not kept:\n%s", text)
	}
}

func TestPropertyOrdering(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	s := &genai.Schema{Type: genai.TypeObject, PropertyOrdering: []string{"zulu", "alpha"}, Properties: map[string]*genai.Schema{
		"alpha": str(), "zulu": str(), "mike": str(),
	}}
	resp, err := client(t, e, "secret-1").Models.GenerateContent(t.Context(), textModel, genai.Text("x"),
		&genai.GenerateContentConfig{ResponseMIMEType: "application/json", ResponseSchema: s})
	mustOK(t, err)
	text := resp.Text()
	z, a, m := strings.Index(text, `"zulu"`), strings.Index(text, `"alpha"`), strings.Index(text, `"mike"`)
	if !(z < a && a < m) {
		t.Errorf("order zulu, alpha, mike not kept:\n%s", text)
	}
}

func TestTextAnswers(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	c := client(t, e, "secret-1")
	t.Run("plain", func(t *testing.T) {
		resp, err := generate(t.Context(), c, textModel, slidesPrompt)
		mustOK(t, err)
		if txt := resp.Text(); len(txt) < 40 || json.Valid([]byte(txt)) || !sharesWord(txt, slidesPrompt) {
			t.Errorf("plain answer %q", txt)
		}
	})
	t.Run("candidates", func(t *testing.T) {
		resp, err := c.Models.GenerateContent(t.Context(), textModel, genai.Text(slidesPrompt), &genai.GenerateContentConfig{CandidateCount: 3})
		mustOK(t, err)
		if len(resp.Candidates) != 3 || resp.Candidates[0].Content.Parts[0].Text == resp.Candidates[1].Content.Parts[0].Text {
			t.Fatalf("candidates %+v", resp.Candidates)
		}
		for i, cand := range resp.Candidates {
			if cand.Index != int32(i) {
				t.Errorf("candidate %d has index %d", i, cand.Index)
			}
		}
	})
	t.Run("max output tokens", func(t *testing.T) {
		resp, err := c.Models.GenerateContent(t.Context(), textModel, genai.Text(slidesPrompt), &genai.GenerateContentConfig{MaxOutputTokens: 5})
		mustOK(t, err)
		cand := resp.Candidates[0]
		if cand.FinishReason != genai.FinishReasonMaxTokens || len([]rune(resp.Text())) > 20 || resp.UsageMetadata.CandidatesTokenCount > 5 {
			t.Errorf("finish %s text %q usage %+v", cand.FinishReason, resp.Text(), resp.UsageMetadata)
		}
	})
	t.Run("enum", func(t *testing.T) {
		resp, err := c.Models.GenerateContent(t.Context(), textModel, genai.Text(slidesPrompt), &genai.GenerateContentConfig{
			ResponseMIMEType: "text/x.enum", ResponseSchema: &genai.Schema{Type: genai.TypeString, Enum: []string{"calm", "tense"}}})
		mustOK(t, err)
		if txt := resp.Text(); txt != "calm" && txt != "tense" {
			t.Errorf("enum answer %q", txt)
		}
	})
	t.Run("json without schema", func(t *testing.T) {
		resp, err := c.Models.GenerateContent(t.Context(), textModel, genai.Text(slidesPrompt), &genai.GenerateContentConfig{ResponseMIMEType: "application/json"})
		mustOK(t, err)
		if !json.Valid([]byte(resp.Text())) {
			t.Errorf("not JSON: %q", resp.Text())
		}
	})
}

func TestPromptTokens(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	c := client(t, e, "secret-1")
	pixel := renderPNG(1, 4, 4, nil)
	contents := []*genai.Content{{Role: "user", Parts: []*genai.Part{
		{Text: strings.Repeat("a", 40)},
		{InlineData: &genai.Blob{MIMEType: "image/png", Data: pixel}},
		{Text: strings.Repeat("b", 2)},
	}}}
	ct, err := c.Models.CountTokens(t.Context(), textModel, contents, nil)
	mustOK(t, err)
	if want := int32(11 + 1120); ct.TotalTokens != want {
		t.Errorf("countTokens %d, want %d", ct.TotalTokens, want)
	}
	resp, err := c.Models.GenerateContent(t.Context(), textModel, contents, &genai.GenerateContentConfig{
		SystemInstruction: genai.NewContentFromText(strings.Repeat("s", 8), genai.RoleUser)})
	mustOK(t, err)
	if want := int32(11 + 1120 + 2); resp.UsageMetadata.PromptTokenCount != want {
		t.Errorf("promptTokenCount %d, want %d (system instruction included)", resp.UsageMetadata.PromptTokenCount, want)
	}
	resp, err = c.Models.GenerateContent(t.Context(), textModel, contents, &genai.GenerateContentConfig{MediaResolution: genai.MediaResolutionLow})
	mustOK(t, err)
	if want := int32(11 + 280); resp.UsageMetadata.PromptTokenCount != want {
		t.Errorf("promptTokenCount at low media resolution %d, want %d", resp.UsageMetadata.PromptTokenCount, want)
	}
	if d := resp.UsageMetadata.PromptTokensDetails; len(d) != 2 || d[0].TokenCount != 11 || d[1].Modality != genai.MediaModalityImage || d[1].TokenCount != 280 {
		t.Errorf("promptTokensDetails %+v", d)
	}
	for model, want := range map[string]int{"gemini-3-flash-preview": 1120, "gemini-3-pro-image-preview": 1120, "gemini-2.5-flash": 258} {
		if got := MediaTokens(model, ""); got != want {
			t.Errorf("MediaTokens(%s) = %d, want %d", model, got, want)
		}
	}
}

func decodePNG(t *testing.T, resp *genai.GenerateContentResponse) (image.Image, string) {
	t.Helper()
	var img image.Image
	var text string
	for _, p := range resp.Candidates[0].Content.Parts {
		switch {
		case p.InlineData != nil:
			if p.InlineData.MIMEType != "image/png" {
				t.Fatalf("mime type %q", p.InlineData.MIMEType)
			}
			var err error
			if img, err = png.Decode(bytes.NewReader(p.InlineData.Data)); err != nil {
				t.Fatalf("png.Decode: %v", err)
			}
		default:
			text += p.Text
		}
	}
	if img == nil {
		t.Fatal("no image part")
	}
	return img, text
}

func distinctColours(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
		}
	}
	return len(seen)
}

func TestImages(t *testing.T) {
	const scale = 1.0 / 16 // small images keep the test fast
	cfg := oneKey(Limits{})
	cfg.ImageScale = scale
	e := mustNew(t, cfg)
	c := client(t, e, "secret-1")
	for _, ar := range append([]string{""}, AspectRatios()...) {
		sizes := []string{"", "1K"}
		if ar == "9:16" || ar == "21:9" {
			sizes = append(sizes, "2K")
		}
		for _, size := range sizes {
			t.Run(ar+"/"+size, func(t *testing.T) {
				resp, err := c.Models.GenerateContent(t.Context(), imageModel, genai.Text("A lighthouse at dawn, "+ar), &genai.GenerateContentConfig{
					ResponseModalities: []string{"TEXT", "IMAGE"},
					ImageConfig:        &genai.ImageConfig{AspectRatio: ar, ImageSize: size},
				})
				mustOK(t, err)
				img, text := decodePNG(t, resp)
				if text == "" {
					t.Error("no text part")
				}
				rw, rh, ok := RealImageSize(ar, size)
				if !ok {
					t.Fatalf("RealImageSize(%q, %q) not ok", ar, size)
				}
				w, h := img.Bounds().Dx(), img.Bounds().Dy()
				if ww, wh := scaledSize(rw, rh, scale); w != ww || h != wh {
					t.Errorf("%dx%d, want %dx%d", w, h, ww, wh)
				}
				if ar == "" {
					ar = "1:1"
				}
				var a, b float64
				fmt.Sscanf(ar, "%g:%g", &a, &b)
				if got := float64(w) / float64(h); math.Abs(got/(a/b)-1) > 0.03 {
					t.Errorf("ratio %.3f, want %s", got, ar)
				}
				if n := distinctColours(img); n < 100 {
					t.Errorf("only %d distinct colours", n)
				}
				if resp.UsageMetadata.CandidatesTokenCount < 1120 {
					t.Errorf("usage %+v", resp.UsageMetadata)
				}
			})
		}
	}
	t.Run("4K", func(t *testing.T) {
		resp, err := c.Models.GenerateContent(t.Context(), imageModel, genai.Text("A lighthouse"), &genai.GenerateContentConfig{
			ImageConfig: &genai.ImageConfig{AspectRatio: "16:9", ImageSize: "4K"}})
		mustOK(t, err)
		img, _ := decodePNG(t, resp)
		if img.Bounds().Dx() != 344 || img.Bounds().Dy() != 192 {
			t.Errorf("4K 16:9 (5504x3072) at 1/16: %v", img.Bounds())
		}
		if resp.UsageMetadata.CandidatesTokensDetails[0].TokenCount != 2000 {
			t.Errorf("usage %+v", resp.UsageMetadata.CandidatesTokensDetails[0])
		}
	})
	t.Run("image only", func(t *testing.T) {
		resp, err := c.Models.GenerateContent(t.Context(), imageModel, genai.Text("A lighthouse"), &genai.GenerateContentConfig{
			ResponseModalities: []string{"IMAGE"}})
		mustOK(t, err)
		if parts := resp.Candidates[0].Content.Parts; len(parts) != 1 || parts[0].InlineData == nil {
			t.Errorf("parts %+v", parts)
		}
	})
	t.Run("text only from an image model", func(t *testing.T) {
		resp, err := c.Models.GenerateContent(t.Context(), imageModel, genai.Text("A lighthouse"), &genai.GenerateContentConfig{
			ResponseModalities: []string{"TEXT"}})
		mustOK(t, err)
		if parts := resp.Candidates[0].Content.Parts; len(parts) != 1 || parts[0].Text == "" {
			t.Errorf("parts %+v", parts)
		}
	})
}

func TestImagesDependOnPrompt(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	c := client(t, e, "secret-1")
	get := func(prompt string) []byte {
		resp, err := generate(t.Context(), c, imageModel, prompt)
		mustOK(t, err)
		for _, p := range resp.Candidates[0].Content.Parts {
			if p.InlineData != nil {
				return p.InlineData.Data
			}
		}
		t.Fatal("no image")
		return nil
	}
	a := get("a red fox in snow")
	if !bytes.Equal(a, get("a red fox in snow")) {
		t.Error("same prompt, different images")
	}
	if bytes.Equal(a, get("a blue whale at night")) {
		t.Error("different prompts, same image")
	}
}

func TestImageScale(t *testing.T) {
	for _, tc := range []struct {
		scale float64
		w, h  int
	}{
		{1.0 / 32, 43, 24},  // 1376x768
		{0.001, 29, 16},     // never below 16 px on the short side
		{1.0 / 4, 344, 192}, //
		{1.0 / 8, 172, 96},  // the default
	} {
		w, h := scaledSize(1376, 768, tc.scale)
		if w != tc.w || h != tc.h {
			t.Errorf("scale %v: %dx%d, want %dx%d", tc.scale, w, h, tc.w, tc.h)
		}
	}
	e := mustNew(t, Config{Keys: []Key{{Name: "k", Secret: "s"}}, ImageScale: 1.0 / 32})
	resp, err := generate(t.Context(), client(t, e, "s"), imageModel, "x")
	mustOK(t, err)
	img, _ := decodePNG(t, resp)
	if img.Bounds().Dx() != 32 || img.Bounds().Dy() != 32 {
		t.Errorf("1K square at 1/32: %v", img.Bounds())
	}
}

// TestArrayElementsAreNumbered checks that an "index" property of array
// elements numbers them 1..n, as a client asking for one note per slide
// expects.
func TestArrayElementsAreNumbered(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	n := int64(6)
	s := &genai.Schema{Type: genai.TypeObject, Required: []string{"slides"}, Properties: map[string]*genai.Schema{
		"slides": {Type: genai.TypeArray, MinItems: &n, MaxItems: &n, Items: &genai.Schema{
			Type: genai.TypeObject, Required: []string{"index", "notes"}, PropertyOrdering: []string{"index", "notes"},
			Properties: map[string]*genai.Schema{"index": {Type: genai.TypeInteger}, "notes": str()},
		}},
	}}
	resp, err := client(t, e, "secret-1").Models.GenerateContent(t.Context(), textModel, genai.Text(slidesPrompt),
		&genai.GenerateContentConfig{ResponseMIMEType: "application/json", ResponseSchema: s,
			SystemInstruction: genai.NewContentFromText("You are Bartholomew, a meticulous zookeeper.", genai.RoleUser)})
	mustOK(t, err)
	var v struct {
		Slides []struct {
			Index int
			Notes string
		}
	}
	mustOK(t, json.Unmarshal([]byte(resp.Text()), &v))
	if len(v.Slides) != int(n) {
		t.Fatalf("%d slides", len(v.Slides))
	}
	for i, sl := range v.Slides {
		if sl.Index != i+1 || sl.Notes == "" {
			t.Errorf("slide %d: %+v", i, sl)
		}
		if low := strings.ToLower(sl.Notes); strings.Contains(low, "bartholomew") || strings.Contains(low, "zookeeper") {
			t.Errorf("notes %q use the system instruction's words", sl.Notes)
		}
	}
}

// TestElementsFollowTheirSlide checks that the notes of slide i are made
// mostly of the words of "Slide i:" in the prompt.
func TestElementsFollowTheirSlide(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	slides := []string{
		"The old lighthouse keeper climbs the spiral stairs at dusk.",
		"Fishing boats return through the fog, their lanterns glowing.",
		"Bakers knead sourdough while ovens crackle and flour drifts.",
	}
	parts := []*genai.Part{{Text: "Source: https://example.com/deck\nNumber of slides: 3"}}
	for i, s := range slides {
		parts = append(parts, &genai.Part{Text: fmt.Sprintf("Slide %d:\n%s", i+1, s)})
	}
	n := int64(3)
	s := &genai.Schema{Type: genai.TypeObject, Required: []string{"slides"}, Properties: map[string]*genai.Schema{
		"slides": {Type: genai.TypeArray, MinItems: &n, MaxItems: &n, Items: &genai.Schema{
			Type: genai.TypeObject, Required: []string{"index", "notes"},
			Properties: map[string]*genai.Schema{"index": {Type: genai.TypeInteger}, "notes": str()},
		}},
	}}
	resp, err := client(t, e, "secret-1").Models.GenerateContent(t.Context(), textModel,
		[]*genai.Content{genai.NewContentFromParts(parts, genai.RoleUser)},
		&genai.GenerateContentConfig{ResponseMIMEType: "application/json", ResponseSchema: s})
	mustOK(t, err)
	var v struct {
		Slides []struct {
			Index int
			Notes string
		}
	}
	mustOK(t, json.Unmarshal([]byte(resp.Text()), &v))
	for i, sl := range v.Slides {
		own, other := 0, 0
		for _, w := range strings.FieldsFunc(strings.ToLower(sl.Notes), func(r rune) bool { return r < 'a' || r > 'z' }) {
			if len(w) < 4 || stopWords[w] {
				continue
			}
			for j, text := range slides {
				if strings.Contains(strings.ToLower(text), w) {
					if j == i {
						own++
					} else {
						other++
					}
				}
			}
		}
		if own == 0 || own < 2*other {
			t.Errorf("slide %d notes %q: %d words of its slide, %d of others", i+1, sl.Notes, own, other)
		}
		if strings.Contains(sl.Notes, "example") || strings.Contains(sl.Notes, "https") {
			t.Errorf("notes %q use words of a URL", sl.Notes)
		}
	}
}

func TestSlideMarkers(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int
		rest string
		ok   bool
	}{
		{"Slide 3: boats", 3, " boats", true},
		{"  slide 12.", 12, "", true},
		{"SLIDE #4 - fog", 4, " fog", true},
		{"Slide 2", 2, "", true},
		{"Slides 2: x", 0, "", false},
		{"Slide two: x", 0, "", false},
		{"Slide 3x", 0, "", false},
		{"Slideshow", 0, "", false},
	} {
		n, rest, ok := slideMarker(tc.line)
		if n != tc.n || rest != tc.rest || ok != tc.ok {
			t.Errorf("slideMarker(%q) = %d %q %v, want %d %q %v", tc.line, n, rest, ok, tc.n, tc.rest, tc.ok)
		}
	}
}
