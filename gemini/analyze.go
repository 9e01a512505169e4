package gemini

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/scheduler"
)

// MaxImagePrompts is the most image prompts one analysis may ask for.
const MaxImagePrompts = 20

// Slide is one slide of a slideshow: its text and, optionally, its image,
// sent inline. A slide needs text or an image, so the zero value is refused.
// A plain value; the calls only read it.
type Slide struct {
	Text string
	// Image is the encoded image (PNG, JPEG, WebP...); nil for none.
	Image []byte
	// ImageMIME is the image's MIME type; "" means sniffed from Image.
	ImageMIME string
}

// Slideshow is what AnalyzeSlideshow analyses. A plain value, read during
// the call only; the zero value is refused (no slides).
type Slideshow struct {
	// Source names the slideshow (a URL, a title): context for the model.
	Source string
	// Slides in order; at least one.
	Slides []Slide
	// Images is the number of image prompts wanted, 1..MaxImagePrompts.
	Images int
	// Priority of the job in the text class.
	Priority scheduler.Priority
}

// SlideNote is the analysis of one slide (a plain value). Index is the
// slide's 1-based position in Slideshow.Slides.
type SlideNote struct {
	Index int    `json:"index"`
	Notes string `json:"notes"`
}

// Analysis (a plain value) is the answer of AnalyzeSlideshow: a summary, a
// hook, one note per slide (sorted by Index, each slide exactly once) and
// exactly Slideshow.Images image prompts, none empty.
type Analysis struct {
	Summary      string      `json:"summary"`
	Hook         string      `json:"hook"`
	Slides       []SlideNote `json:"slides"`
	ImagePrompts []string    `json:"image_prompts"`
}

// AnalyzeSlideshow asks the text model for an Analysis of s, as one job of
// the text class with s.Priority, and blocks until the job ends or ctx does.
// Invalid input is refused before anything is submitted, with an error
// wrapping ErrInvalidInput that names the field. Otherwise the error is the
// scheduler's: the job's final outcome (see Classify), ctx's error, or
// ErrNoScheduler.
func (c *Client) AnalyzeSlideshow(ctx context.Context, s Slideshow) (Analysis, error) {
	req, err := c.analysisRequest(s)
	if err != nil {
		return Analysis{}, err
	}
	return run(ctx, c.cfg.Scheduler, scheduler.Job{
		Class:    c.cfg.TextClass,
		Priority: s.Priority,
		Tokens:   req.tokens,
		Name:     jobName("analyze", s.Source),
	}, func(ctx context.Context, l scheduler.Lease) (Analysis, error) {
		return c.analyzeRequest(ctx, l, req)
	})
}

// analyze is one attempt of AnalyzeSlideshow on the lease's key, without the
// scheduler. Its error is a classified outcome.
func (c *Client) analyze(ctx context.Context, l scheduler.Lease, s Slideshow) (Analysis, error) {
	req, err := c.analysisRequest(s)
	if err != nil {
		return Analysis{}, scheduler.NotSent(Classify(err))
	}
	return c.analyzeRequest(ctx, l, req)
}

func (c *Client) analyzeRequest(ctx context.Context, l scheduler.Lease, req analysisRequest) (Analysis, error) {
	// The SDK writes into the config: give each attempt its own.
	gcfg := *req.config
	resp, err := c.generate(ctx, l, c.cfg.TextModel, req.contents, &gcfg)
	if err != nil {
		return Analysis{}, err
	}
	c.reportUsage(l, resp)
	a, repairs, err := parseAnalysis(c.cfg.TextModel, resp, req.slides, req.images)
	if err != nil {
		return Analysis{}, Classify(err)
	}
	for _, r := range repairs {
		c.cfg.Logger.Warn().Str("key", l.KeyID).Str("model", c.cfg.TextModel).Str("repair", r).Msg("analysis answer repaired")
	}
	return a, nil
}

type analysisRequest struct {
	contents       []*genai.Content
	config         *genai.GenerateContentConfig
	slides, images int
	tokens         int
}

const analysisInstruction = `You analyse slideshows for short vertical videos.
Answer with one JSON object, following the response schema exactly:
- "summary": what the slideshow says, in two or three sentences;
- "hook": one opening line that makes a viewer stay;
- "slides": one entry per slide, in the order given (the first entry for slide 1), with "notes" saying what the slide shows and what to say over it;
- "image_prompts": exactly the number of prompts asked for, each a self-contained description of a new image that fits the slideshow, for an image model, with no text in the image.
Every string must be non-empty.`

// analysisRequest validates s and builds the request: the instruction, the
// slides' text and inline images, and a response schema that fixes the
// number of slide notes and image prompts.
func (c *Client) analysisRequest(s Slideshow) (analysisRequest, error) {
	if len(s.Slides) == 0 {
		return analysisRequest{}, fmt.Errorf("%w: slides: none: need at least one slide", ErrInvalidInput)
	}
	if s.Images < 1 || s.Images > MaxImagePrompts {
		return analysisRequest{}, fmt.Errorf("%w: images: %d: must be in 1..%d", ErrInvalidInput, s.Images, MaxImagePrompts)
	}
	intro := fmt.Sprintf("Source: %s\nNumber of slides: %d\nImage prompts wanted: %d",
		strings.TrimSpace(s.Source), len(s.Slides), s.Images)
	parts := []*genai.Part{{Text: intro}}
	text := analysisInstruction + intro
	images := 0
	for i, sl := range s.Slides {
		body := strings.TrimSpace(sl.Text)
		if body == "" && len(sl.Image) == 0 {
			return analysisRequest{}, fmt.Errorf("%w: slides[%d]: no text and no image", ErrInvalidInput, i)
		}
		if !utf8.ValidString(sl.Text) {
			return analysisRequest{}, fmt.Errorf("%w: slides[%d].text: not valid UTF-8", ErrInvalidInput, i)
		}
		head := "Slide " + strconv.Itoa(i+1) + ":"
		if body == "" {
			body = "(no text, see the image)"
		}
		parts = append(parts, &genai.Part{Text: head + "\n" + body})
		text += head + body
		if len(sl.Image) > 0 {
			mime := sl.ImageMIME
			if mime == "" {
				mime = http.DetectContentType(sl.Image)
			}
			if !strings.HasPrefix(mime, "image/") {
				return analysisRequest{}, fmt.Errorf("%w: slides[%d].image_mime: %q: not an image type", ErrInvalidInput, i, mime)
			}
			parts = append(parts, &genai.Part{InlineData: &genai.Blob{Data: sl.Image, MIMEType: mime}})
			images++
		}
	}
	return analysisRequest{
		contents: []*genai.Content{genai.NewContentFromParts(parts, genai.RoleUser)},
		config: &genai.GenerateContentConfig{
			SystemInstruction: genai.NewContentFromText(analysisInstruction, genai.RoleUser),
			ResponseMIMEType:  "application/json",
			ResponseSchema:    analysisSchema(len(s.Slides), s.Images),
		},
		slides: len(s.Slides),
		images: s.Images,
		tokens: EstimateTokens(text, images) + schemaTokens,
	}, nil
}

// schemaTokens is a rough cost of the response schema in the prompt.
const schemaTokens = 100

// analysisSchema is the structured-output schema of an analysis of a
// slideshow of n slides with m image prompts.
func analysisSchema(n, m int) *genai.Schema {
	n64, m64 := int64(n), int64(m)
	return &genai.Schema{
		Type: genai.TypeObject,
		Properties: map[string]*genai.Schema{
			"summary": {Type: genai.TypeString, Description: "What the slideshow says, in two or three sentences."},
			"hook":    {Type: genai.TypeString, Description: "One opening line that makes a viewer stay."},
			"slides": {
				Type:        genai.TypeArray,
				Description: "One entry per slide, in order.",
				MinItems:    &n64,
				MaxItems:    &n64,
				Items: &genai.Schema{
					Type: genai.TypeObject,
					// No slide number: the position says which slide a note
					// is for (the request fixes the count and the order), so
					// the model writes only what it must.
					Properties: map[string]*genai.Schema{
						"notes": {Type: genai.TypeString, Description: "What the slide shows and what to say over it."},
					},
					Required:         []string{"notes"},
					PropertyOrdering: []string{"notes"},
				},
			},
			"image_prompts": {
				Type:        genai.TypeArray,
				Description: "Prompts for new images that fit the slideshow.",
				MinItems:    &m64,
				MaxItems:    &m64,
				Items:       &genai.Schema{Type: genai.TypeString},
			},
		},
		Required:         []string{"summary", "hook", "slides", "image_prompts"},
		PropertyOrdering: []string{"summary", "hook", "slides", "image_prompts"},
	}
}

// rawAnalysis tells a missing field (nil) from an empty one.
type rawAnalysis struct {
	Summary      *string            `json:"summary"`
	Hook         *string            `json:"hook"`
	Slides       *[]json.RawMessage `json:"slides"`
	ImagePrompts *[]*string         `json:"image_prompts"`
}

// rawNote is one entry of "slides": {"notes": ...}; an "index" the model
// adds on its own is read too (see parseAnalysis).
type rawNote struct {
	Index *float64 `json:"index"`
	Notes *string  `json:"notes"`
}

// parseAnalysis checks the answer against what was asked and repairs the
// near-misses that can be repaired without guessing, each listed in
// repairs:
//   - the JSON value may sit in a code fence or among sentences: the one
//     JSON object of the text is taken (two or more: unusable);
//   - what the request fixes comes from the request: the note of slide i is
//     the i-th entry of "slides"; slide numbers the model adds are ignored
//     (5,6,7 or 0,1,2 for three slides), unless they are 1..n in another
//     order, which then orders the notes; an entry may be the note itself
//     (a string);
//   - extra image prompts beyond the number asked for are dropped, and so
//     are empty ones, as long as enough non-empty ones remain.
//
// It fails (an *AnswerError listing every problem) only when content is
// missing: no JSON object, summary or hook missing or empty, fewer notes
// than slides (or more: which one is extra cannot be told), an empty note,
// fewer non-empty image prompts than asked for.
func parseAnalysis(model string, resp *genai.GenerateContentResponse, slides, images int) (Analysis, []string, error) {
	text, ae := answerText(model, resp)
	if ae != nil {
		return Analysis{}, nil, ae
	}
	fail := func(problem string) (Analysis, []string, error) {
		return Analysis{}, nil, answerError(model, resp, problem)
	}
	value, repair, err := oneJSONObject(text)
	if err != nil {
		return fail(err.Error())
	}
	var repairs []string
	if repair != "" {
		repairs = append(repairs, repair)
	}
	var raw rawAnalysis
	if err := json.Unmarshal([]byte(value), &raw); err != nil {
		return fail(fmt.Sprintf("answer is not the JSON object asked for: %v; answer starts %q", err, excerpt(text)))
	}
	var problems []string
	str := func(name string, p *string) string {
		switch {
		case p == nil:
			problems = append(problems, name+" is missing")
		case strings.TrimSpace(*p) == "":
			problems = append(problems, name+" is empty")
		default:
			return strings.TrimSpace(*p)
		}
		return ""
	}
	var a Analysis
	a.Summary = str("summary", raw.Summary)
	a.Hook = str("hook", raw.Hook)
	switch {
	case raw.Slides == nil:
		problems = append(problems, "slides is missing")
	case len(*raw.Slides) < slides:
		problems = append(problems, fmt.Sprintf("slides has %d notes, want %d: notes missing for slides %d..%d",
			len(*raw.Slides), slides, len(*raw.Slides)+1, slides))
	case len(*raw.Slides) > slides:
		problems = append(problems, fmt.Sprintf("slides has %d notes, want %d (one per slide): which are extra cannot be told", len(*raw.Slides), slides))
	default:
		notes, fix, ps := slideNotes(*raw.Slides)
		problems = append(problems, ps...)
		if fix != "" {
			repairs = append(repairs, fix)
		}
		a.Slides = notes
	}
	if raw.ImagePrompts == nil {
		problems = append(problems, "image_prompts is missing")
	} else {
		dropped := 0
		for _, p := range *raw.ImagePrompts {
			if p == nil || strings.TrimSpace(*p) == "" || len(a.ImagePrompts) == images {
				dropped++
				continue
			}
			a.ImagePrompts = append(a.ImagePrompts, strings.TrimSpace(*p))
		}
		switch {
		case len(a.ImagePrompts) < images:
			problems = append(problems, fmt.Sprintf("image_prompts has %d non-empty prompts, want %d: %d missing",
				len(a.ImagePrompts), images, images-len(a.ImagePrompts)))
		case dropped > 0:
			repairs = append(repairs, fmt.Sprintf("image_prompts: %d items, %d asked for: kept the first %d non-empty", len(*raw.ImagePrompts), images, images))
		}
	}
	if len(problems) > 0 {
		return fail(strings.Join(problems, "; "))
	}
	return a, repairs, nil
}

// slideNotes reads one note per entry; see parseAnalysis for the rules. fix
// says what was repaired, problems what is missing.
func slideNotes(entries []json.RawMessage) (notes []SlideNote, fix string, problems []string) {
	n := len(entries)
	texts := make([]string, n)
	indices := make([]float64, 0, n)
	allIndexed, asStrings := true, 0
	for i, e := range entries {
		name := fmt.Sprintf("slides[%d].notes (slide %d)", i, i+1)
		if string(bytes.TrimSpace(e)) == "null" {
			problems = append(problems, fmt.Sprintf("slides[%d] (slide %d) is null", i, i+1))
			allIndexed = false
			continue
		}
		var s string
		if json.Unmarshal(e, &s) == nil {
			asStrings++
			allIndexed = false
			if texts[i] = strings.TrimSpace(s); texts[i] == "" {
				problems = append(problems, name+" is empty")
			}
			continue
		}
		var rn *rawNote
		if err := json.Unmarshal(e, &rn); err != nil || rn == nil {
			problems = append(problems, fmt.Sprintf("slides[%d] (slide %d) is not a note: %s", i, i+1, excerpt(string(e))))
			allIndexed = false
			continue
		}
		switch {
		case rn.Notes == nil:
			problems = append(problems, name+" is missing")
		case strings.TrimSpace(*rn.Notes) == "":
			problems = append(problems, name+" is empty")
		default:
			texts[i] = strings.TrimSpace(*rn.Notes)
		}
		if rn.Index == nil {
			allIndexed = false
		} else {
			indices = append(indices, *rn.Index)
		}
	}
	if len(problems) > 0 {
		return nil, "", problems
	}
	order := make([]int, n) // order[i]: the slide (0-based) of entry i
	for i := range order {
		order[i] = i
	}
	var fixes []string
	if asStrings > 0 {
		fixes = append(fixes, fmt.Sprintf("%d slide notes given as plain strings", asStrings))
	}
	if len(indices) > 0 {
		switch perm, ok := permutation(indices); {
		case allIndexed && ok && !slices.IsSorted(perm):
			order = perm
			fixes = append(fixes, "slide notes out of order: ordered by their slide numbers")
		case allIndexed && ok:
			// 1..n in order: nothing to repair.
		default:
			fixes = append(fixes, fmt.Sprintf("slide numbers %s ignored: notes taken in the order given", numberList(indices)))
		}
	}
	notes = make([]SlideNote, n)
	for i, slide := range order {
		notes[slide] = SlideNote{Index: slide + 1, Notes: texts[i]}
	}
	return notes, strings.Join(fixes, "; "), nil
}

// permutation reports whether idx are the integers 1..len(idx), each once,
// and returns them 0-based.
func permutation(idx []float64) ([]int, bool) {
	seen := make([]bool, len(idx))
	out := make([]int, len(idx))
	for i, v := range idx {
		if v != math.Trunc(v) || v < 1 || v > float64(len(idx)) || seen[int(v)-1] {
			return nil, false
		}
		seen[int(v)-1] = true
		out[i] = int(v) - 1
	}
	return out, true
}

func numberList(v []float64) string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strings.Join(parts, ",")
}

// fence matches a Markdown code fence: ```json ... ``` (any info string).
var fence = regexp.MustCompile("(?s)```[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)```")

// oneJSONObject returns the one JSON object of an answer's text. A text that
// is exactly one JSON value is returned as it is (repair ""). Otherwise the
// object may sit in a code fence or among sentences: when the text holds
// exactly one top-level JSON object, it is returned with repair saying so;
// none or several is an error naming the problem.
func oneJSONObject(text string) (value, repair string, err error) {
	trimmed := strings.TrimSpace(text)
	dec := json.NewDecoder(strings.NewReader(trimmed))
	var v json.RawMessage
	if dec.Decode(&v) == nil {
		rest, _ := readRest(dec)
		if len(bytes.TrimSpace(rest)) == 0 && dec.InputOffset() > 0 {
			return trimmed, "", nil
		}
	}
	// Fenced blocks whose content is one JSON object.
	var found []string
	for _, m := range fence.FindAllStringSubmatch(trimmed, -1) {
		body := strings.TrimSpace(m[1])
		if strings.HasPrefix(body, "{") && json.Valid([]byte(body)) {
			found = append(found, body)
		}
	}
	how := "taken out of a code fence"
	if len(found) == 0 {
		// Objects among sentences: each '{' not inside an object found
		// before starts a candidate.
		how = "taken out of the text around it"
		broken := false // a '{' opened an object that does not parse
		for i := 0; i < len(trimmed); i++ {
			if trimmed[i] != '{' {
				continue
			}
			d := json.NewDecoder(strings.NewReader(trimmed[i:]))
			var obj map[string]json.RawMessage
			if d.Decode(&obj) != nil {
				broken = true
				continue
			}
			if broken {
				// An object nested in a malformed or truncated one is
				// not the answer.
				return "", "", fmt.Errorf("answer is not the JSON object asked for: malformed JSON; answer starts %q", excerpt(text))
			}
			end := i + int(d.InputOffset())
			found = append(found, trimmed[i:end])
			i = end - 1
		}
	}
	switch len(found) {
	case 1:
		return found[0], "the JSON object was " + how, nil
	case 0:
		return "", "", fmt.Errorf("answer is not the JSON object asked for: it holds no JSON object; answer starts %q", excerpt(text))
	}
	return "", "", fmt.Errorf("answer holds %d JSON objects, want one; answer starts %q", len(found), excerpt(text))
}

func readRest(dec *json.Decoder) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(dec.Buffered())
	return b.Bytes(), err
}

// answerText returns the text of the first candidate (thoughts left out),
// or the *AnswerError saying why there is none.
func answerText(model string, resp *genai.GenerateContentResponse) (string, *AnswerError) {
	if ae := blockedAnswer(model, resp); ae != nil {
		return "", ae
	}
	if len(resp.Candidates) == 0 || resp.Candidates[0] == nil {
		return "", answerError(model, resp, "answer has no candidates")
	}
	var b strings.Builder
	if content := resp.Candidates[0].Content; content != nil {
		for _, p := range content.Parts {
			if p != nil && !p.Thought {
				b.WriteString(p.Text)
			}
		}
	}
	if strings.TrimSpace(b.String()) == "" {
		return "", answerError(model, resp, "answer has no text")
	}
	return b.String(), nil
}

// blockedAnswer returns an *AnswerError when the prompt was blocked or the
// first candidate stopped for a safety reason.
func blockedAnswer(model string, resp *genai.GenerateContentResponse) *AnswerError {
	ae := answerError(model, resp, "")
	switch {
	case ae.BlockReason != "" && ae.BlockReason != string(genai.BlockedReasonUnspecified):
		ae.Problem = "the prompt was blocked"
	case safetyFinish(genai.FinishReason(ae.FinishReason)):
		ae.Problem = "the answer was stopped by safety filters"
	default:
		return nil
	}
	ae.blocked = true
	return ae
}

// safetyFinish reports whether a finish reason means "the same request will
// be refused again".
func safetyFinish(r genai.FinishReason) bool {
	switch r {
	case genai.FinishReasonSafety, genai.FinishReasonBlocklist, genai.FinishReasonProhibitedContent,
		genai.FinishReasonSPII, genai.FinishReasonImageSafety, genai.FinishReasonImageProhibitedContent:
		return true
	}
	return false
}

func answerError(model string, resp *genai.GenerateContentResponse, problem string) *AnswerError {
	ae := &AnswerError{Model: model, Problem: problem}
	if resp == nil {
		return ae
	}
	if resp.ModelVersion != "" {
		ae.Model = resp.ModelVersion
	}
	if resp.PromptFeedback != nil {
		ae.BlockReason = string(resp.PromptFeedback.BlockReason)
	}
	if len(resp.Candidates) > 0 && resp.Candidates[0] != nil {
		ae.FinishReason = string(resp.Candidates[0].FinishReason)
	}
	return ae
}

// excerpt shortens s for an error message.
func excerpt(s string) string {
	const limit = 120
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// jobName labels a job in the scheduler's events.
func jobName(call, source string) string {
	source = strings.TrimSpace(source)
	if source == "" {
		return call
	}
	return call + " " + excerpt(source)
}
