package redact

import (
	"encoding/json"
	"strings"
	"testing"
)

const key = "AIzaSyA1234567890abcdefghijklmnopqrstuv" // 4 + 35 characters

func TestString(t *testing.T) {
	if len(key) != 39 {
		t.Fatalf("test key has %d characters", len(key))
	}
	r := New("s3cret-value", "")
	tests := []struct{ in, want string }{
		{"nothing here", "nothing here"},
		{"key " + key + "!", "key [REDACTED]!"},
		{"AIzaShort", "AIzaShort"},
		{"configured s3cret-value.", "configured [REDACTED]."},
		{"http://" + key + "@127.0.0.1:18090/", "http://[REDACTED]@127.0.0.1:18090/"},
		{"http://user:pass@host/x and https://u@h", "http://[REDACTED]@host/x and https://[REDACTED]@h"},
		{`"https://a:b@h/p"`, `"https://[REDACTED]@h/p"`},
		{"mail me: a@b.c", "mail me: a@b.c"},
		{"http://host/path@x", "http://host/path@x"},
	}
	for _, tt := range tests {
		if got := r.String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestJSON(t *testing.T) {
	for _, secret := range []string{`se"c\r<e>t&`, "clé\u2028", "plain"} {
		r := New(secret)
		for _, in := range []any{"got " + secret + " and " + key, map[string]string{"u": "http://x:" + secret + "@h"}} {
			b, _ := json.Marshal(in)
			got := r.JSON(b)
			if !json.Valid(got) {
				t.Fatalf("invalid JSON %s", got)
			}
			if strings.Contains(string(got), key) || strings.Contains(string(got), "plain") || !strings.Contains(string(got), Mark) {
				t.Errorf("JSON(%s) = %s", b, got)
			}
			var back any
			_ = json.Unmarshal(got, &back)
			if s, _ := json.Marshal(back); strings.Contains(string(s), secret) {
				t.Errorf("secret %q left in %s", secret, got)
			}
		}
	}
}

func TestExcerpt(t *testing.T) {
	r := New()
	long := strings.Repeat("x", 70) + key + strings.Repeat("y", 100)
	got := r.Excerpt(long, 80)
	if strings.Contains(got, "AIza") || len(got) > 83 || !strings.HasSuffix(got, "...") {
		t.Errorf("Excerpt = %q", got)
	}
	if got := r.Excerpt("short "+key, 80); got != "short [REDACTED]" {
		t.Errorf("Excerpt = %q", got)
	}
	if got := r.Excerpt(strings.Repeat("é", 50), 11); got != strings.Repeat("é", 5)+"..." {
		t.Errorf("Excerpt cut inside a character: %q", got)
	}
}

func FuzzString(f *testing.F) {
	f.Add("http://"+key+"@h", "s")
	f.Fuzz(func(t *testing.T, s, secret string) {
		r := New(secret)
		got := r.String(s)
		if strings.Contains(got, key) {
			t.Fatalf("key left in %q", got)
		}
		_ = r.Excerpt(s, 10)
	})
}
