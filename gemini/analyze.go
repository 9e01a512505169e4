package gemini

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
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
	a, err := parseAnalysis(c.cfg.TextModel, resp, req.slides, req.images)
	if err != nil {
		return Analysis{}, Classify(err)
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
- "slides": one entry per slide, in order, with "index" the slide's number as given (1 for the first slide) and "notes" saying what the slide shows and what to say over it;
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
					Properties: map[string]*genai.Schema{
						// No minimum/maximum: they would bound each index, not
						// make the indices 1..n; parseAnalysis checks that.
						"index": {Type: genai.TypeInteger, Description: "The slide's number, 1 for the first."},
						"notes": {Type: genai.TypeString, Description: "What the slide shows and what to say over it."},
					},
					Required:         []string{"index", "notes"},
					PropertyOrdering: []string{"index", "notes"},
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
	Summary      *string     `json:"summary"`
	Hook         *string     `json:"hook"`
	Slides       *[]*rawNote `json:"slides"`
	ImagePrompts *[]*string  `json:"image_prompts"`
}

type rawNote struct {
	Index *float64 `json:"index"`
	Notes *string  `json:"notes"`
}

// parseAnalysis checks the answer against what was asked: valid JSON, every
// field present and non-empty, one note per slide (indices 1..slides, each
// once), exactly images prompts. Every problem found is listed in the
// *AnswerError.
func parseAnalysis(model string, resp *genai.GenerateContentResponse, slides, images int) (Analysis, error) {
	text, ae := answerText(model, resp)
	if ae != nil {
		return Analysis{}, ae
	}
	fail := func(problem string) (Analysis, error) {
		ae := answerError(model, resp, problem)
		return Analysis{}, ae
	}
	var raw rawAnalysis
	dec := json.NewDecoder(strings.NewReader(text))
	if err := dec.Decode(&raw); err != nil {
		return fail(fmt.Sprintf("answer is not the JSON object asked for: %v; answer starts %q", err, excerpt(text)))
	}
	if rest, _ := readRest(dec); len(bytes.TrimSpace(rest)) > 0 {
		return fail(fmt.Sprintf("answer has data after the JSON object: %q", excerpt(string(rest))))
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
	case len(*raw.Slides) != slides:
		problems = append(problems, fmt.Sprintf("slides has %d notes, want %d (one per slide)", len(*raw.Slides), slides))
	}
	if raw.Slides != nil {
		seen := make(map[int]int)
		for i, n := range *raw.Slides {
			name := fmt.Sprintf("slides[%d]", i)
			if n == nil {
				problems = append(problems, name+" is null")
				continue
			}
			notes := str(name+".notes", n.Notes)
			switch {
			case n.Index == nil:
				problems = append(problems, name+".index is missing")
			case *n.Index != math.Trunc(*n.Index) || *n.Index < 1 || *n.Index > float64(slides):
				problems = append(problems, fmt.Sprintf("%s.index is %v, want an integer in 1..%d", name, *n.Index, slides))
			default:
				idx := int(*n.Index)
				if j, dup := seen[idx]; dup {
					problems = append(problems, fmt.Sprintf("%s.index %d repeats slides[%d].index", name, idx, j))
					continue
				}
				seen[idx] = i
				a.Slides = append(a.Slides, SlideNote{Index: idx, Notes: notes})
			}
		}
	}
	switch {
	case raw.ImagePrompts == nil:
		problems = append(problems, "image_prompts is missing")
	case len(*raw.ImagePrompts) != images:
		problems = append(problems, fmt.Sprintf("image_prompts has %d items, want %d", len(*raw.ImagePrompts), images))
	}
	if raw.ImagePrompts != nil {
		for i, p := range *raw.ImagePrompts {
			a.ImagePrompts = append(a.ImagePrompts, str(fmt.Sprintf("image_prompts[%d]", i), p))
		}
	}
	if len(problems) > 0 {
		return fail(strings.Join(problems, "; "))
	}
	slices.SortFunc(a.Slides, func(x, y SlideNote) int { return x.Index - y.Index })
	return a, nil
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
