package redact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// ParseError names the kind of mistake and never quotes the input.
func TestParseError(t *testing.T) {
	const secret = "s3cretPassw0rd"
	for _, tt := range []struct{ raw, want string }{
		{"redis://host:" + secret + "/0", "invalid port after the host"},
		{"http://[::1]:" + secret + "/", "invalid port after the host"},
		{"http://host/%z" + secret, "invalid URL escape"},
		{"http://ho%zzst/" + secret, "invalid URL escape"},
		{"http://h{" + secret + "/", "invalid character in the host"},
		{"http://h%20" + secret + "/", "invalid URL escape"},
		{"http://[" + secret + "]/", "invalid IP literal in the host"},
		{"http://[" + secret + "/", "missing ']' in the host"},
		{":" + secret, "missing protocol scheme"},
		{"a:b" + secret + "\x7f", "invalid control character in the URL"},
	} {
		_, err := url.Parse(tt.raw)
		if err == nil {
			t.Errorf("%q parses", tt.raw)
			continue
		}
		got := ParseError(err)
		if !strings.HasPrefix(got, tt.want) || strings.Contains(got, secret) {
			t.Errorf("ParseError(%v) = %q, want %q", err, got, tt.want)
		}
	}
	if got := ParseError(errors.New("x " + secret)); got != "malformed URL" {
		t.Errorf("an unknown error: %q", got)
	}
}

// URLErrors shows every *url.Error's URL as URL does, and no key shape.
func TestURLErrors(t *testing.T) {
	const key = "AIzaSyD-0123456789abcdefghijklmnopqrstu"
	raw := "http://127.0.0.1:1/p/v1beta/m?x=hunter2#frag-hunter3"
	ue := &url.Error{Op: "Post", URL: raw, Err: errors.New("dial tcp: refused")}
	err := fmt.Errorf("doRequest: %w (%s)", ue, key)
	got := URLErrors(err.Error(), errors.Join(errors.New("other"), err))
	want := `doRequest: Post "http://127.0.0.1:1/p/v1beta/m?x=[REDACTED]#[REDACTED]": dial tcp: refused ([REDACTED])`
	if got != want {
		t.Errorf("URLErrors = %q, want %q", got, want)
	}
}
