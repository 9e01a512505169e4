package gemini

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/scheduler"
)

// Prompt describes an image to generate, e.g. one of Analysis.ImagePrompts.
type Prompt string

// The aspect ratios and sizes GenerateImage accepts.
const (
	aspectRatioList = "1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9"
	imageSizeList   = "1K, 2K, 4K"
)

func validAspectRatio(r string) bool {
	switch r {
	case "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9":
		return true
	}
	return false
}

func validImageSize(s string) bool { return s == "1K" || s == "2K" || s == "4K" }

// Validate reports an aspect ratio or size GenerateImage does not accept
// (empty ones take the defaults), with an error wrapping ErrInvalidInput
// that names the field and value.
func (o ImageOptions) Validate() error {
	o.withDefaults()
	if !validAspectRatio(o.AspectRatio) {
		return fmt.Errorf("%w: aspect_ratio: %q: want one of %s", ErrInvalidInput, o.AspectRatio, aspectRatioList)
	}
	if !validImageSize(o.Size) {
		return fmt.Errorf("%w: size: %q: want one of %s", ErrInvalidInput, o.Size, imageSizeList)
	}
	return nil
}

// ImageOptions shape a generated image (a plain value). The zero value asks
// for a 1K image in 9:16 at normal priority.
type ImageOptions struct {
	// AspectRatio: "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16",
	// "16:9" or "21:9". Default "9:16".
	AspectRatio string
	// Size: "1K", "2K" or "4K". Default "1K".
	Size string
	// Priority of the job in the image class.
	Priority scheduler.Priority
}

func (o *ImageOptions) withDefaults() {
	if o.AspectRatio == "" {
		o.AspectRatio = "9:16"
	}
	if o.Size == "" {
		o.Size = "1K"
	}
}

// Image is a generated image: its encoded bytes and their MIME type. A plain
// value owned by the caller.
type Image struct {
	Data     []byte
	MIMEType string
}

// GenerateImage asks the image model for an image of p, as one job of the
// image class with o.Priority, and blocks until the job ends or ctx does. It
// returns the first image of the answer (thought images, drafts the model
// may show before its final one, are skipped). Invalid input is refused
// before anything is submitted, with an error wrapping ErrInvalidInput that
// names the field. An answer without an image fails with an *AnswerError
// naming the finishReason and blockReason; a safety block fails the job at
// once, any other missing image is retried once.
func (c *Client) GenerateImage(ctx context.Context, p Prompt, o ImageOptions) (Image, error) {
	req, err := c.imageRequest(p, o)
	if err != nil {
		return Image{}, err
	}
	return run(ctx, c.cfg.Scheduler, scheduler.Job{
		Class:    c.cfg.ImageClass,
		Priority: o.Priority,
		Tokens:   req.tokens,
		Name:     jobName("image", string(p)),
	}, func(ctx context.Context, l scheduler.Lease) (Image, error) {
		return c.imageAttempt(ctx, l, req)
	})
}

// image is one attempt of GenerateImage on the lease's key, without the
// scheduler. Its error is a classified outcome.
func (c *Client) image(ctx context.Context, l scheduler.Lease, p Prompt, o ImageOptions) (Image, error) {
	req, err := c.imageRequest(p, o)
	if err != nil {
		return Image{}, scheduler.NotSent(Classify(err))
	}
	return c.imageAttempt(ctx, l, req)
}

type imageRequest struct {
	contents []*genai.Content
	config   *genai.GenerateContentConfig
	tokens   int
}

func (c *Client) imageRequest(p Prompt, o ImageOptions) (imageRequest, error) {
	o.withDefaults()
	text := strings.TrimSpace(string(p))
	if text == "" {
		return imageRequest{}, fmt.Errorf("%w: prompt: empty", ErrInvalidInput)
	}
	if !utf8.ValidString(text) {
		return imageRequest{}, fmt.Errorf("%w: prompt: not valid UTF-8", ErrInvalidInput)
	}
	if err := o.Validate(); err != nil {
		return imageRequest{}, err
	}
	return imageRequest{
		contents: []*genai.Content{genai.NewContentFromText(text, genai.RoleUser)},
		config: &genai.GenerateContentConfig{
			ResponseModalities: []string{string(genai.ModalityText), string(genai.ModalityImage)},
			ImageConfig:        &genai.ImageConfig{AspectRatio: o.AspectRatio, ImageSize: o.Size},
		},
		tokens: EstimateTokens(text, 0),
	}, nil
}

func (c *Client) imageAttempt(ctx context.Context, l scheduler.Lease, req imageRequest) (Image, error) {
	gcfg := *req.config
	resp, err := c.generate(ctx, l, c.cfg.ImageModel, req.contents, &gcfg)
	if err != nil {
		return Image{}, err
	}
	c.reportUsage(l, resp)
	img, repair, err := firstImage(c.cfg.ImageModel, resp)
	if err != nil {
		return Image{}, Classify(err)
	}
	if repair != "" {
		c.cfg.Logger.Warn().Str("key", l.KeyID).Str("model", c.cfg.ImageModel).Str("repair", repair).Msg("image answer repaired")
	}
	return img, nil
}

// firstImage returns the first inline image of the first candidate that is
// not a thought, or an *AnswerError. The image's type comes from its bytes
// (see ImageType), not from the part's mimeType, which can disagree with
// them; repair says when it did. A part whose bytes are no image is passed
// over; an answer with no usable image is unusable.
func firstImage(model string, resp *genai.GenerateContentResponse) (img Image, repair string, err error) {
	if ae := blockedAnswer(model, resp); ae != nil {
		return Image{}, "", ae
	}
	if len(resp.Candidates) == 0 || resp.Candidates[0] == nil {
		return Image{}, "", answerError(model, resp, "answer has no candidates")
	}
	var text, notImage string
	if content := resp.Candidates[0].Content; content != nil {
		for _, p := range content.Parts {
			if p == nil || p.Thought {
				continue
			}
			if b := p.InlineData; b != nil && len(b.Data) > 0 {
				mime := ImageType(b.Data)
				if mime == "" {
					if notImage == "" {
						notImage = fmt.Sprintf("an inline part declared %q holds %d bytes that are no PNG, JPEG or WebP image (they start %q)",
							b.MIMEType, len(b.Data), excerpt(string(b.Data[:min(len(b.Data), 16)])))
					}
					continue
				}
				if declared := strings.ToLower(strings.TrimSpace(b.MIMEType)); declared != mime {
					repair = fmt.Sprintf("image declared %q is %s by its bytes", b.MIMEType, mime)
				}
				return Image{Data: b.Data, MIMEType: mime}, repair, nil
			}
			if text == "" {
				text = strings.TrimSpace(p.Text)
			}
		}
	}
	problem := "answer has no image"
	if notImage != "" {
		problem += ": " + notImage
	}
	if text != "" {
		problem += fmt.Sprintf("; the model said %q", excerpt(text))
	}
	return Image{}, "", answerError(model, resp, problem)
}

// The image types an image answer can come back as (see ImageType).
const (
	MIMEPNG  = "image/png"
	MIMEJPEG = "image/jpeg"
	MIMEWebP = "image/webp"
)

// ImageType returns the MIME type of encoded image bytes by their signature:
// MIMEPNG, MIMEJPEG or MIMEWebP, the types the image models return; "" for
// anything else (other image formats included).
func ImageType(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return MIMEPNG
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return MIMEJPEG
	case len(b) >= 12 && bytes.Equal(b[:4], []byte("RIFF")) && bytes.Equal(b[8:12], []byte("WEBP")):
		return MIMEWebP
	}
	return ""
}
