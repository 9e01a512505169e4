package config

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/internal/redact"
	"github.com/slideshowd/slideshowd/scheduler"
)

// Defaults.
const (
	DefaultFile          = "slideshowd.yaml"
	DefaultListen        = "127.0.0.1:8080"
	DefaultData          = "data"
	DefaultDailyCritical = 0.9
	DefaultShutdownGrace = 30 * time.Second
	DefaultMaxBodyBytes  = 32 << 20
	// MinMaxBodyBytes is the smallest max_body_bytes accepted: a request of
	// a few slides of text fits; a smaller limit would refuse every request.
	MinMaxBodyBytes  = 64 << 10
	DefaultMaxActive = 64
	DefaultLogLevel  = "info"
	DefaultCluster   = "slideshowd"
	// MinTokenLength is the shortest SLIDESHOWD_TOKEN accepted (as the HTTP
	// API requires).
	MinTokenLength = 16

	DefaultTextRPM = 900
	DefaultTextRPD = 9000
	// DefaultTextWindowMargin covers the time from a text request's window
	// stamp until the API has it: measured at most 121 ms (99th percentile
	// 78 ms) through the genai SDK to the emulator over loopback on a loaded
	// 2-core machine (bench/README.md, BenchmarkStampToArrival).
	DefaultTextWindowMargin = 250 * time.Millisecond

	DefaultImageRPM = 18
	DefaultImageRPD = 240
	// DefaultImageWindowMargin: image requests carry the slide images;
	// measured at most 655 ms (99th percentile 490 ms) with 480 requests
	// started at once, as above.
	DefaultImageWindowMargin = time.Second
)

// Environment variables read by Load.
const (
	EnvKeys    = "GEMINI_API_KEYS"
	EnvBaseURL = "GEMINI_BASE_URL"
	EnvData    = "SLIDESHOWD_DATA"
	EnvToken   = "SLIDESHOWD_TOKEN"
	EnvRedis   = "SLIDESHOWD_REDIS_URL"
)

// Config is slideshowd's configuration. Field comments give the defaults
// that Load fills in. A numeric field whose default is not 0 takes its
// default when absent from the file (its zero value here); written as 0 in
// the file it is an error naming the field (Parse), never a silent default. A Config is a plain value: not safe for concurrent
// mutation, safe to read from many goroutines. The zero value, after
// withDefaults, has no keys and so does not validate.
type Config struct {
	// Listen is the address of the HTTP API (serve) and where usage looks
	// for a running daemon. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// Data is the data directory: the bbolt file slideshowd.db and the jobs'
	// files. Default "data" (relative to the working directory); env
	// SLIDESHOWD_DATA overrides it.
	Data string `yaml:"data"`
	// BaseURL of the Gemini API. Default: Google's endpoint; env
	// GEMINI_BASE_URL overrides it.
	BaseURL string `yaml:"base_url"`
	// DailyCritical is the fraction of a class's day at which only high
	// priority work is still started. Default 0.9.
	DailyCritical float64 `yaml:"daily_critical"`
	// ShutdownGrace is how long running calls may go on after SIGTERM
	// before they are cancelled (their work stays stored for the next
	// start). nil (the field absent) means the default, 30s; an explicit 0
	// stops at once. Read it with Grace.
	ShutdownGrace *Duration `yaml:"shutdown_grace"`
	// Retention is how long a finished job (done or failed) is kept after
	// it ended: its record and its files under data/jobs/<id>/ are then
	// deleted, and the API answers 404 for it. A failed job that is retried
	// is not finished and is kept; `slideshowd batch` keeps the jobs of its
	// entries until it has written their outputs. Default 0 (the field
	// absent or 0): jobs are kept for ever. Must be >= 0.
	Retention Duration `yaml:"retention"`
	// MaxBodyBytes bounds a request body of the HTTP API, in bytes: at
	// least MinMaxBodyBytes (64 KiB). Default 32 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxConnections bounds the HTTP API's open connections (serve); 16
	// more are kept for /healthz and /readyz. Default 1024; must be > 0.
	MaxConnections int `yaml:"max_connections"`
	// MaxActive is the most slideshow jobs in progress at once; the others
	// wait, stored. Must be > 0. Default 64.
	MaxActive int `yaml:"max_active"`
	// Log configures the logger.
	Log Log `yaml:"log"`
	// Keys are the Gemini API keys; at least one. Env GEMINI_API_KEYS
	// replaces them.
	Keys []Key `yaml:"keys"`
	// Classes are the limits of the two model classes.
	Classes Classes `yaml:"classes"`
	// Images shape the generated images.
	Images Images `yaml:"images"`
	// Backups are the daemon's rolling backups of its store.
	Backups Backups `yaml:"backups"`
	// RedisURL, when set, is the Redis server through which several
	// processes share the quota state of the same keys (see Cluster):
	// redis://[[user]:password@]host[:port][/db] or rediss:// (TLS); port
	// default 6379, db default 0. Default "": this process alone keeps the
	// quota (its bbolt file). Env SLIDESHOWD_REDIS_URL overrides it. Its
	// String and errors never show the password. Every limit is shared,
	// TPM included (see README, Several processes).
	RedisURL RedisURL `yaml:"redis_url"`
	// Cluster names the group of processes sharing quota through RedisURL:
	// it prefixes every Redis key, so several clusters can use one Redis.
	// Letters, digits, '.', '_' and '-', at most 64. Default "slideshowd".
	Cluster string `yaml:"cluster"`

	// Token is the HTTP API's bearer token, from SLIDESHOWD_TOKEN only
	// (never from the file); "" means no authentication.
	Token string `yaml:"-"`
	// File is the file the configuration was read from; "" when none.
	File string `yaml:"-"`
}

// Backups configure the rolling backups the daemon (serve, batch) keeps of
// its store in data/backups/slideshowd-<UTC time>.db: consistent copies
// taken through a read transaction while it runs, checked and stamped with
// their time (slideshowd store restore reads it).
type Backups struct {
	// Interval between backups. Default (absent or 0) 1h; must be >= 0.
	Interval Duration `yaml:"interval"`
	// Keep is how many backups are kept, the newest. Default (absent or 0)
	// 3; must be >= 0.
	Keep int `yaml:"keep"`
}

// Defaults of Backups.
const (
	DefaultBackupInterval = time.Hour
	DefaultBackupKeep     = 3
	// DefaultMaxConnections is Config.MaxConnections's default.
	DefaultMaxConnections = 1024
)

// Images shape the generated images.
type Images struct {
	// AspectRatio: 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9 or 21:9.
	// Default 9:16.
	AspectRatio string `yaml:"aspect_ratio"`
	// Size: 1K, 2K or 4K. Default 1K.
	Size string `yaml:"size"`
}

// Log configures the logger.
type Log struct {
	// Format: "json" or "console"; "" (default) means console when stderr
	// is a terminal, else JSON.
	Format string `yaml:"format"`
	// Level: trace, debug, info, warn or error. Default info.
	Level string `yaml:"level"`
}

// Key is one Gemini API key: its id (shown everywhere instead of the
// secret), the environment variable holding its secret and its project.
// String and GoString never show the secret.
type Key struct {
	// ID names the key in logs, usage and metrics; required, unique,
	// letters, digits, '.', '_' and '-'.
	ID string `yaml:"id"`
	// SecretEnv is the environment variable holding the key.
	SecretEnv string `yaml:"secret_env"`
	// Project is the Google Cloud project the key belongs to: keys of one
	// project share its quotas. Default: the key's id (a project of its own).
	Project string `yaml:"project"`
	// Secret is a literal key in the file: accepted, with a warning. After
	// Load with Options.NeedSecrets it holds the key's secret, wherever it
	// came from.
	Secret string `yaml:"secret"`
}

// String returns the key's id, never its secret.
func (k Key) String() string { return "key " + k.ID }

// GoString hides the secret from %#v.
func (k Key) GoString() string {
	return fmt.Sprintf("config.Key{ID: %q, SecretEnv: %q, Project: %q, Secret: <redacted>}", k.ID, k.SecretEnv, k.Project)
}

// Classes are the two model classes.
type Classes struct {
	// Text analyses slideshows. Defaults: gemini-3-flash-preview, 900 RPM,
	// 9,000 RPD, no TPM, concurrency and burst sized from the limits.
	Text Class `yaml:"text"`
	// Image generates images. Defaults: gemini-3-pro-image-preview, 18 RPM,
	// 240 RPD, no TPM, concurrency and burst sized from the limits.
	Image Class `yaml:"image"`
}

// Class is the model and per-project limits of one class.
type Class struct {
	// Model is the Gemini model name.
	Model string `yaml:"model"`
	// RPM is each project's requests per minute on the model.
	RPM int `yaml:"rpm"`
	// RPD is each project's requests per Pacific day on the model.
	RPD int `yaml:"rpd"`
	// TPM is each project's estimated input tokens per minute; 0 (default)
	// means not enforced.
	TPM int `yaml:"tpm"`
	// Concurrency is the most calls of the class running at once. Default
	// (absent): sized by Little's law so the workers never hold back what
	// the quota allows: rpm x the number of projects (a whole minute of
	// every project at once), times the 60 s windows the longest recent
	// call spans. Set it to bound the calls in flight below that.
	Concurrency int `yaml:"concurrency"`
	// Burst is how many requests a project may start at once on the model
	// after an idle spell, before pacing at rpm/60 per second; it never lets
	// a 60 s window exceed rpm. Default 0: rpm (the whole minute at once,
	// then each minute as the window frees: the quota's own minimum wall
	// time).
	Burst int `yaml:"burst"`
	// Probe: each project sends one request of the class alone until one
	// succeeds (for 5 s at most per request), so a project out of credit,
	// needing billing or without quota on the model costs one request, not
	// a burst. Absent: true.
	Probe *bool `yaml:"probe"`
	// WindowMargin is added to the time each request counts from in its
	// project's 60 s window: it covers the time from the window stamp
	// (right after the request's durable record) until the API has the
	// request, so that the API's own window never sees more than rpm. A
	// saturated lane loses about margin / (60 s + margin) of its rpm.
	// Absent: 250ms for text, 1s for image (measured, see
	// DefaultTextWindowMargin); 0 turns it off; must be >= 0 and under 1m.
	WindowMargin *Duration `yaml:"window_margin"`
}

// Margin returns WindowMargin, 0 when unset.
func (cl Class) Margin() time.Duration {
	if cl.WindowMargin == nil {
		return 0
	}
	return time.Duration(*cl.WindowMargin)
}

// Duration is a time.Duration written as in Go ("30s", "1m30s").
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: not a duration: want a string like 30s", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q: not a duration: want a string like 30s", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String returns the duration as a string.
func (d Duration) String() string { return time.Duration(d).String() }

func (c *Config) withDefaults() {
	if c.Images.AspectRatio == "" {
		c.Images.AspectRatio = "9:16"
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.Backups.Interval == 0 {
		c.Backups.Interval = Duration(DefaultBackupInterval)
	}
	if c.Backups.Keep == 0 {
		c.Backups.Keep = DefaultBackupKeep
	}
	if c.Images.Size == "" {
		c.Images.Size = "1K"
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Data == "" {
		c.Data = DefaultData
	}
	if c.DailyCritical == 0 {
		c.DailyCritical = DefaultDailyCritical
	}
	if c.ShutdownGrace == nil {
		g := Duration(DefaultShutdownGrace)
		c.ShutdownGrace = &g
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxActive == 0 {
		c.MaxActive = DefaultMaxActive
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	for i := range c.Keys {
		if c.Keys[i].Project == "" {
			c.Keys[i].Project = c.Keys[i].ID
		}
	}
	c.Classes.Text.defaults(gemini.DefaultTextModel, DefaultTextRPM, DefaultTextRPD, DefaultTextWindowMargin)
	c.Classes.Image.defaults(gemini.DefaultImageModel, DefaultImageRPM, DefaultImageRPD, DefaultImageWindowMargin)
}

func (cl *Class) defaults(model string, rpm, rpd int, margin time.Duration) {
	if cl.WindowMargin == nil {
		d := Duration(margin)
		cl.WindowMargin = &d
	}
	if cl.Model == "" {
		cl.Model = model
	}
	if cl.RPM == 0 {
		cl.RPM = rpm
	}
	if cl.RPD == 0 {
		cl.RPD = rpd
	}
}

// Grace returns ShutdownGrace: DefaultShutdownGrace when it is nil (absent
// from the file), else its value, 0 included.
func (c Config) Grace() time.Duration {
	if c.ShutdownGrace == nil {
		return DefaultShutdownGrace
	}
	return time.Duration(*c.ShutdownGrace)
}

// Default returns the configuration with every default filled in and no keys.
func Default() Config {
	var c Config
	c.withDefaults()
	return c
}

var (
	idPattern    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	envPattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	modelPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// Validate reports the first problem of c, after defaults, as one line
// naming the field, the value and why. It does not check that secrets are
// present (Load does, when asked).
// Values in errors pass through the redaction of the configured secrets
// and API-key-shaped strings (see internal/redact).
func (c Config) Validate() error {
	secrets := []string{c.Token}
	for _, k := range c.Keys {
		secrets = append(secrets, k.Secret)
	}
	return redactError(c.validate(), secrets)
}

// Problems reports every problem of c, after defaults, each as one line
// naming the field, the value and why (redacted as in Validate), in the
// order of the file's fields; none when c is valid. `slideshowd check`
// prints them all.
func (c Config) Problems() []error {
	secrets := []string{c.Token}
	for _, k := range c.Keys {
		secrets = append(secrets, k.Secret)
	}
	ps := c.problems(false)
	for i := range ps {
		ps[i] = redactError(ps[i], secrets)
	}
	return ps
}

// validate returns the first of problems.
func (c Config) validate() error {
	if p := c.problems(false); len(p) > 0 {
		return p[0]
	}
	return nil
}

// problems returns every problem of c; with keysOptional (a client
// command, see Options.Client) no key at all is not one.
func (c Config) problems(keysOptional bool) []error {
	c.Keys = append([]Key(nil), c.Keys...)
	c.withDefaults()
	var errs []error
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		errs = append(errs, fieldErr("listen", strconv.Quote(c.Listen), "want host:port, e.g. 127.0.0.1:8080"))
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		errs = append(errs, fieldErr("listen", strconv.Quote(c.Listen), "port must be a number in 0..65535"))
	}
	if c.BaseURL != "" {
		if err := checkBaseURL(c.BaseURL); err != nil {
			errs = append(errs, err)
		}
	}
	if c.RedisURL != "" {
		if _, err := c.RedisURL.Options(); err != nil {
			errs = append(errs, err)
		}
	}
	if !idPattern.MatchString(c.Cluster) {
		errs = append(errs, fieldErr("cluster", strconv.Quote(c.Cluster), "want 1 to 64 letters, digits, '.', '_' or '-'"))
	}
	if math.IsNaN(c.DailyCritical) || c.DailyCritical <= 0 || c.DailyCritical > 1 {
		errs = append(errs, fieldErr("daily_critical", fmt.Sprint(c.DailyCritical), "must be in (0, 1]"))
	}
	if *c.ShutdownGrace < 0 {
		errs = append(errs, fieldErr("shutdown_grace", c.ShutdownGrace.String(), "must be >= 0 (0 stops at once)"))
	}
	if c.Backups.Interval < 0 {
		errs = append(errs, fieldErr("backups.interval", c.Backups.Interval.String(), "must be >= 0 (0: the default, 1h)"))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fieldErr("max_connections", strconv.Itoa(c.MaxConnections), "must be > 0"))
	}
	if c.Backups.Keep < 0 {
		errs = append(errs, fieldErr("backups.keep", strconv.Itoa(c.Backups.Keep), "must be >= 0 (0: the default, 3)"))
	}
	if c.Retention < 0 {
		errs = append(errs, fieldErr("retention", c.Retention.String(), "must be >= 0 (0 keeps jobs for ever)"))
	}
	if c.MaxBodyBytes < MinMaxBodyBytes {
		errs = append(errs, fieldErr("max_body_bytes", strconv.FormatInt(c.MaxBodyBytes, 10), fmt.Sprintf("must be at least %d (64 KiB)", MinMaxBodyBytes)))
	}
	if c.MaxActive < 0 {
		errs = append(errs, fieldErr("max_active", strconv.Itoa(c.MaxActive), "must be > 0"))
	}
	if err := (gemini.ImageOptions{AspectRatio: c.Images.AspectRatio}).Validate(); err != nil {
		errs = append(errs, fieldErr("images.aspect_ratio", strconv.Quote(c.Images.AspectRatio), "want 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9 or 21:9"))
	}
	if err := (gemini.ImageOptions{Size: c.Images.Size}).Validate(); err != nil {
		errs = append(errs, fieldErr("images.size", strconv.Quote(c.Images.Size), "want 1K, 2K or 4K"))
	}
	switch c.Log.Format {
	case "", "json", "console":
	default:
		errs = append(errs, fieldErr("log.format", strconv.Quote(c.Log.Format), `want "json" or "console" (or nothing: console on a terminal, else json)`))
	}
	if _, err := zerolog.ParseLevel(c.Log.Level); err != nil || c.Log.Level == "" {
		errs = append(errs, fieldErr("log.level", strconv.Quote(c.Log.Level), "want trace, debug, info, warn or error"))
	}
	errs = append(errs, c.Classes.Text.validate("classes.text")...)
	errs = append(errs, c.Classes.Image.validate("classes.image")...)
	errs = append(errs, tokenProblems(c.Token)...)
	if len(c.Keys) == 0 && !keysOptional {
		errs = append(errs, fmt.Errorf("config: keys: none: set %s or list keys (id, secret_env) in the config file", EnvKeys))
	}
	ids := make(map[string]bool, len(c.Keys))
	for i, k := range c.Keys {
		f := fmt.Sprintf("keys[%d]", i)
		if !idPattern.MatchString(k.ID) {
			errs = append(errs, fieldErr(f+".id", strconv.Quote(k.ID), "want 1 to 64 letters, digits, '.', '_' or '-'"))
		} else if ids[k.ID] {
			errs = append(errs, fieldErr(f+".id", strconv.Quote(k.ID), "duplicate key id"))
		}
		ids[k.ID] = true
		if !idPattern.MatchString(k.Project) {
			errs = append(errs, fieldErr(f+".project", strconv.Quote(k.Project), "want 1 to 64 letters, digits, '.', '_' or '-'"))
		}
		switch {
		case k.SecretEnv != "" && !envPattern.MatchString(k.SecretEnv):
			errs = append(errs, fieldErr(f+".secret_env", strconv.Quote(k.SecretEnv), "not an environment variable name"))
		case k.SecretEnv == "" && k.Secret == "":
			errs = append(errs, fmt.Errorf("config: %s.secret_env: empty for key %q: name the environment variable that holds the key", f, k.ID))
		}
	}
	return errs
}

// tokenProblems checks the value of SLIDESHOWD_TOKEN ("" is none: no
// token is checked); the value is never shown.
func tokenProblems(token string) []error {
	if token == "" {
		return nil
	}
	var errs []error
	if n := len(token); n < MinTokenLength {
		errs = append(errs, fmt.Errorf("config: %s: %d characters: must be at least %d (the value is not shown)", EnvToken, n, MinTokenLength))
	}
	for i, r := range token {
		if r <= ' ' || r > '~' {
			errs = append(errs, fmt.Errorf("config: %s: character %d: must be printable ASCII without spaces (the value is not shown)", EnvToken, i+1))
			break
		}
	}
	return errs
}

func (cl Class) validate(f string) []error {
	var errs []error
	if !modelPattern.MatchString(cl.Model) {
		errs = append(errs, fieldErr(f+".model", strconv.Quote(cl.Model), "not a model name"))
	}
	if cl.RPM <= 0 {
		errs = append(errs, fieldErr(f+".rpm", strconv.Itoa(cl.RPM), "must be > 0"))
	}
	if cl.RPD <= 0 {
		errs = append(errs, fieldErr(f+".rpd", strconv.Itoa(cl.RPD), "must be > 0"))
	}
	if cl.TPM < 0 {
		errs = append(errs, fieldErr(f+".tpm", strconv.Itoa(cl.TPM), "must be >= 0 (0 = not enforced)"))
	}
	if cl.Concurrency < 0 {
		errs = append(errs, fieldErr(f+".concurrency", strconv.Itoa(cl.Concurrency), "must be > 0 (leave it out to size it from the limits)"))
	}
	if cl.Burst < 0 || (cl.RPM > 0 && cl.Burst > cl.RPM) {
		errs = append(errs, fieldErr(f+".burst", strconv.Itoa(cl.Burst), "must be 0 (rpm: the whole minute) to rpm ("+strconv.Itoa(cl.RPM)+")"))
	}
	if m := cl.Margin(); m < 0 || m >= time.Minute {
		errs = append(errs, fieldErr(f+".window_margin", m.String(), "must be >= 0 and under 1m"))
	}
	return errs
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		// A fixed text: net/url's quotes the input (a key typed where
		// the port goes: "invalid port \":AIza...\" after host").
		return fmt.Errorf("config: base_url: not a URL: %s (the value is not shown)", redact.ParseError(err))
	}
	shown := strconv.Quote(redact.URL(s, nil))
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fieldErr("base_url", shown, "want an absolute http or https URL")
	}
	if u.User != nil {
		return fieldErr("base_url", shown, "must not carry credentials (user information before '@')")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// u.Query() would drop every pair of such a query ("?a=1;key=..."),
		// credentials included, unseen.
		return fieldErr("base_url", shown, "want a query of name=value pairs separated by '&' (';' or a bad '%' escape found)")
	}
	if p := redact.CredentialParam(q); p != "" {
		return fieldErr("base_url", shown, fmt.Sprintf("must not carry credentials (query parameter %q; a Gemini API key goes in keys[].secret_env)", p))
	}
	if redact.String(s) != s {
		// A key in the host or the path would be sent with every request
		// and shown wherever the URL is (the HTTP client's errors quote it).
		return fieldErr("base_url", shown, "must not carry credentials (a part shaped like an API key; a Gemini API key goes in keys[].secret_env)")
	}
	return nil
}

func fieldErr(field, value, why string) error {
	return fmt.Errorf("config: %s: %s: %s", field, value, why)
}

// BucketKeys returns the keys by id and project, for the scheduler.
func (c Config) BucketKeys() []bucket.Key {
	out := make([]bucket.Key, len(c.Keys))
	for i, k := range c.Keys {
		out[i] = bucket.Key{ID: k.ID, Project: k.Project}
	}
	return out
}

// GeminiKeys returns the keys with their secrets (after Load with
// NeedSecrets).
func (c Config) GeminiKeys() []gemini.Key {
	out := make([]gemini.Key, len(c.Keys))
	for i, k := range c.Keys {
		out[i] = gemini.Key{ID: k.ID, Secret: k.Secret}
	}
	return out
}

// Scheduler returns the scheduler configuration of c: classes "text" and
// "image" with their limits and concurrency, the keys by id, the critical
// fraction, the shutdown grace and gemini.Classify. The caller adds the
// store, logger and observer.
func (c Config) Scheduler() scheduler.Config {
	return scheduler.Config{
		Classes: []scheduler.ClassConfig{
			c.Classes.Text.scheduler(gemini.DefaultTextClass),
			c.Classes.Image.scheduler(gemini.DefaultImageClass),
		},
		Keys:          c.BucketKeys(),
		Classifier:    gemini.Classify,
		Critical:      c.DailyCritical,
		ShutdownGrace: c.Grace(),
		Fingerprints:  c.Fingerprints(),
	}
}

// Fingerprints returns the fingerprint (KeyFingerprint) of every key whose
// secret is loaded, by key id; nil when none is (Load without NeedSecrets).
func (c Config) Fingerprints() map[string]string {
	var out map[string]string
	for _, k := range c.Keys {
		if k.Secret == "" {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(c.Keys))
		}
		out[k.ID] = KeyFingerprint(k.Secret)
	}
	return out
}

// fingerprintKey keys the HMAC of KeyFingerprint. It is no secret: the
// fingerprint only has to be one-way and tell two secrets apart.
const fingerprintKey = "slideshowd key fingerprint v1"

// KeyFingerprint is a one-way fingerprint of an API key's secret:
// "hmac-sha256:" and the first 8 bytes of HMAC-SHA256(secret) in hex. It is
// stored with a disabled key so that a key whose secret was replaced comes
// back at start; 64 bits of the digest of a high-entropy API key tell two
// secrets apart without revealing either.
func KeyFingerprint(secret string) string {
	m := hmac.New(sha256.New, []byte(fingerprintKey))
	m.Write([]byte(secret))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil)[:8])
}

func (cl Class) scheduler(name string) scheduler.ClassConfig {
	return scheduler.ClassConfig{
		Name:         name,
		Limits:       bucket.Limits{RPM: cl.RPM, RPD: cl.RPD, TPM: cl.TPM},
		Concurrency:  cl.Concurrency,
		Burst:        cl.Burst,
		Model:        cl.Model,
		WindowMargin: cl.Margin(),
		// A project out of credit or without quota on the model costs one
		// request per class, not a burst (issue #10).
		Probe: cl.Probe == nil || *cl.Probe,
	}
}

// Gemini returns the gemini.Client configuration of c (keys with secrets,
// base URL, models); the caller adds the scheduler and, if wanted, an HTTP
// client.
func (c Config) Gemini() gemini.Config {
	return gemini.Config{
		Keys:       c.GeminiKeys(),
		BaseURL:    c.BaseURL,
		TextModel:  c.Classes.Text.Model,
		ImageModel: c.Classes.Image.Model,
	}
}
