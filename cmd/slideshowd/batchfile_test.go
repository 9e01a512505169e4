package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSlugAndNames(t *testing.T) {
	tests := []struct{ in, want string }{
		{"How tides work", "how-tides-work"},
		{"  --Sourdough!! in 5 steps ", "sourdough-in-5-steps"},
		{"Ünïcode only ☃", "n-code-only"},
		{"☃☃", "slideshow"},
		{"", "slideshow"},
		{strings.Repeat("abcdefghij", 10), strings.Repeat("abcdefghij", 4)},
	}
	for _, tt := range tests {
		if got := slug(tt.in); got != tt.want {
			t.Errorf("slug(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, tt := range []struct {
		i, n int
		want string
	}{{0, 2, "01-x"}, {9, 10, "10-x"}, {4, 120, "005-x"}} {
		if got := outDirName(tt.i, tt.n, "x"); got != tt.want {
			t.Errorf("outDirName(%d, %d) = %q, want %q", tt.i, tt.n, got, tt.want)
		}
	}
	for _, tt := range []struct {
		n    int
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {45000, "45,000"}, {1234567, "1,234,567"}, {-4500, "-4,500"}} {
		if got := thousands(tt.n); got != tt.want {
			t.Errorf("thousands(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestBatchKeys(t *testing.T) {
	noImages := func(string) ([]byte, error) { return nil, fs.ErrNotExist }
	a := `[{"source": "a", "slides": [{"text": "t"}], "images": 1}, {"source": "a", "slides": [{"text": "t"}], "images": 1}]`
	es, err := parseBatch("b.json", []byte(a), noImages)
	if err != nil {
		t.Fatal(err)
	}
	if es[0].req.Key == es[1].req.Key {
		t.Error("equal entries at different indexes share a key")
	}
	again, _ := parseBatch("b.json", []byte(strings.ReplaceAll(a, ": ", ":")), noImages)
	if again[0].req.Key != es[0].req.Key {
		t.Error("the key depends on the JSON's spacing")
	}
	changed, _ := parseBatch("b.json", []byte(strings.Replace(a, `"images": 1`, `"images": 2`, 1)), noImages)
	if changed[0].req.Key == es[0].req.Key {
		t.Error("a changed entry kept its key")
	}
	png := realPNG(t)
	img := `[{"source": "a", "slides": [{"image": "x.png"}], "images": 1}]`
	k1, err := parseBatch("b.json", []byte(img), func(string) ([]byte, error) { return png, nil })
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := parseBatch("b.json", []byte(img), func(string) ([]byte, error) { return append(png, 1), nil })
	if k1[0].req.Key == k2[0].req.Key {
		t.Error("a changed slide image kept the key")
	}
}

// realPNG returns a sample slide image (a decodable PNG).
func realPNG(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "slides", "tides-1.png"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzParseBatch checks that any batch file parses or fails with one line
// naming the file, and never panics.
func FuzzParseBatch(f *testing.F) {
	f.Add(`[{"source": "s", "slides": [{"text": "t", "image": "a.png"}], "images": 2, "priority": "high"}]`)
	f.Add(`[{"source": "s", "slides": [{"txt": "t"}], "images": 2}]`)
	f.Add(`[{"source": "s", "slides": null, "images": 25}]`)
	f.Add(`{"a": 1}`)
	f.Add(`[1, "x", null]`)
	f.Add("[\n{\"source\": 1},\n]")
	png := realPNG(f)
	f.Fuzz(func(t *testing.T, data string) {
		es, err := parseBatch("f.json", []byte(data), func(p string) ([]byte, error) {
			if p == "a.png" {
				return png, nil
			}
			return nil, fs.ErrNotExist
		})
		if err != nil {
			var be *batchError
			if !errors.As(err, &be) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "f.json: ") {
				t.Fatalf("error %q: want one line naming the file", err)
			}
			return
		}
		for _, e := range es {
			if e.req.Key == "" || e.slug == "" || e.req.Images < 1 || e.req.Images > 20 {
				t.Fatalf("accepted entry %+v", e)
			}
		}
	})
}

// TestBatchStringsNotReplaced: a batch file string with invalid UTF-8 or an
// unpaired surrogate escape is refused naming the entry and field, as the
// HTTP API refuses it; encoding/json had replaced it by U+FFFD silently.
func TestBatchStringsNotReplaced(t *testing.T) {
	noImages := func(string) ([]byte, error) { return nil, fs.ErrNotExist }
	for _, tt := range []struct{ file, want string }{
		{`[{"source": "a\ud800", "slides": [{"text": "t"}], "images": 1}]`, `b.json: [0].source: not valid UTF-8: unpaired surrogate escape \ud800`},
		{`[{"source": "a", "slides": [{"text": "ok"}, {"text": "x\udc00"}], "images": 1}]`, `b.json: [0].slides[1].text: not valid UTF-8: unpaired surrogate escape \udc00`},
		{"[{\"source\": \"a\xffb\", \"slides\": [{\"text\": \"t\"}], \"images\": 1}]", `b.json: [0].source: not valid UTF-8`},
	} {
		_, err := parseBatch("b.json", []byte(tt.file), noImages)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: error %v, want %q", tt.file, err, tt.want)
		}
	}
	es, err := parseBatch("b.json", []byte(`[{"source": "\ud83d\ude00", "slides": [{"text": "t"}], "images": 1}]`), noImages)
	if err != nil || es[0].req.Source != "\U0001F600" {
		t.Errorf("a surrogate pair: %v %+v", err, es)
	}
}

// TestBatchDuplicateFields: a member written twice in an entry or a slide
// is refused naming the entry and field, as the HTTP API refuses it
// ("source: duplicate field"); encoding/json had kept the last silently, so
// a batch with "images" twice spent another number of image calls.
func TestBatchDuplicateFields(t *testing.T) {
	noImages := func(string) ([]byte, error) { return nil, fs.ErrNotExist }
	for _, tt := range []struct{ file, want string }{
		{`[{"source": "a", "slides": [{"text": "x"}], "images": 2, "images": 3}]`, `b.json: [0].images: duplicate field`},
		{`[{"source": "a", "slides": [{"text": "x"}], "images": 1}, {"source": "a", "slides": [{"text": "x"}], "images": 1, "source": "b"}]`, `b.json: [1].source: duplicate field`},
		{`[{"source": "a", "slides": [{"text": "x", "text": "y"}], "images": 1}]`, `b.json: [0].slides[0].text: duplicate field`},
		{`[{"source": "a", "slides": [{"text": "x", "image": null, "image": "p.png"}], "images": 1}]`, `b.json: [0].slides[0].image: duplicate field`},
		{`[{"source": "a", "slides": [{"txt": "x"}], "images": 1}]`, `b.json: [0].slides[0].txt: unknown field (want text, image)`},
	} {
		_, err := parseBatch("b.json", []byte(tt.file), noImages)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: error %v, want %q", tt.file, err, tt.want)
		}
	}
}

// A batch file that starts with a UTF-8 byte-order mark (as Windows editors
// write it) is read as without it, same entries and keys; it was refused
// with "invalid character 'ï' looking for beginning of value" (newcomer10
// N10-4). A UTF-16 file is refused naming its byte-order mark.
func TestBatchByteOrderMark(t *testing.T) {
	noImages := func(string) ([]byte, error) { return nil, fs.ErrNotExist }
	a := `[{"source": "a", "slides": [{"text": "t"}], "images": 1}]`
	plain, err := parseBatch("b.json", []byte(a), noImages)
	if err != nil {
		t.Fatal(err)
	}
	bom, err := parseBatch("b.json", append([]byte("\xef\xbb\xbf"), a...), noImages)
	if err != nil {
		t.Fatalf("with a UTF-8 byte-order mark: %v", err)
	}
	if len(bom) != 1 || bom[0].req.Key != plain[0].req.Key || bom[0].req.Source != "a" {
		t.Errorf("with a UTF-8 byte-order mark: %+v, want the entries without it", bom)
	}
	for _, mark := range []string{"\xff\xfe", "\xfe\xff"} {
		_, err := parseBatch("b.json", append([]byte(mark), a...), noImages)
		if err == nil || err.Error() != "b.json: starts with a UTF-16 byte-order mark: save it as UTF-8" {
			t.Errorf("UTF-16 mark % x: %v", mark, err)
		}
	}
	// A mark later in the file is an ordinary bad character, with its place.
	_, err = parseBatch("b.json", []byte("[\n\xef\xbb\xbf{}]"), noImages)
	if err == nil || !strings.HasPrefix(err.Error(), "b.json: line 2, column 1: ") {
		t.Errorf("a mark on line 2: %v", err)
	}
}
