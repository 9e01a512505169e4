package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"unicode"

	"github.com/slideshowd/slideshowd/internal/pipeline"
)

// MaxBatchFileBytes bounds a batch file (the images it names are read apart).
const MaxBatchFileBytes = 64 << 20

// batchEntry is one slideshow of a batch file, ready to submit.
type batchEntry struct {
	req  pipeline.Request
	slug string // for the output directory
}

// batchError is a problem with a batch file: one line naming the file, the
// entry and the field.
type batchError struct{ msg string }

func (e *batchError) Error() string { return e.msg }

func badBatch(name, format string, args ...any) error {
	return &batchError{msg: name + ": " + fmt.Sprintf(format, args...)}
}

// parseBatch decodes a batch file strictly: a JSON array of
// {"source", "slides": [{"text", "image"}], "images", "priority"}; every
// entry is validated as Submit would, and the images it names are read with
// readImage (paths relative to the batch file). Errors name the entry and
// field, e.g. "batch.json: [3].images: 25: must be 1..20".
func parseBatch(name string, data []byte, readImage func(string) ([]byte, error)) ([]batchEntry, error) {
	if len(data) > MaxBatchFileBytes {
		return nil, badBatch(name, "larger than %d bytes", MaxBatchFileBytes)
	}
	// A UTF-8 byte-order mark (Windows editors write one) says nothing:
	// read the file as without it. UTF-16 is not JSON's encoding here.
	switch {
	case bytes.HasPrefix(data, []byte("\xef\xbb\xbf")):
		data = data[3:]
	case bytes.HasPrefix(data, []byte("\xff\xfe")), bytes.HasPrefix(data, []byte("\xfe\xff")):
		return nil, badBatch(name, "starts with a UTF-16 byte-order mark: save it as UTF-8")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line, col := position(data, se.Offset-1) // Offset is just past the bad byte
			return nil, badBatch(name, "line %d, column %d: %s", line, col, se.Error())
		case errors.As(err, &te):
			return nil, badBatch(name, "want a JSON array of slideshows, got %s", te.Value)
		default:
			return nil, badBatch(name, "%v", err)
		}
	}
	if len(raws) == 0 {
		return nil, badBatch(name, "no slideshows: want a JSON array with at least one")
	}
	entries := make([]batchEntry, len(raws))
	for i, raw := range raws {
		e, err := parseEntry(name, i, raw, readImage)
		if err != nil {
			return nil, err
		}
		entries[i] = e
	}
	return entries, nil
}

func parseEntry(name string, i int, raw json.RawMessage, readImage func(string) ([]byte, error)) (batchEntry, error) {
	at := fmt.Sprintf("[%d]", i)
	fields, err := object(name, at, raw, "source", "slides", "images", "priority")
	if err != nil {
		return batchEntry{}, err
	}
	var r pipeline.Request
	var imageHashes []string
	if v, ok := fields["source"]; ok {
		if r.Source, err = str(name, at+".source", v); err != nil {
			return batchEntry{}, err
		}
	}
	if v, ok := fields["priority"]; ok {
		if r.Priority, err = str(name, at+".priority", v); err != nil {
			return batchEntry{}, err
		}
	}
	if v, ok := fields["images"]; ok {
		if err := json.Unmarshal(v, &r.Images); err != nil {
			return batchEntry{}, badBatch(name, "%s.images: %s: want an integer 1..20", at, excerpt(string(v)))
		}
	} else {
		return batchEntry{}, badBatch(name, "%s.images: missing: want 1..20", at)
	}
	if v, ok := fields["slides"]; ok {
		var slides []json.RawMessage
		if err := json.Unmarshal(v, &slides); err != nil {
			return batchEntry{}, badBatch(name, "%s.slides: %s: want an array of {\"text\", \"image\"}", at, excerpt(string(v)))
		}
		for j, sraw := range slides {
			sat := fmt.Sprintf("%s.slides[%d]", at, j)
			sf, err := object(name, sat, sraw, "text", "image")
			if err != nil {
				return batchEntry{}, err
			}
			var s pipeline.SlideInput
			if v, ok := sf["text"]; ok {
				if s.Text, err = str(name, sat+".text", v); err != nil {
					return batchEntry{}, err
				}
			}
			if v, ok := sf["image"]; ok {
				path, err := str(name, sat+".image", v)
				if err != nil {
					return batchEntry{}, err
				}
				if path != "" {
					data, err := readImage(path)
					if err != nil {
						return batchEntry{}, badBatch(name, "%s.image: %q: %s", sat, path, fileProblem(err))
					}
					s.Image = data
					sum := sha256.Sum256(data)
					imageHashes = append(imageHashes, hex.EncodeToString(sum[:]))
				}
			}
			r.Slides = append(r.Slides, s)
		}
	}
	if err := pipeline.Validate(r); err != nil {
		var ie *pipeline.InputError
		if errors.As(err, &ie) {
			if ie.Value == "" {
				return batchEntry{}, badBatch(name, "%s.%s: %s", at, ie.Field, ie.Reason)
			}
			return batchEntry{}, badBatch(name, "%s.%s: %s: %s", at, ie.Field, ie.Value, ie.Reason)
		}
		return batchEntry{}, badBatch(name, "%s: %v", at, err)
	}
	// The job key: the entry's index, its JSON and its images' contents, so
	// re-running the same batch resumes and a changed entry is a new job.
	h := sha256.New()
	fmt.Fprintf(h, "slideshowd batch entry %d\x00", i)
	var compact bytes.Buffer
	if json.Compact(&compact, raw) == nil {
		h.Write(compact.Bytes())
	}
	for _, ih := range imageHashes {
		h.Write([]byte("\x00" + ih))
	}
	r.Key = "batch:" + hex.EncodeToString(h.Sum(nil))
	return batchEntry{req: r, slug: slug(r.Source)}, nil
}

// object decodes a JSON object as the HTTP API does
// (pipeline.JSONObjectMembers): members other than allowed and a member
// written twice are refused, naming the entry and field; null members are
// left out.
func object(name, at string, raw json.RawMessage, allowed ...string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, badBatch(name, "%s: %s: want an object", at, excerpt(string(raw)))
	}
	m, err := pipeline.JSONObjectMembers(raw, allowed...)
	var me *pipeline.MemberError
	if errors.As(err, &me) {
		if me.Name == "" {
			return nil, badBatch(name, "%s: %s", at, me.Reason)
		}
		return nil, badBatch(name, "%s.%s: %s", at, me.Name, me.Reason)
	}
	return m, err
}

func str(name, at string, raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", badBatch(name, "%s: %s: want a string", at, excerpt(string(raw)))
	}
	// Invalid UTF-8 and an unpaired surrogate escape decoded to U+FFFD
	// without a word: refused, as the HTTP API does.
	if problem := pipeline.JSONStringProblem(raw); problem != "" {
		return "", badBatch(name, "%s: %s", at, problem)
	}
	return s, nil
}

func fileProblem(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.Is(err, fs.ErrInvalid):
		return "not a valid path"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// position returns the 1-based line and column of a byte offset.
func position(data []byte, off int64) (int, int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

func excerpt(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// slug makes a directory name from a slideshow's source.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
			if b.Len() >= 40 {
				break
			}
		} else {
			dash = true
		}
	}
	if b.Len() == 0 {
		return "slideshow"
	}
	return b.String()
}

// outDirName is the output directory of entry i (0-based) of n.
func outDirName(i, n int, slug string) string {
	width := max(2, len(strconv.Itoa(n)))
	return fmt.Sprintf("%0*d-%s", width, i+1, slug)
}
