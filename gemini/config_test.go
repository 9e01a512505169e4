package gemini

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genai"

	"github.com/slideshowd/slideshowd/scheduler"
)

func TestConfigValidate(t *testing.T) {
	ok := []Key{{ID: "a", Secret: "sa"}}
	tests := []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"valid", Config{Keys: ok}, ""},
		{"valid with base URL", Config{Keys: ok, BaseURL: "http://127.0.0.1:8080/"}, ""},
		{"no keys", Config{}, "keys: none configured"},
		{"empty id", Config{Keys: []Key{{Secret: "s"}}}, "keys[0].id: empty"},
		{"duplicate id", Config{Keys: []Key{{ID: "a", Secret: "s1"}, {ID: "a", Secret: "s2"}}}, `keys[1].id: "a": duplicate`},
		{"empty secret", Config{Keys: []Key{{ID: "a", Secret: "s"}, {ID: "b"}}}, `keys[1].secret: empty for key "b"`},
		{"relative base URL", Config{Keys: ok, BaseURL: "/v1beta"}, `base_url: "/v1beta"`},
		{"other scheme", Config{Keys: ok, BaseURL: "ftp://example.com"}, `base_url: "ftp://example.com"`},
		{"unparsable base URL", Config{Keys: ok, BaseURL: "http://a b.com/\x7f"}, "base_url: not a URL"},
		{"credentials in base URL", Config{Keys: ok, BaseURL: "https://user:hunter2@proxy.example"}, "must not carry credentials"},
		{"key in base URL's query", Config{Keys: ok, BaseURL: "https://proxy.example/v1?key=hunter2"},
			`base_url: "https://proxy.example/v1?key=[REDACTED]": must not carry credentials (query parameter "key"`},
		{"API key shaped query value", Config{Keys: ok, BaseURL: "https://proxy.example/?x=AIzaSyA1234567890abcdefghijklmnopqrstuv"},
			`(query parameter "x"`},
		{"key in the query of a bad scheme", Config{Keys: ok, BaseURL: "ftp://proxy.example/?key=hunter2"}, `base_url: "ftp://proxy.example/?key=[REDACTED]"`},
		{"token in base URL's query", Config{Keys: ok, BaseURL: "http://127.0.0.1:8080/?access_token=hunter2&v=1"}, `query parameter "access_token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error naming %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s1") || strings.Contains(err.Error(), "AIza") {
				t.Errorf("error shows a secret: %v", err)
			}
			if _, err := New(t.Context(), tt.cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

// urlRecorder records the URLs and keys of the requests it answers.
type urlRecorder struct {
	mu   sync.Mutex
	urls []*url.URL
	keys []string
	body string
}

func (u *urlRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	u.mu.Lock()
	u.urls = append(u.urls, r.URL)
	u.keys = append(u.keys, r.Header.Get("x-goog-api-key"))
	u.mu.Unlock()
	return handlerTransport{serve(200, u.body)}.RoundTrip(r)
}

func TestNewIgnoresSDKEnvironment(t *testing.T) {
	// Everything the SDK would read from the environment.
	t.Setenv("GOOGLE_GEMINI_BASE_URL", "http://sdk-env.invalid")
	t.Setenv("GOOGLE_API_KEY", "env-google-key")
	t.Setenv("GEMINI_API_KEY", "env-gemini-key")
	t.Setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
	t.Setenv("GOOGLE_CLOUD_PROJECT", "env-project")
	t.Setenv("GOOGLE_CLOUD_LOCATION", "us-central1")
	t.Setenv(BaseURLEnv, "")

	if _, err := New(t.Context(), Config{Keys: []Key{{ID: "nokey"}}}); err == nil || !strings.Contains(err.Error(), `"nokey"`) {
		t.Errorf("an empty secret was accepted (the SDK would use GOOGLE_API_KEY): %v", err)
	}

	for _, tt := range []struct {
		name, env, host string
	}{
		{"default base URL", "", "generativelanguage.googleapis.com"},
		{"GEMINI_BASE_URL", "http://emulator.test:9000", "emulator.test:9000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(BaseURLEnv, tt.env)
			rt := &urlRecorder{body: okAnalysisBody}
			c, err := New(t.Context(), Config{
				Keys:       []Key{{ID: "a", Secret: "secret-a"}, {ID: "b", Secret: "secret-b"}},
				HTTPClient: &http.Client{Transport: rt},
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"a", "b"} {
				l := testLease("text")
				l.KeyID = id
				if _, err := c.analyze(t.Context(), l, testSlideshow()); err != nil {
					t.Fatal(err)
				}
			}
			for i, u := range rt.urls {
				if u.Host != tt.host || u.Path != "/v1beta/models/gemini-3-flash-preview:generateContent" {
					t.Errorf("request %d went to %s, want host %s and the Gemini API path", i, u, tt.host)
				}
			}
			if got := strings.Join(rt.keys, ","); got != "secret-a,secret-b" {
				t.Errorf("keys sent %q, want each lease's own key", got)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv(BaseURLEnv, "")
	var cfg Config
	cfg.withDefaults()
	if cfg.BaseURL != DefaultBaseURL || cfg.TextModel != "gemini-3-flash-preview" || cfg.ImageModel != "gemini-3-pro-image-preview" ||
		cfg.TextClass != "text" || cfg.ImageClass != "image" || cfg.HTTPClient == nil {
		t.Errorf("defaults %+v", cfg)
	}
	hc := DefaultHTTPClient()
	tr, ok := hc.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport %T", hc.Transport)
	}
	if hc.Timeout != RequestTimeout || tr.TLSHandshakeTimeout == 0 || tr.ResponseHeaderTimeout == 0 ||
		tr.ResponseHeaderTimeout >= hc.Timeout || tr.MaxIdleConnsPerHost < 8 || tr.IdleConnTimeout == 0 || tr.DialContext == nil {
		t.Errorf("default HTTP client lacks timeouts or connection reuse: timeout %v, transport %+v", hc.Timeout, tr)
	}
}

func TestSecretNeverShown(t *testing.T) {
	k := Key{ID: "main", Secret: testSecret}
	cfg := Config{Keys: []Key{k}}
	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %q", k, k, k, k, k),
		fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg), fmt.Sprint(cfg.Keys),
	} {
		if strings.Contains(s, testSecret) {
			t.Errorf("secret printed: %s", s)
		}
		if !strings.Contains(s, "main") {
			t.Errorf("key id not printed: %s", s)
		}
	}

	// A server that echoes the key everywhere it can.
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("x-goog-api-key")
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"error":{"code":400,"message":"API key not valid: %s","status":"INVALID_ARGUMENT %s","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","metadata":{"key":"%s","%s":["%s"]}}]}}`, key, key, key, key, key)
	})
	c := newTestClient(t, echo)
	for _, call := range []func() error{
		func() error { _, err := c.analyze(t.Context(), testLease("text"), testSlideshow()); return err },
		func() error { _, err := c.image(t.Context(), testLease("image"), "a cat", ImageOptions{}); return err },
	} {
		err := call()
		var ke *scheduler.KeyError
		if !errors.As(err, &ke) || ke.Reason != "invalid" {
			t.Fatalf("outcome %v, want an invalid-key KeyError", err)
		}
		var ae genai.APIError
		if !errors.As(err, &ae) {
			t.Fatal("APIError not wrapped")
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%v", errors.Unwrap(err)),
			ae.Error(), ae.Message, fmt.Sprint(ae.Details)} {
			if strings.Contains(s, testSecret) {
				t.Errorf("secret in error: %s", s)
			}
		}
		if !strings.Contains(err.Error(), "API key not valid: "+redacted) {
			t.Errorf("message not kept (redacted): %v", err)
		}
	}
}

func TestRedact(t *testing.T) {
	if got := redact("a KEY b KEY", "KEY"); got != "a <redacted> b <redacted>" {
		t.Errorf("redact = %q", got)
	}
	if got := redact("abc", ""); got != "abc" {
		t.Errorf("redact with no secret = %q", got)
	}
	in := genai.APIError{Code: 400, Message: "m KEY", Details: []map[string]any{{"a": []any{"KEY", 1.0, map[string]any{"KEY": "x KEY"}}}, nil}}
	out := redactAPIError(in, "KEY").(genai.APIError)
	if s := fmt.Sprint(out); strings.Contains(s, "KEY") {
		t.Errorf("redacted APIError still shows the key: %s", s)
	}
	if in.Details[0]["a"].([]any)[0] != "KEY" {
		t.Error("redactAPIError changed its input")
	}
	other := errors.New("KEY")
	if redactAPIError(other, "KEY") != other {
		t.Error("a non-APIError was replaced")
	}
}

func TestNewContextOnlyForSetup(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	c, err := New(ctx, Config{Keys: []Key{{ID: testKeyID, Secret: testSecret}}, BaseURL: testBase,
		HTTPClient: &http.Client{Transport: handlerTransport{serve(200, okAnalysisBody)}}})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := c.analyze(t.Context(), testLease("text"), testSlideshow()); err != nil {
		t.Errorf("a client outlived by New's context fails: %v", err)
	}
}

// TestDefaultHTTPClientReusesBurst sends two bursts of concurrent requests
// through DefaultHTTPClient: the second reuses the first's connections
// instead of dialing again (with 32 idle kept per host, 168 of 200 were
// dialed again).
func TestDefaultHTTPClientReusesBurst(t *testing.T) {
	const burst = 200
	var (
		mu      sync.Mutex
		dialed  int
		arrived int
		all     = make(chan struct{})
	)
	release := func() {
		mu.Lock()
		defer mu.Unlock()
		arrived++
		if arrived == burst {
			close(all)
		}
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ch := all
		mu.Unlock()
		release()
		<-ch // every request of the burst is in flight at once: one connection each
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			dialed++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	hc := DefaultHTTPClient()
	defer hc.CloseIdleConnections()
	for round := range 2 {
		mu.Lock()
		arrived, all = 0, make(chan struct{})
		mu.Unlock()
		var wg sync.WaitGroup
		for range burst {
			wg.Go(func() {
				resp, err := hc.Post(srv.URL, "application/json", strings.NewReader("{}"))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		wg.Wait()
		mu.Lock()
		n := dialed
		mu.Unlock()
		if n != burst {
			t.Fatalf("after burst %d of %d concurrent requests: %d connections dialed, want %d (the second burst reuses the first's)", round+1, burst, n, burst)
		}
	}
}
