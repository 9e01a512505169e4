package config

import (
	"strings"
	"testing"
)

// FuzzParse checks that any file either parses or fails with one line that
// names the file, and that a parsed file validates without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("classes:\n  image:\n    rpm: -3\n"))
	f.Add([]byte("keys: [\n"))
	f.Add([]byte("keys:\n  - id: a\n    secret: x\n    bogus: 1\n"))
	f.Add([]byte("shutdown_grace: 1h\nlog: {format: json, level: debug}\n"))
	f.Add([]byte("classes: {text: {rpm: 1, rpd: 2, tpm: 3, concurrency: 4, model: m}}\n"))
	f.Add([]byte("- 1\n"))
	f.Add([]byte("classes: {image: {rpm: 18.5, rpd: 1e2, probe: maybe}}\nmax_active: -99999999999999999999\n"))
	f.Add([]byte("classes: [1, 2]\nlog: [x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error has several lines: %q", err)
			}
			if !strings.HasPrefix(err.Error(), "config: f.yaml: ") {
				t.Fatalf("error does not name the file: %q", err)
			}
			return
		}
		if err := c.Validate(); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("validation error has several lines: %q", err)
		}
	})
}
