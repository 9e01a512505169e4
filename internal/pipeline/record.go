package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"image"
	_ "image/gif"  // GIF slides: image.DecodeConfig
	_ "image/jpeg" // JPEG slides
	_ "image/png"  // PNG slides
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	_ "golang.org/x/image/webp" // WebP slides: registers its decoder

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/internal/redact"
	"github.com/slideshowd/slideshowd/scheduler"
)

// Limits of a Request.
const (
	MaxSlides      = 200
	MaxImages      = gemini.MaxImagePrompts
	MaxSourceBytes = 2048
	MaxTextBytes   = 20000
	// MaxInlineBytes bounds the slides' images together: they travel base64
	// encoded in one request, which the API takes up to 20 MB.
	MaxInlineBytes = 14 << 20
)

// MaxImageSide and MaxImagePixels bound a slide image's dimensions: the
// model takes nothing larger usefully, and a tiny file must not claim to be
// a huge image.
const (
	MaxImageSide   = 16384
	MaxImagePixels = 50_000_000
)

// checkImage decodes the header of a slide image (image.DecodeConfig: the
// format's own structure, not only its first bytes) and checks its format
// against mime and its dimensions against MaxImageSide and MaxImagePixels.
func checkImage(b []byte, mime string) error {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not a valid %s image: %v", strings.TrimPrefix(mime, "image/"), err)
	}
	if "image/"+format != mime {
		return fmt.Errorf("starts like %s but decodes as %s", mime, format)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > MaxImageSide || cfg.Height > MaxImageSide ||
		int64(cfg.Width)*int64(cfg.Height) > MaxImagePixels {
		return fmt.Errorf("%dx%d pixels: want sides of 1 to %d pixels and at most %d pixels in all", cfg.Width, cfg.Height, MaxImageSide, MaxImagePixels)
	}
	return nil
}

// imageTypes are the slide image types accepted.
var imageTypes = []string{"image/png", "image/jpeg", "image/webp", "image/gif"}

// recordVersion is the version of the stored job document.
const recordVersion = 1

// record is the stored job document (JSON).
type record struct {
	V   int    `json:"v"`
	ID  string `json:"id"`
	Key string `json:"key,omitempty"`
	// Digest is requestDigest of the keyed Request that created the job;
	// empty without a key and in records written before it existed.
	Digest      string           `json:"digest,omitempty"`
	Source      string           `json:"source"`
	Priority    string           `json:"priority"`
	Images      int              `json:"images"`
	Slides      []slideRecord    `json:"slides"`
	State       JobState         `json:"state"`
	Error       string           `json:"error,omitempty"`
	Analysis    *gemini.Analysis `json:"analysis,omitempty"`
	ImageStates []ImageStatus    `json:"image_states"`
	// Attempts counts the runs: 1 at Submit, plus one per Retry; 0 in
	// records written before it existed, meaning 1.
	Attempts  int        `json:"attempts,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	RetriedAt *time.Time `json:"retried_at,omitempty"`
}

// listFields are the fields of a record that Jobs filters and orders
// by: decoding only them skips the slides, the analysis and the images.
type listFields struct {
	ID        string    `json:"id"`
	Priority  string    `json:"priority"`
	State     JobState  `json:"state"`
	CreatedAt time.Time `json:"created_at"`
}

// slideRecord is a stored slide: its text and the file of its image in the
// job's directory.
type slideRecord struct {
	Text string `json:"text"`
	File string `json:"file,omitempty"`
	MIME string `json:"mime,omitempty"`
}

// Final reports whether the state is an end state (done, failed or canceled).
func (s JobState) Final() bool { return s == JobDone || s == JobFailed || s == JobCanceled }

func (r record) status() Status {
	s := Status{
		ID: r.ID, Source: r.Source, Priority: r.Priority, State: r.State, Error: r.Error,
		Images: slices.Clone(r.ImageStates), Attempts: max(r.Attempts, 1),
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	if r.RetriedAt != nil {
		t := *r.RetriedAt
		s.RetriedAt = &t
	}
	if r.Analysis != nil {
		a := *r.Analysis
		s.Analysis = &a
	}
	if s.Images == nil {
		s.Images = []ImageStatus{}
	}
	for i := range s.Images {
		if s.Images[i].State == ImageRunning {
			// Stored by a process stopped while the call was sent (or
			// by a version that stored it before the scheduler sent
			// it): nothing runs it now. A running Pipeline's Status
			// says running while the call is in flight.
			s.Images[i].State = ImagePending
		}
	}
	return s
}

// canceled is the record of the job canceled at now: running images go
// back to pending; what it finished is kept.
func (r record) canceled(now time.Time) record {
	r.ImageStates = slices.Clone(r.ImageStates)
	r.State, r.Error, r.UpdatedAt = JobCanceled, "canceled by an operator", now
	for i := range r.ImageStates {
		if r.ImageStates[i].State == ImageRunning {
			r.ImageStates[i].State = ImagePending
		}
	}
	return r
}

// reopened is a failed job's record made ready to run again: queued, the
// images that are not done pending with their errors cleared, the finished
// analysis and images kept, one more attempt counted.
func (r record) reopened(now time.Time) record {
	r.ImageStates = slices.Clone(r.ImageStates)
	r.State, r.Error = JobQueued, ""
	for i := range r.ImageStates {
		if is := &r.ImageStates[i]; is.State != ImageDone {
			is.State, is.Error, is.MIMEType = ImagePending, "", ""
		}
	}
	r.Attempts = max(r.Attempts, 1) + 1
	r.RetriedAt = &now
	r.UpdatedAt = now
	return r
}

// Validate checks r as Submit does, without storing anything: nil, or an
// *InputError naming the field.
func Validate(r Request) error {
	_, err := validate(r)
	return err
}

// validate checks a request and returns its priority.
func validate(r Request) (scheduler.Priority, error) {
	pr, ok := scheduler.ParsePriority(r.Priority)
	if !ok {
		return 0, &InputError{Field: "priority", Value: quote(r.Priority), Reason: `want "high", "normal" or "low"`}
	}
	switch {
	case strings.TrimSpace(r.Source) == "":
		return 0, &InputError{Field: "source", Reason: "empty: name the slideshow (a title or a URL)"}
	case len(r.Source) > MaxSourceBytes:
		return 0, &InputError{Field: "source", Value: quote(r.Source), Reason: fmt.Sprintf("longer than %d bytes", MaxSourceBytes)}
	case !utf8.ValidString(r.Source):
		return 0, &InputError{Field: "source", Reason: "not valid UTF-8"}
	}
	if err := checkControl("source", r.Source); err != nil {
		return 0, err
	}
	if r.Images < 1 || r.Images > MaxImages {
		return 0, &InputError{Field: "images", Value: fmt.Sprint(r.Images), Reason: fmt.Sprintf("must be 1..%d", MaxImages)}
	}
	if len(r.Slides) == 0 {
		return 0, &InputError{Field: "slides", Reason: "none: need at least one slide"}
	}
	if len(r.Slides) > MaxSlides {
		return 0, &InputError{Field: "slides", Value: fmt.Sprint(len(r.Slides)), Reason: fmt.Sprintf("more than %d slides", MaxSlides)}
	}
	inline := 0
	for i, s := range r.Slides {
		f := fmt.Sprintf("slides[%d]", i)
		if strings.TrimSpace(s.Text) == "" && len(s.Image) == 0 {
			return 0, &InputError{Field: f, Reason: "no text and no image"}
		}
		if !utf8.ValidString(s.Text) {
			return 0, &InputError{Field: f + ".text", Reason: "not valid UTF-8"}
		}
		if err := checkControl(f+".text", s.Text); err != nil {
			return 0, err
		}
		if len(s.Text) > MaxTextBytes {
			return 0, &InputError{Field: f + ".text", Value: quote(s.Text), Reason: fmt.Sprintf("longer than %d bytes", MaxTextBytes)}
		}
		if len(s.Image) == 0 {
			if s.ImageMIME != "" {
				return 0, &InputError{Field: f + ".image_mime", Value: quote(s.ImageMIME), Reason: "set without an image"}
			}
			continue
		}
		if s.ImageMIME != "" && !slices.Contains(imageTypes, s.ImageMIME) {
			return 0, &InputError{Field: f + ".image_mime", Value: quote(s.ImageMIME), Reason: "want one of " + strings.Join(imageTypes, ", ")}
		}
		got := http.DetectContentType(s.Image)
		if !slices.Contains(imageTypes, got) {
			return 0, &InputError{Field: f + ".image", Value: fmt.Sprintf("%d bytes of %s", len(s.Image), got),
				Reason: "not a PNG, JPEG, WebP or GIF image"}
		}
		if err := checkImage(s.Image, got); err != nil {
			return 0, &InputError{Field: f + ".image", Value: fmt.Sprintf("%d bytes of %s", len(s.Image), got), Reason: err.Error()}
		}
		inline += len(s.Image)
	}
	if inline > MaxInlineBytes {
		return 0, &InputError{Field: "slides", Value: fmt.Sprintf("%d bytes of images", inline),
			Reason: fmt.Sprintf("above the %d bytes one request can carry", MaxInlineBytes)}
	}
	return pr, nil
}

// requestDigest is the hex SHA-256 of the canonical form of a valid
// request: its source, priority (named, so "" and "normal" agree), image
// count and slides (text, image type as stored, image bytes), each field
// length-prefixed. The Key is not part of it.
func requestDigest(r Request, pr scheduler.Priority) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte("slideshowd request v1"))
	field([]byte(r.Source))
	field([]byte(pr.String()))
	field([]byte(strconv.Itoa(r.Images)))
	field([]byte(strconv.Itoa(len(r.Slides))))
	for _, s := range r.Slides {
		field([]byte(s.Text))
		if len(s.Image) == 0 {
			field(nil)
		} else {
			field([]byte(imageMIME(s)))
		}
		field(s.Image)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkControl refuses a control character (C0, DEL, C1) other than tab,
// newline and carriage return in a submitted string: a NUL or an escape
// sequence is never slide text, and would reach the model, the logs and
// file names as is.
func checkControl(field, s string) error {
	for i, c := range s {
		if unicode.IsControl(c) && c != '\t' && c != '\n' && c != '\r' {
			return &InputError{Field: field, Value: fmt.Sprintf("%U at byte %d", c, i),
				Reason: "control character: only tab, newline and carriage return are allowed"}
		}
	}
	return nil
}

func imageMIME(s SlideInput) string {
	if s.ImageMIME != "" {
		return s.ImageMIME
	}
	return http.DetectContentType(s.Image)
}

func extension(mime string) string {
	switch mime {
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	case "image/gif":
		return ".gif"
	default:
		return ".png"
	}
}

// imageFile is the name of generated image n (1-based).
func imageFile(n int, mime string) string {
	return fmt.Sprintf("image-%02d%s", n, extension(mime))
}

// excerpt shortens s for logs and errors, without API-key-shaped strings
// or URL user information.
func excerpt(s string) string { return redact.Redactor{}.Excerpt(s, 80) }

func quote(s string) string { return fmt.Sprintf("%q", excerpt(s)) }

// JSONStringProblem says why the JSON string raw (as written, quotes
// included) would not decode to the text it was sent as, or "" when it
// decodes faithfully: "not valid UTF-8" for invalid bytes, "not valid
// UTF-8: unpaired surrogate escape \ud800" for a \uD800-\uDFFF escape
// without its other half. encoding/json replaces both with U+FFFD without
// an error; Submit cannot tell the replacement from a U+FFFD that was sent,
// so the decoders (the HTTP API, batch files) check the raw string with
// this. raw is assumed to be one valid JSON string.
func JSONStringProblem(raw []byte) string {
	if !utf8.Valid(raw) {
		return "not valid UTF-8"
	}
	if esc := loneSurrogate(raw); esc != "" {
		return "not valid UTF-8: unpaired surrogate escape " + esc
	}
	return ""
}

// loneSurrogate returns the first \uXXXX escape of the JSON string raw
// that is half of a UTF-16 surrogate pair without its other half (a high
// surrogate D800-DBFF not followed by an escaped low one DC00-DFFF, or a
// low one alone), as written; "" when there is none. encoding/json
// decodes such an escape to U+FFFD without an error.
func loneSurrogate(raw []byte) string {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		return rune(v), err == nil
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		if !ok {
			i++ // another escape: skip the escaped byte ('\\' included)
			continue
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if lo, ok := hex4(i + 6); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				i += 11 // the pair
				continue
			}
			return string(raw[i : i+6])
		case r >= 0xDC00 && r <= 0xDFFF:
			return string(raw[i : i+6])
		}
		i += 5
	}
	return ""
}
