package gemini

import (
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/scheduler"
)

func TestAnalyzeRequest(t *testing.T) {
	rec := newRecorder(answer{200, nil, okAnalysisBody})
	c := newTestClient(t, rec)
	var reported []int
	c.reportTokens = func(l scheduler.Lease, n int) {
		if l.KeyID != testKeyID {
			t.Errorf("tokens reported to lease of %q", l.KeyID)
		}
		reported = append(reported, n)
	}
	s := testSlideshow()
	a, err := c.analyze(t.Context(), testLease("text"), s)
	if err != nil {
		t.Fatal(err)
	}
	want := Analysis{
		Summary: "How the moon drives the tides.",
		Hook:    "Why does the sea breathe twice a day?",
		Slides:  []SlideNote{{1, "The moon pulls."}, {2, "Spring tides."}, {3, "A chart."}},
		ImagePrompts: []string{
			"A full moon over a harbour at high tide", "A beach at low tide at dawn",
		},
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("analysis\n got %+v\nwant %+v", a, want)
	}
	if !reflect.DeepEqual(reported, []int{321}) {
		t.Errorf("reported tokens %v, want [321]", reported)
	}

	reqs := rec.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/v1beta/models/gemini-3-flash-preview:generateContent" {
		t.Errorf("request %s %s", r.Method, r.Path)
	}
	if got := r.Header.Get("x-goog-api-key"); got != testSecret {
		t.Errorf("x-goog-api-key = %q", got)
	}
	if strings.Contains(r.RawQuery, testSecret) || strings.Contains(r.Path, testSecret) {
		t.Errorf("the key is in the URL: %s?%s", r.Path, r.RawQuery)
	}
	body := r.Body
	contents := body["contents"].([]any)
	if len(contents) != 1 {
		t.Fatalf("%d contents, want 1", len(contents))
	}
	parts := contents[0].(map[string]any)["parts"].([]any)
	// intro, slide 1, slide 2 + image, slide 3 + image
	if len(parts) != 6 {
		t.Fatalf("%d parts, want 6: %v", len(parts), parts)
	}
	text := func(i int) string { s, _ := parts[i].(map[string]any)["text"].(string); return s }
	if !strings.Contains(text(0), "Source: https://example.com/deck") || !strings.Contains(text(0), "Image prompts wanted: 2") {
		t.Errorf("intro part %q", text(0))
	}
	if text(1) != "Slide 1:\nTides are driven by the moon." || text(2) != "Slide 2:\nSpring tides happen at new and full moon." {
		t.Errorf("slide parts %q, %q", text(1), text(2))
	}
	if !strings.HasPrefix(text(4), "Slide 3:") {
		t.Errorf("image-only slide part %q", text(4))
	}
	for i, want := range map[int]Slide{3: s.Slides[1], 5: s.Slides[2]} {
		inline := parts[i].(map[string]any)["inlineData"].(map[string]any)
		data, err := base64.StdEncoding.DecodeString(inline["data"].(string))
		if err != nil || !reflect.DeepEqual(data, want.Image) {
			t.Errorf("part %d: inline data differs from the slide's image (%v)", i, err)
		}
		if inline["mimeType"] != "image/png" {
			t.Errorf("part %d: mimeType %v, want image/png (given or sniffed)", i, inline["mimeType"])
		}
	}
	if _, ok := body["systemInstruction"].(map[string]any); !ok {
		t.Error("no systemInstruction")
	}
	gc := body["generationConfig"].(map[string]any)
	if gc["responseMimeType"] != "application/json" {
		t.Errorf("responseMimeType %v", gc["responseMimeType"])
	}
	schema := gc["responseSchema"].(map[string]any)
	if schema["type"] != "OBJECT" {
		t.Errorf("schema type %v", schema["type"])
	}
	if got := schema["required"]; !reflect.DeepEqual(got, []any{"summary", "hook", "slides", "image_prompts"}) {
		t.Errorf("required %v", got)
	}
	props := schema["properties"].(map[string]any)
	for name, want := range map[string]string{"summary": "STRING", "hook": "STRING", "slides": "ARRAY", "image_prompts": "ARRAY"} {
		if p, _ := props[name].(map[string]any); p["type"] != want {
			t.Errorf("properties.%s.type = %v, want %s", name, p["type"], want)
		}
	}
	count := fmt.Sprint // minItems/maxItems: a number or an int64 string
	ip := props["image_prompts"].(map[string]any)
	if count(ip["minItems"]) != "2" || count(ip["maxItems"]) != "2" {
		t.Errorf("image_prompts minItems/maxItems %v/%v, want 2", ip["minItems"], ip["maxItems"])
	}
	sl := props["slides"].(map[string]any)
	if count(sl["minItems"]) != "3" || count(sl["maxItems"]) != "3" {
		t.Errorf("slides minItems/maxItems %v/%v, want 3", sl["minItems"], sl["maxItems"])
	}
	item := sl["items"].(map[string]any)
	if !reflect.DeepEqual(item["required"], []any{"notes"}) {
		t.Errorf("slides.items.required %v", item["required"])
	}
}

func TestAnalyzeAnswers(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		kind     string   // outcome; "" for success
		blocked  bool     // errors.Is ErrBlocked (else ErrBadAnswer)
		problems []string // substrings of the error
	}{
		{name: "thoughts are skipped", body: answerWithParts("STOP",
			map[string]any{"text": "Let me think about the slides.", "thought": true},
			map[string]any{"text": okAnalysisText})},
		{name: "not JSON", body: textAnswer("Sure! Here is the analysis.", "STOP", 10), kind: "transient",
			problems: []string{"not the JSON object asked for", `"Sure! Here is the analysis."`, "finishReason STOP"}},
		{name: "truncated at MAX_TOKENS", body: textAnswer(`{"summary":"How the`, "MAX_TOKENS", 10), kind: "transient",
			problems: []string{"not the JSON object", "finishReason MAX_TOKENS"}},
		{name: "a second object after the answer", body: textAnswer(okAnalysisText+` {"again":1}`, "STOP", 10), kind: "transient",
			problems: []string{"answer holds 2 JSON objects, want one"}},
		{name: "two fenced objects", body: textAnswer("```json\n"+okAnalysisText+"\n```\nor\n```json\n"+okAnalysisText+"\n```", "STOP", 10), kind: "transient",
			problems: []string{"answer holds 2 JSON objects, want one"}},
		{name: "truncated object among sentences", body: textAnswer("Here it is: {\"summary\":\"s\",\"slides\":[{\"notes\":\"a\"},{\"notes\":\"b\"}", "MAX_TOKENS", 10), kind: "transient",
			problems: []string{"not the JSON object asked for: malformed JSON"}},
		{name: "JSON array", body: textAnswer(`[1,2]`, "STOP", 10), kind: "transient", problems: []string{"not the JSON object"}},
		{name: "missing and empty fields", body: textAnswer(`{"hook":"  ","slides":[],"image_prompts":["a",""]}`, "STOP", 10), kind: "transient",
			problems: []string{"summary is missing", "hook is empty", "slides has 0 notes, want 3: notes missing for slides 1..3",
				"image_prompts has 1 non-empty prompts, want 2: 1 missing"}},
		{name: "too few notes", body: textAnswer(`{"summary":"s","hook":"h","slides":[{"index":1,"notes":"n"}],"image_prompts":["a","b","c"]}`, "STOP", 10), kind: "transient",
			problems: []string{"slides has 1 notes, want 3: notes missing for slides 2..3"}},
		{name: "too many notes", body: textAnswer(`{"summary":"s","hook":"h","slides":[{"notes":"a"},{"notes":"b"},{"notes":"c"},{"notes":"d"}],"image_prompts":["a","b"]}`, "STOP", 10), kind: "transient",
			problems: []string{"slides has 4 notes, want 3 (one per slide): which are extra cannot be told"}},
		{name: "missing note fields", body: textAnswer(`{"summary":"s","hook":"h","slides":[{"notes":"n"},{"index":2},null],"image_prompts":["a","b"]}`, "STOP", 10), kind: "transient",
			problems: []string{"slides[1].notes (slide 2) is missing", "slides[2] (slide 3) is null"}},
		{name: "missing arrays", body: textAnswer(`{"summary":"s","hook":"h"}`, "STOP", 10), kind: "transient",
			problems: []string{"slides is missing", "image_prompts is missing"}},
		{name: "wrong type", body: textAnswer(`{"summary":1,"hook":"h","slides":[],"image_prompts":[]}`, "STOP", 10), kind: "transient",
			problems: []string{"not the JSON object asked for"}},
		{name: "no candidates", body: `{"usageMetadata":{"promptTokenCount":5}}`, kind: "transient", problems: []string{"answer has no candidates", "finishReason none"}},
		{name: "no text", body: answerWithParts("STOP"), kind: "transient", problems: []string{"answer has no text"}},
		{name: "prompt blocked", body: `{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":5}}`, kind: "permanent", blocked: true,
			problems: []string{"answer blocked", "blockReason PROHIBITED_CONTENT", "the prompt was blocked"}},
		{name: "answer stopped for safety", body: textAnswer(`{"summ`, "SAFETY", 10), kind: "permanent", blocked: true,
			problems: []string{"finishReason SAFETY", "stopped by safety filters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, serve(200, tt.body))
			a, err := c.analyze(t.Context(), testLease("text"), testSlideshow())
			if tt.kind == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(a.Slides) != 3 || len(a.ImagePrompts) != 2 {
					t.Errorf("analysis %+v", a)
				}
				return
			}
			if got := outcomeKind(err); got != tt.kind {
				t.Fatalf("outcome %q, want %q: %v", got, tt.kind, err)
			}
			var ae *AnswerError
			if !errors.As(err, &ae) {
				t.Fatalf("not an *AnswerError: %v", err)
			}
			if tt.blocked != errors.Is(err, ErrBlocked) || tt.blocked == errors.Is(err, ErrBadAnswer) || ae.Blocked() != tt.blocked {
				t.Errorf("blocked %v, want %v", ae.Blocked(), tt.blocked)
			}
			for _, p := range tt.problems {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error lacks %q:\n%v", p, err)
				}
			}
		})
	}
}

// TestAnalyzeRepairs: near-misses repaired without guessing (issue #10
// kinds 6 and 7): the JSON taken out of a fence or of sentences, what the
// request fixes (slide count and order, prompt count) taken from the request.
func TestAnalyzeRepairs(t *testing.T) {
	const rest = `"summary":"s","hook":"h","image_prompts":["p1","p2"]`
	notes := func(a Analysis) string {
		var b strings.Builder
		for _, n := range a.Slides {
			fmt.Fprintf(&b, "%d=%s ", n.Index, n.Notes)
		}
		return strings.TrimSpace(b.String())
	}
	tests := []struct {
		name, text string
		notes      string // "1=a 2=b 3=c"
		prompts    string
		repair     string // substring of the repairs; "" for none
	}{
		{name: "as asked", text: `{` + rest + `,"slides":[{"notes":"a"},{"notes":"b"},{"notes":"c"}]}`, notes: "1=a 2=b 3=c"},
		{name: "fenced", text: "```json\n{" + rest + `,"slides":[{"notes":"a"},{"notes":"b"},{"notes":"c"}]}` + "\n```",
			notes: "1=a 2=b 3=c", repair: "taken out of a code fence"},
		{name: "fenced with sentences", text: "Here is the analysis you asked for:\n\n```json\n{" + rest + `,"slides":[{"notes":"a"},{"notes":"b"},{"notes":"c"}]}` + "\n```\nLet me know if you need more.",
			notes: "1=a 2=b 3=c", repair: "taken out of a code fence"},
		{name: "bare fence", text: "```\n{" + rest + `,"slides":[{"notes":"a"},{"notes":"b"},{"notes":"c"}]}` + "```",
			notes: "1=a 2=b 3=c", repair: "code fence"},
		{name: "sentence around, no fence", text: "Sure. {" + rest + `,"slides":[{"notes":"a"},{"notes":"b"},{"notes":"c"}]} Hope it helps {really}.`,
			notes: "1=a 2=b 3=c", repair: "taken out of the text around it"},
		{name: "numbered 5,6,7", text: `{` + rest + `,"slides":[{"index":5,"notes":"a"},{"index":6,"notes":"b"},{"index":7,"notes":"c"}]}`,
			notes: "1=a 2=b 3=c", repair: "slide numbers 5,6,7 ignored"},
		{name: "numbered 0,1,2", text: `{` + rest + `,"slides":[{"index":0,"notes":"a"},{"index":1,"notes":"b"},{"index":2,"notes":"c"}]}`,
			notes: "1=a 2=b 3=c", repair: "slide numbers 0,1,2 ignored"},
		{name: "numbered 1,2,3", text: `{` + rest + `,"slides":[{"index":1,"notes":"a"},{"index":2,"notes":"b"},{"index":3,"notes":"c"}]}`, notes: "1=a 2=b 3=c"},
		{name: "numbered 2,1,3: ordered by number", text: `{` + rest + `,"slides":[{"index":2,"notes":"b"},{"index":1,"notes":"a"},{"index":3,"notes":"c"}]}`,
			notes: "1=a 2=b 3=c", repair: "ordered by their slide numbers"},
		{name: "duplicates and fractions ignored", text: `{` + rest + `,"slides":[{"index":1,"notes":"a"},{"index":1,"notes":"b"},{"index":4.5,"notes":"c"}]}`,
			notes: "1=a 2=b 3=c", repair: "slide numbers 1,1,4.5 ignored"},
		{name: "partly numbered", text: `{` + rest + `,"slides":[{"index":1,"notes":"a"},{"notes":"b"},{"index":3,"notes":"c"}]}`,
			notes: "1=a 2=b 3=c", repair: "slide numbers 1,3 ignored"},
		{name: "notes as strings", text: `{` + rest + `,"slides":["a","b","c"]}`, notes: "1=a 2=b 3=c", repair: "3 slide notes given as plain strings"},
		{name: "extra and empty prompts dropped", text: `{"summary":"s","hook":"h","image_prompts":["p1","","p2","p3"],"slides":[{"notes":"a"},{"notes":"b"},{"notes":"c"}]}`,
			notes: "1=a 2=b 3=c", repair: "image_prompts: 4 items, 2 asked for: kept the first 2 non-empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &genai.GenerateContentResponse{Candidates: []*genai.Candidate{{
				Content: genai.NewContentFromText(tt.text, genai.RoleModel), FinishReason: genai.FinishReasonStop}}}
			a, repairs, err := parseAnalysis("m", resp, 3, 2)
			if err != nil {
				t.Fatal(err)
			}
			if got := notes(a); got != tt.notes {
				t.Errorf("notes %q, want %q", got, tt.notes)
			}
			if fmt.Sprint(a.ImagePrompts) != "[p1 p2]" || a.Summary != "s" || a.Hook != "h" {
				t.Errorf("analysis %+v", a)
			}
			got := strings.Join(repairs, "; ")
			if (tt.repair == "") != (got == "") || !strings.Contains(got, tt.repair) {
				t.Errorf("repairs %q, want %q", got, tt.repair)
			}
		})
	}
}

func TestAnalyzeValidation(t *testing.T) {
	slides := testSlideshow().Slides
	tests := []struct {
		name  string
		s     Slideshow
		field string
	}{
		{"no slides", Slideshow{Images: 1}, "slides: none"},
		{"zero images", Slideshow{Slides: slides}, "images: 0"},
		{"too many images", Slideshow{Slides: slides, Images: 21}, "images: 21"},
		{"negative images", Slideshow{Slides: slides, Images: -1}, "images: -1"},
		{"empty slide", Slideshow{Slides: []Slide{{Text: "a"}, {Text: "  "}}, Images: 1}, "slides[1]: no text and no image"},
		{"not an image", Slideshow{Slides: []Slide{{Text: "a", Image: []byte("plain text, not a picture")}}, Images: 1}, "slides[0].image_mime"},
		{"declared non-image", Slideshow{Slides: []Slide{{Text: "a", Image: pngBytes(1, 1), ImageMIME: "application/pdf"}}, Images: 1}, `slides[0].image_mime: "application/pdf"`},
		{"invalid UTF-8", Slideshow{Slides: []Slide{{Text: "a\xff"}}, Images: 1}, "slides[0].text"},
	}
	c := newTestClient(t, serve(500, "must not be called"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No scheduler: input is checked before anything is submitted.
			_, err := c.AnalyzeSlideshow(t.Context(), tt.s)
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %v, want ErrInvalidInput naming %q", err, tt.field)
			}
		})
	}
	t.Run("20 images is fine", func(t *testing.T) {
		if _, err := c.analysisRequest(Slideshow{Slides: slides, Images: 20}); err != nil {
			t.Error(err)
		}
	})
	t.Run("no scheduler", func(t *testing.T) {
		if _, err := c.AnalyzeSlideshow(t.Context(), testSlideshow()); !errors.Is(err, ErrNoScheduler) {
			t.Errorf("error %v, want ErrNoScheduler", err)
		}
	})
}

func TestRetryBadAnswerOnce(t *testing.T) {
	bad := Classify(&AnswerError{Problem: "not JSON"})
	blocked := Classify(&AnswerError{Problem: "blocked", blocked: true})
	rate := &scheduler.RateLimitedError{Scope: scheduler.ScopeMinute}
	var n int
	steps := []struct {
		in   error
		kind string
	}{
		{rate, "rate_limited"}, // other outcomes pass through and do not count
		{bad, "transient"},     // first bad answer: retry
		{rate, "rate_limited"}, //
		{bad, "permanent"},     // second: give up
		{blocked, "permanent"}, // blocked: permanent whatever the count
		{bad, "permanent"},     // later ones stay permanent
	}
	for i, s := range steps {
		out := retryBadAnswerOnce(s.in, &n)
		if got := outcomeKind(out); got != s.kind {
			t.Fatalf("step %d: outcome %q, want %q (%v)", i, got, s.kind, out)
		}
	}
	if n != 3 {
		t.Errorf("counted %d bad answers, want 3", n)
	}
	var n2 int
	out := retryBadAnswerOnce(blocked, &n2)
	if out != blocked || n2 != 0 {
		t.Errorf("a blocked answer was counted or changed: %v, %d", out, n2)
	}
	n2 = 1
	if out := retryBadAnswerOnce(bad, &n2); !strings.Contains(out.Error(), "giving up after 2 unusable answers") {
		t.Errorf("second bad answer: %v", out)
	}
}

func TestEstimateTokens(t *testing.T) {
	tests := []struct {
		text   string
		images int
		want   int
	}{
		{"", 0, 0},
		{"a", 0, 1},
		{"abcd", 0, 1},
		{"abcde", 0, 2},
		{"héllo wörld!", 0, 3}, // 12 characters, not 14 bytes
		{"", 2, 2 * ImageTokens},
		{"abcdefgh", 1, 2 + ImageTokens},
		{"abcd", -3, 1},
	}
	for _, tt := range tests {
		if got := EstimateTokens(tt.text, tt.images); got != tt.want {
			t.Errorf("EstimateTokens(%q, %d) = %d, want %d", tt.text, tt.images, got, tt.want)
		}
	}
	c := newTestClient(t, serve(500, ""))
	req, err := c.analysisRequest(testSlideshow())
	if err != nil {
		t.Fatal(err)
	}
	if min := 2*ImageTokens + EstimateTokens(analysisInstruction, 0); req.tokens < min {
		t.Errorf("analysis estimate %d, want at least %d (instruction and two images)", req.tokens, min)
	}
}

// TestSDKPanicRecovered: the SDK panics on some malformed answers; the
// Client reports ErrDecode, a transient failure, instead of crashing.
func TestSDKPanicRecovered(t *testing.T) {
	for _, body := range []string{`{"candidates":"x"}`, `{"candidates":[{"citationMetadata":"x"}]}`} {
		c := newTestClient(t, serve(200, body))
		_, err := c.analyze(t.Context(), testLease("text"), testSlideshow())
		if got := outcomeKind(err); got != "transient" || !errors.Is(err, ErrDecode) {
			t.Errorf("%s: outcome %q (%v), want transient ErrDecode", body, got, err)
		}
		if !strings.Contains(err.Error(), "HTTP 200") {
			t.Errorf("%s: error does not say the answer was a 200: %v", body, err)
		}
	}
}
