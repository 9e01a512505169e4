package gemini

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	redactlib "github.com/slideshowd/slideshowd/internal/redact"
	"github.com/slideshowd/slideshowd/scheduler"
)

// Defaults of Config.
const (
	DefaultTextModel  = "gemini-3-flash-preview"
	DefaultImageModel = "gemini-3-pro-image-preview"
	DefaultTextClass  = "text"
	DefaultImageClass = "image"
	// DefaultBaseURL is Google's Gemini API endpoint.
	DefaultBaseURL = "https://generativelanguage.googleapis.com/"
	// BaseURLEnv is the environment variable read when Config.BaseURL is "".
	BaseURLEnv = "GEMINI_BASE_URL"
	// RequestTimeout bounds one request of the default HTTP client, long
	// enough for a 4K image.
	RequestTimeout = 5 * time.Minute
)

// Key is one Gemini API key. ID names it in errors, logs and the scheduler's
// lanes (it must match a scheduler key id); Secret is the key itself and
// never appears in an error, a log line or String. Keys are plain values,
// safe to copy; the zero value is not a usable key.
type Key struct {
	ID     string
	Secret string `json:"-" yaml:"-"`
}

// String returns the key's id, never its secret.
func (k Key) String() string { return "key " + k.ID }

// GoString hides the secret from %#v.
func (k Key) GoString() string { return fmt.Sprintf("gemini.Key{ID: %q, Secret: <redacted>}", k.ID) }

// Config describes a Client. Field comments give the defaults that New fills
// in; the zero value is not valid (it has no keys).
type Config struct {
	// Keys are the API keys, one *genai.Client each; at least one. Ids must
	// be unique and non-empty, secrets non-empty (an empty secret would let
	// the SDK fall back to GOOGLE_API_KEY / GEMINI_API_KEY).
	Keys []Key
	// BaseURL of the Gemini API. Default: the environment variable
	// GEMINI_BASE_URL, then DefaultBaseURL. It is always passed to the SDK
	// explicitly, so GOOGLE_GEMINI_BASE_URL is never used.
	BaseURL string
	// HTTPClient sends the requests of every key. Default: a client with
	// dial, TLS-handshake and response-header timeouts, a RequestTimeout
	// overall timeout and connection reuse (see DefaultHTTPClient). A
	// request's write time, which its window slot may count from, is when
	// its last byte went to the socket on DefaultHTTPClient's HTTP/1.1
	// connections; with another client's it is when the transport reports
	// the request written (httptrace's WroteRequest), over HTTP/1.1 before
	// the transport's buffer's last bytes (up to 4 KiB) reach the socket.
	// See Client.
	HTTPClient *http.Client
	// TextModel analyses slideshows. Default DefaultTextModel.
	TextModel string
	// ImageModel generates images. Default DefaultImageModel.
	ImageModel string
	// TextClass and ImageClass are the scheduler classes of the two calls.
	// Defaults DefaultTextClass and DefaultImageClass.
	TextClass, ImageClass string
	// Scheduler runs the calls; AnalyzeSlideshow and GenerateImage return
	// ErrNoScheduler without it. Configure it with Classify as its
	// Classifier and the same key ids.
	Scheduler *scheduler.Scheduler
	// Logger receives a warning for each answer repaired before use (JSON
	// taken out of a code fence, slide numbers ignored, an image's type
	// read from its bytes). Default zerolog.Nop().
	Logger zerolog.Logger
}

// DefaultIdleConnsPerHost is how many idle connections DefaultHTTPClient
// keeps per host (and in all) for the next requests. A lane whose 60 s
// window reopens sends its minute's requests in a burst: over HTTP/1.1 each
// request in flight holds a connection, so a burst finds the previous one's
// connections idle and reuses them instead of dialing (and, with TLS,
// handshaking) hundreds anew. A request on a new connection reaches the API
// later (the dial, the handshake, the server's accept): in the binary runs
// of 2026-12-01, 5 to 10 times as often more than the class's window_margin
// after its stamp as one on a reused connection, with 32 kept. An idle
// connection costs two goroutines and about 10 KiB of buffers; they close
// after 90 s unused.
const DefaultIdleConnsPerHost = 512

// DefaultHTTPClient returns the HTTP client New uses when Config.HTTPClient
// is nil: 10 s to dial and for the TLS handshake, up to 4 min for the
// response headers (image generation answers only when done), RequestTimeout
// overall, HTTP/2 and up to DefaultIdleConnsPerHost idle connections per
// host kept for reuse. Its dialer wraps each connection so that, over
// HTTP/1.1, the Client learns when each request's last byte went to the
// socket (each Write while a request owns the connection); used for other
// requests, the wrapper only passes the Writes through.
func DefaultHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: RequestTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           stampDial(dialer.DialContext), // see Client.traceWrites
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 4 * time.Minute,
			ExpectContinueTimeout: time.Second,
			MaxIdleConns:          DefaultIdleConnsPerHost,
			MaxIdleConnsPerHost:   DefaultIdleConnsPerHost,
			IdleConnTimeout:       90 * time.Second,
		},
	}
}

func (c *Config) withDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = os.Getenv(BaseURLEnv)
	}
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.HTTPClient == nil {
		c.HTTPClient = DefaultHTTPClient()
	}
	if c.TextModel == "" {
		c.TextModel = DefaultTextModel
	}
	if c.ImageModel == "" {
		c.ImageModel = DefaultImageModel
	}
	if c.TextClass == "" {
		c.TextClass = DefaultTextClass
	}
	if c.ImageClass == "" {
		c.ImageClass = DefaultImageClass
	}
}

// Validate reports the first problem with the configuration (after
// defaults), naming the field and value. It never shows a secret.
func (c Config) Validate() error {
	c.withDefaults()
	if len(c.Keys) == 0 {
		return errors.New("gemini: keys: none configured: need at least one key")
	}
	ids := make(map[string]bool, len(c.Keys))
	for i, k := range c.Keys {
		if k.ID == "" {
			return fmt.Errorf("gemini: keys[%d].id: empty", i)
		}
		if ids[k.ID] {
			return fmt.Errorf("gemini: keys[%d].id: %q: duplicate key id", i, k.ID)
		}
		ids[k.ID] = true
		if k.Secret == "" {
			return fmt.Errorf("gemini: keys[%d].secret: empty for key %q (an empty key would fall back to GOOGLE_API_KEY/GEMINI_API_KEY)", i, k.ID)
		}
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		// A fixed text: net/url's quotes the input (a password typed
		// where the port goes: "invalid port \":PASSWORD\" after host").
		return fmt.Errorf("gemini: base_url: not a URL: %s (the value is not shown)", redactlib.ParseError(err))
	}
	// Shown without its user information, its query values and its
	// fragment (internal/redact.URL: a URL without a scheme wholly), never
	// a credential; one with none of them as it is, but for API-key
	// shapes.
	shown := strconv.Quote(redactlib.URL(c.BaseURL, nil))
	if !strings.ContainsAny(c.BaseURL, "@?#") {
		shown = strconv.Quote(redactlib.String(c.BaseURL))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("gemini: base_url: %s: want an absolute http or https URL", shown)
	}
	if u.User != nil {
		return fmt.Errorf("gemini: base_url: %s: must not carry credentials (user information before '@')", shown)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// u.Query() would drop every pair of such a query ("?a=1;key=..."),
		// credentials included, unseen.
		return fmt.Errorf("gemini: base_url: %s: want a query of name=value pairs separated by '&' (';' or a bad '%%' escape found)", shown)
	}
	if p := redactlib.CredentialParam(q); p != "" {
		// The SDK sends the key in a header; one in the URL would be
		// sent with every request of every key, and shown wherever the
		// URL is.
		return fmt.Errorf("gemini: base_url: %s: must not carry credentials (query parameter %q; a key goes in Config.Keys)", shown, p)
	}
	if redactlib.String(c.BaseURL) != c.BaseURL {
		// A key in the host or the path would be sent with every request
		// of every key, and shown wherever the URL is (the HTTP client's
		// errors quote it).
		return fmt.Errorf("gemini: base_url: %s: must not carry credentials (a part shaped like an API key; a key goes in Config.Keys)", shown)
	}
	return nil
}
