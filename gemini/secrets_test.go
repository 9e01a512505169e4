package gemini

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/genai"
)

// A password or key typed where the port goes is not quoted (net/url's
// "invalid port \":...\" after host" is); a key in the base URL's host or
// path is refused as one in its query is; a ';' in the query does not hide
// a credential parameter from the check.
func TestValidateBaseURLShowsNoSecret(t *testing.T) {
	const key = "AIzaSyD-0123456789abcdefghijklmnopqrstu"
	const password = "s3cretPassw0rd"
	ok := []Key{{ID: "a", Secret: "sa"}}
	for _, tt := range []struct{ base, want string }{
		{"https://generativelanguage.googleapis.com:" + key, "gemini: base_url: not a URL: invalid port after the host (want a number after ':') (the value is not shown)"},
		{"http://proxy.example:" + password + "/", "gemini: base_url: not a URL: invalid port after the host"},
		{"http://[" + password + "]/", "gemini: base_url: not a URL: invalid IP literal in the host"},
		{"http://proxy.example/%zz" + password, "gemini: base_url: not a URL: invalid URL escape"},
		{"http://127.0.0.1:18399/" + key + "/", `gemini: base_url: "http://127.0.0.1:18399/[REDACTED]/": must not carry credentials (a part shaped like an API key`},
		{"http://" + key + ".example/", `gemini: base_url: "http://[REDACTED].example/": must not carry credentials (a part shaped like an API key`},
		{"http://proxy.example/?a=1;key=" + password, `gemini: base_url: "http://proxy.example/?a=[REDACTED]": want a query of name=value pairs separated by '&'`},
		{"http://proxy.example/?key=" + password + ";a=1", `want a query of name=value pairs separated by '&'`},
		{"http://proxy.example/?a=%zz&key=" + password, `want a query of name=value pairs separated by '&'`},
	} {
		err := Config{Keys: ok, BaseURL: tt.base}.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%q) = %v, want an error with %q", tt.base, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), "AIza") {
			t.Errorf("Validate(%q) shows a secret: %v", tt.base, err)
		}
	}
}

type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
}

// The HTTP client's error quotes the request's URL, built from the base
// URL: what check shows as [REDACTED] in the base URL (its fragment here)
// is redacted in the call's error text and in the *url.Error it wraps.
func TestTransportErrorRedactsBaseURL(t *testing.T) {
	const frag = "fr4gment-s3cret-value"
	c, err := New(t.Context(), Config{
		Keys:       []Key{{ID: testKeyID, Secret: testSecret}},
		BaseURL:    "http://127.0.0.1:1/base/#" + frag,
		HTTPClient: &http.Client{Transport: failingTransport{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.generate(t.Context(), testLease(DefaultTextClass), DefaultTextModel,
		[]*genai.Content{genai.NewContentFromText("x", genai.RoleUser)}, &genai.GenerateContentConfig{})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.Contains(msg, frag) || !strings.Contains(msg, "http://127.0.0.1:1/base/v1beta/") || !strings.Contains(msg, "#[REDACTED]") {
		t.Errorf("error %q: want the URL with its fragment shown as #[REDACTED]", msg)
	}
	var ue *url.Error
	if !errors.As(err, &ue) || strings.Contains(ue.URL, frag) || strings.Contains(ue.Error(), frag) {
		t.Errorf("wrapped *url.Error shows the fragment: %v", ue)
	}
}
