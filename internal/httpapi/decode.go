package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// decodeCreate decodes and checks the body of POST /v1/slideshows:
//
//	{"source": string, "slides": [{"text": string, "image": string}], "images": 1..20, "priority": "high"|"normal"|"low"}
//
// Decoding is strict: exactly one JSON object, field names matched exactly
// (case-sensitive), no unknown or duplicate fields, values of the right JSON
// type. A null value counts as an absent field. Every error is a *fieldError
// naming the field, with indexes ("slides[2].image").
func decodeCreate(body []byte) (pipeline.Request, error) {
	// A valid body is one JSON value: use it as it is (no copy of a body
	// of up to MaxBodyBytes); the decoder only runs to describe an error.
	top := json.RawMessage(body)
	if !json.Valid(body) {
		dec := json.NewDecoder(bytes.NewReader(body))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return pipeline.Request{}, syntaxError(err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return pipeline.Request{}, &fieldError{Reason: fmt.Sprintf("unexpected data after the JSON object at byte %d: want exactly one JSON value", dec.InputOffset())}
		}
		return pipeline.Request{}, &fieldError{Reason: "invalid JSON"}
	}
	members, err := objectMembers(top, "", "source", "slides", "images", "priority")
	if err != nil {
		return pipeline.Request{}, err
	}

	var req pipeline.Request
	if raw, ok := members["source"]; ok {
		if req.Source, err = decodeString(raw, "source"); err != nil {
			return pipeline.Request{}, err
		}
	}

	raw, ok := members["slides"]
	if !ok {
		return pipeline.Request{}, &fieldError{Field: "slides", Reason: "missing: want an array of {text, image} objects"}
	}
	var slides []json.RawMessage
	if kind := jsonKind(raw); kind != "array" {
		return pipeline.Request{}, &fieldError{Field: "slides", Reason: "got " + kind + ", want an array"}
	}
	if err := json.Unmarshal(raw, &slides); err != nil {
		return pipeline.Request{}, &fieldError{Field: "slides", Reason: err.Error()}
	}
	if len(slides) == 0 {
		return pipeline.Request{}, &fieldError{Field: "slides", Reason: "empty: want at least one slide"}
	}
	req.Slides = make([]pipeline.SlideInput, len(slides))
	for i, raw := range slides {
		if req.Slides[i], err = decodeSlide(raw, "slides["+strconv.Itoa(i)+"]"); err != nil {
			return pipeline.Request{}, err
		}
	}

	raw, ok = members["images"]
	if !ok {
		return pipeline.Request{}, &fieldError{Field: "images", Reason: fmt.Sprintf("missing: want an integer in 1..%d", pipeline.MaxImages)}
	}
	if req.Images, err = decodeInt(raw, "images"); err != nil {
		return pipeline.Request{}, err
	}
	if req.Images < 1 || req.Images > pipeline.MaxImages {
		return pipeline.Request{}, &fieldError{Field: "images", Value: strconv.Itoa(req.Images), Reason: fmt.Sprintf("must be in 1..%d", pipeline.MaxImages)}
	}

	req.Priority = scheduler.PriorityNormal.String()
	if raw, ok := members["priority"]; ok {
		s, err := decodeString(raw, "priority")
		if err != nil {
			return pipeline.Request{}, err
		}
		p, ok := scheduler.ParsePriority(s)
		if !ok {
			return pipeline.Request{}, &fieldError{Field: "priority", Value: quoteValue(s), Reason: `want "high", "normal" or "low"`}
		}
		req.Priority = p.String()
	}
	// Strings are checked where they are read, naming the field; this is
	// the net for invalid UTF-8 anywhere else.
	if !utf8.Valid(body) {
		return pipeline.Request{}, &fieldError{Reason: "not valid UTF-8"}
	}
	return req, nil
}

func decodeSlide(raw json.RawMessage, path string) (pipeline.SlideInput, error) {
	members, err := objectMembers(raw, path, "text", "image")
	if err != nil {
		return pipeline.SlideInput{}, err
	}
	var sl pipeline.SlideInput
	if raw, ok := members["text"]; ok {
		if sl.Text, err = decodeString(raw, path+".text"); err != nil {
			return pipeline.SlideInput{}, err
		}
	}
	if raw, ok := members["image"]; ok {
		s, err := decodeString(raw, path+".image")
		if err != nil {
			return pipeline.SlideInput{}, err
		}
		if sl.Image, sl.ImageMIME, err = decodeImage(s); err != nil {
			return pipeline.SlideInput{}, &fieldError{Field: path + ".image", Reason: err.Error()}
		}
	}
	if strings.TrimSpace(sl.Text) == "" && sl.Image == nil {
		return pipeline.SlideInput{}, &fieldError{Field: path, Reason: "no text and no image: want at least one"}
	}
	return sl, nil
}

// objectMembers reads the JSON object raw (already known to be valid JSON)
// into its members with pipeline.JSONObjectMembers, the check batch files
// share: names are matched exactly against allowed; unknown and duplicate
// names are errors naming the field under path; null members are left out.
func objectMembers(raw json.RawMessage, path string, allowed ...string) (map[string]json.RawMessage, error) {
	if kind := jsonKind(raw); kind != "object" {
		return nil, &fieldError{Field: path, Reason: "got " + kind + ", want an object"}
	}
	members, err := pipeline.JSONObjectMembers(raw, allowed...)
	var me *pipeline.MemberError
	if errors.As(err, &me) {
		field := me.Name
		if path != "" {
			field = path
			if me.Name != "" {
				field += "." + me.Name
			}
		}
		return nil, &fieldError{Field: field, Reason: me.Reason}
	}
	return members, err
}

// jsonKind names the JSON type of a valid JSON value.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func decodeString(raw json.RawMessage, field string) (string, error) {
	if kind := jsonKind(raw); kind != "string" {
		return "", &fieldError{Field: field, Value: kindValue(raw), Reason: "got " + kind + ", want a string"}
	}
	// encoding/json replaces invalid UTF-8 and an unpaired surrogate escape
	// ("\ud800") with U+FFFD without a word.
	if problem := pipeline.JSONStringProblem(raw); problem != "" {
		return "", &fieldError{Field: field, Reason: problem}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &fieldError{Field: field, Reason: err.Error()}
	}
	return s, nil
}

func decodeInt(raw json.RawMessage, field string) (int, error) {
	if kind := jsonKind(raw); kind != "number" {
		return 0, &fieldError{Field: field, Value: kindValue(raw), Reason: "got " + kind + ", want an integer"}
	}
	s := string(bytes.TrimSpace(raw))
	n, err := strconv.ParseInt(s, 10, 32)
	if errors.Is(err, strconv.ErrRange) {
		return 0, &fieldError{Field: field, Value: writtenValue(s), Reason: "out of range"}
	}
	if err != nil {
		return 0, &fieldError{Field: field, Value: writtenValue(s), Reason: "want an integer"}
	}
	return int(n), nil
}

// kindValue renders a short JSON scalar for an error message as it was
// written: a number or a boolean bare (2.0, true), a string quoted;
// composite values are not echoed.
func kindValue(raw json.RawMessage) string {
	switch jsonKind(raw) {
	case "number", "boolean":
		return writtenValue(string(bytes.TrimSpace(raw)))
	case "string":
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return quoteValue(s)
		}
	}
	return ""
}

// writtenValue renders a JSON number or boolean for an error message as it
// was written, without quotes (a number is not a string: "images: 2.0",
// as the config's errors write it), cut after maxValueRunes runes.
func writtenValue(s string) string {
	if len(s) > maxValueRunes { // a valid JSON number or boolean is ASCII
		return s[:maxValueRunes] + "..."
	}
	return s
}

// syntaxError describes a body that is not one JSON value.
func syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return &fieldError{Reason: "empty: want a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &fieldError{Reason: "truncated JSON"}
	case errors.As(err, &se):
		return &fieldError{Reason: fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)}
	}
	return &fieldError{Reason: "invalid JSON: " + err.Error()}
}

// Image types accepted for slide images: those the Gemini API takes as
// inline image data and that can be recognised from their first bytes.
const (
	mimePNG  = "image/png"
	mimeJPEG = "image/jpeg"
	mimeWebP = "image/webp"
	mimeGIF  = "image/gif"
)

// decodeImage decodes a slide image: standard base64 (RFC 4648 section 4,
// with padding; line breaks are ignored), or a data URL
// "data:image/png;base64,...." whose media type must match the bytes. It
// returns the bytes and their MIME type, sniffed from the content.
func decodeImage(s string) ([]byte, string, error) {
	declared := ""
	if rest, ok := strings.CutPrefix(s, "data:"); ok {
		meta, payload, ok := strings.Cut(rest, ",")
		if !ok {
			return nil, "", errors.New("not a valid data URL: no comma before the data")
		}
		params := strings.Split(meta, ";")
		if params[len(params)-1] != "base64" {
			return nil, "", errors.New(`data URL: must be base64-encoded ("data:image/png;base64,...")`)
		}
		declared = strings.ToLower(strings.TrimSpace(params[0]))
		if declared == "image/jpg" {
			declared = mimeJPEG
		}
		s = payload
	}
	if s == "" {
		return nil, "", errors.New("empty: want base64 of a PNG, JPEG, WebP or GIF image")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, "", fmt.Errorf("not valid base64: %v", err)
	}
	mime := sniffImage(b)
	if mime == "" {
		return nil, "", errors.New("not a PNG, JPEG, WebP or GIF image")
	}
	if declared != "" && declared != mime {
		return nil, "", fmt.Errorf("data URL says %s but the data is %s", quoteValue(declared), mime)
	}
	return b, mime, nil
}

// sniffImage returns the MIME type of a PNG, JPEG, WebP or GIF image from its
// signature, or "".
func sniffImage(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return mimePNG
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		return mimeJPEG
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return mimeWebP
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return mimeGIF
	}
	return ""
}
