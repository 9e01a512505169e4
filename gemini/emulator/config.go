package emulator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
	_ "time/tzdata" // RPD resets at Pacific midnight on every machine, with or without a zoneinfo database.
)

// Default model names and the limits New gives them when Config.Models is empty.
const (
	DefaultTextModel  = "gemini-3-flash-preview"
	DefaultImageModel = "gemini-3-pro-image-preview"
)

// DefaultModels returns the models served when Config.Models is empty: the
// published per-project limits slideshowd plans for (see GEMINI.md).
func DefaultModels() map[string]Limits {
	return map[string]Limits{
		DefaultTextModel:  {RPM: 1000, RPD: 10000},
		DefaultImageModel: {RPM: 20, RPD: 250},
	}
}

// DefaultImageScale is the factor applied to the real pixel sizes of generated
// images when Config.ImageScale is 0: a "1K" square image is 128x128.
const DefaultImageScale = 1.0 / 8

// Limits are the quotas of one (project, model) pair. Zero in a dimension means
// that dimension is not enforced. The zero value enforces nothing.
type Limits struct {
	RPM int // requests per minute, over a sliding 60 s window of admitted requests
	TPM int // input tokens per minute, over a sliding 60 s window of admitted requests
	RPD int // requests per calendar day in Config.Location
}

// Key is an API key the emulator accepts (a plain value). Name is what
// statistics and errors show; Secret is what a client sends and is never
// shown. Keys of one Project share that project's quotas; an empty Project
// means the key is a project of its own (Project = Name).
type Key struct {
	Name    string
	Secret  string
	Project string
	Leaked  bool // the key answers 403 PERMISSION_DENIED "reported as leaked"
	// Expired: the key answers 400 INVALID_ARGUMENT "API key expired. Please
	// renew the API key." with ErrorInfo reason API_KEY_INVALID.
	Expired bool
}

// Project is the account state of one project (a plain value): answers the
// API gives every key of the project whatever the quotas say. The zero value
// serves normally. Requests answered so are admitted by no quota.
type Project struct {
	// OutOfCredit: every request answers 429 RESOURCE_EXHAUSTED "Your
	// prepayment credits are depleted. ..." with no details (the project's
	// prepaid credit is used up; sent as a rate limit).
	OutOfCredit bool
	// BillingRequired: every request answers 400 FAILED_PRECONDITION "User
	// location is not supported for the API use without a billing account
	// linked." (the project cannot serve without billing).
	BillingRequired bool
	// NoQuota lists models on which the project's limit is 0 (a free tier
	// without access to the model): each request answers 429 naming the
	// quotas with limit 0: with LayoutErrorInfo an ErrorInfo whose
	// quota_limit_value is "0", with any other layout the 2026 body whose
	// violations have no quotaValue and whose message says "limit: 0".
	NoQuota []string
}

func (p Project) clone() Project {
	p.NoQuota = slices.Clone(p.NoQuota)
	return p
}

func (p Project) noQuota(model string) bool { return slices.Contains(p.NoQuota, model) }

// Layout is the shape of a 429 RESOURCE_EXHAUSTED body. Each layout was seen
// from the real API (see GEMINI.md). The zero value is Layout2025.
type Layout int

const (
	// Layout2025: details QuotaFailure, Help, RetryInfo; message without a delay.
	Layout2025 Layout = iota
	// Layout2026: details Help, QuotaFailure, RetryInfo; the message lists each
	// violated metric and ends with "Please retry in <delay>.". 503 answers use
	// the 2026 text ("This model is currently experiencing high demand. ...").
	Layout2026
	// LayoutBare: no details, message "Resource has been exhausted (e.g. check quota).".
	LayoutBare
	// LayoutHelpOnly: only a Help detail; nothing says which quota or how long.
	LayoutHelpOnly
	// LayoutErrorInfo: no QuotaFailure; the quota is named in an ErrorInfo
	// detail (reason RATE_LIMIT_EXCEEDED, metadata quota_metric,
	// quota_limit, quota_limit_value), followed by a Help detail; the message
	// is "Quota exceeded for quota metric '...' and limit '...' of service
	// ...". Older and some current answers. When several quotas are
	// exceeded, the per-day one is named.
	LayoutErrorInfo
)

func (l Layout) String() string {
	switch l {
	case Layout2025:
		return "2025"
	case Layout2026:
		return "2026"
	case LayoutBare:
		return "bare"
	case LayoutHelpOnly:
		return "help-only"
	case LayoutErrorInfo:
		return "errorinfo"
	default:
		return fmt.Sprintf("Layout(%d)", int(l))
	}
}

// Faults are injected failures. The zero value injects none. Rates are
// fractions in [0, 1] of the requests that pass key, model, body and quota
// checks; Rate503+Rate500+Rate504 must not exceed 1. An answer replaced by a
// 5xx fault is not counted against any quota.
type Faults struct {
	Rate503 float64 // 503 UNAVAILABLE "The model is overloaded. Please try again later."
	Rate500 float64 // 500 INTERNAL
	Rate504 float64 // 504 DEADLINE_EXCEEDED

	// Latency returns how long an answer (success or 5xx fault) takes; nil
	// means none. It is called under the emulator's lock with its seeded
	// generator, so it must be quick and must not call the emulator. See
	// UniformLatency and ExponentialLatency.
	Latency func(model string, r *rand.Rand) time.Duration

	// Down lists models that answer 503 UNAVAILABLE to every request.
	Down map[string]bool

	// MalformedJSON is the fraction of successful JSON-mode answers
	// (responseMimeType application/json) whose text is cut short, so it is
	// not valid JSON (finishReason stays STOP, as models sometimes do).
	MalformedJSON float64
	// NoImage is the fraction of successful image answers that carry no image:
	// the candidate ends with finishReason IMAGE_SAFETY and has no content.
	NoImage float64
	// Blocked is the fraction of successful answers (text or image) refused as
	// a whole: no candidates, promptFeedback.blockReason PROHIBITED_CONTENT.
	Blocked float64
	// FencedJSON is the fraction of successful JSON-mode answers whose text
	// is the JSON inside a Markdown ```json fence, with a sentence before
	// and after it.
	FencedJSON float64
	// WrongNumbers is the fraction of successful JSON-mode answers in which
	// every object of an array of objects carries an "index" property the
	// schema did not ask for, numbering the elements from 5 (5, 6, 7, ...).
	WrongNumbers float64
	// MislabeledImage is the fraction of successful image answers whose
	// bytes are JPEG while the part's mimeType says image/png.
	MislabeledImage float64
}

func (f Faults) clone() Faults {
	c := f
	if f.Down != nil {
		c.Down = make(map[string]bool, len(f.Down))
		for m, d := range f.Down {
			c.Down[m] = d
		}
	}
	return c
}

func (f Faults) validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"faults.rate503", f.Rate503}, {"faults.rate500", f.Rate500}, {"faults.rate504", f.Rate504},
		{"faults.malformedJSON", f.MalformedJSON}, {"faults.noImage", f.NoImage}, {"faults.blocked", f.Blocked},
		{"faults.fencedJSON", f.FencedJSON}, {"faults.wrongNumbers", f.WrongNumbers}, {"faults.mislabeledImage", f.MislabeledImage},
	} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("%w: %s: %v: must be in [0, 1]", ErrInvalidConfig, r.name, r.v)
		}
	}
	if s := f.Rate503 + f.Rate500 + f.Rate504; s > 1 {
		return fmt.Errorf("%w: faults: rate503+rate500+rate504 = %v: must be <= 1", ErrInvalidConfig, s)
	}
	return nil
}

// UniformLatency returns a Faults.Latency drawing uniformly from [lo, hi].
func UniformLatency(lo, hi time.Duration) func(string, *rand.Rand) time.Duration {
	if hi < lo {
		lo, hi = hi, lo
	}
	return func(_ string, r *rand.Rand) time.Duration {
		if hi == lo {
			return lo
		}
		return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
	}
}

// ExponentialLatency returns a Faults.Latency of base plus an exponentially
// distributed delay with the given mean, capped at base + 20*mean.
func ExponentialLatency(base, mean time.Duration) func(string, *rand.Rand) time.Duration {
	return func(_ string, r *rand.Rand) time.Duration {
		d := time.Duration(r.ExpFloat64() * float64(mean))
		if d > 20*mean {
			d = 20 * mean
		}
		return base + d
	}
}

// Config configures an Emulator. The zero value is valid: the two default
// models, no keys (add them with AddKey), Layout2025, paid-tier quota ids,
// no faults, seed 0, Pacific days.
type Config struct {
	// Keys are the keys accepted at start; names and secrets must be unique
	// and non-empty.
	Keys []Key
	// Models are the models served, with each project's limits on it. Other
	// models answer 404 NOT_FOUND. Default (nil or empty): DefaultModels().
	Models map[string]Limits
	// Layout is the shape of 429 bodies. Default Layout2025.
	Layout Layout
	// FreeTier gives quota ids the "-FreeTier" suffix and free-tier metric
	// names (generate_content_free_tier_requests, ..._input_token_count).
	FreeTier bool
	// TruncateRetryDelay makes RetryInfo.retryDelay whole seconds, cut down,
	// as the real API sends it ("58s" while the 2026 message says
	// "Please retry in 58.934310785s."). Default false: the exact wait.
	TruncateRetryDelay bool
	// Faults are the failures injected from the start; see SetFaults.
	Faults Faults
	// Projects are the account states of projects by name (see Project);
	// projects not listed serve normally. See SetProject.
	Projects map[string]Project
	// Seed seeds every random choice: faults, latency, and generated content.
	Seed int64
	// Location is where a quota day starts at midnight. Default America/Los_Angeles.
	Location *time.Location
	// ImageScale multiplies the real pixel sizes of generated images (a "1K"
	// 16:9 image is really 1376x768). Default DefaultImageScale (1/8); at most 1.
	ImageScale float64
	// MaxBodyBytes is the largest request body accepted; larger bodies get
	// 400 INVALID_ARGUMENT as from the real API. Default 20 MiB.
	MaxBodyBytes int64
}

func (c *Config) withDefaults() {
	if len(c.Models) == 0 {
		c.Models = DefaultModels()
	}
	if c.Location == nil {
		c.Location, _ = time.LoadLocation("America/Los_Angeles") // embedded by time/tzdata
	}
	if c.ImageScale == 0 {
		c.ImageScale = DefaultImageScale
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 20 << 20
	}
}

// Validate reports the first problem with the configuration (after defaults
// are applied), naming the field and value. Errors wrap ErrInvalidConfig.
func (c Config) Validate() error {
	c.withDefaults()
	for m, l := range c.Models {
		if m == "" {
			return fmt.Errorf("%w: models: empty model name", ErrInvalidConfig)
		}
		if l.RPM < 0 || l.TPM < 0 || l.RPD < 0 {
			return fmt.Errorf("%w: models[%q]: %+v: limits must be >= 0 (0 = not enforced)", ErrInvalidConfig, m, l)
		}
	}
	names := make(map[string]bool)
	secrets := make(map[string]bool)
	for i, k := range c.Keys {
		if err := k.validate(fmt.Sprintf("keys[%d]", i)); err != nil {
			return err
		}
		if names[k.Name] {
			return fmt.Errorf("%w: keys[%d].name: %q: duplicate", ErrInvalidConfig, i, k.Name)
		}
		if secrets[k.Secret] {
			return fmt.Errorf("%w: keys[%d].secret (key %q): same secret as an earlier key", ErrInvalidConfig, i, k.Name)
		}
		names[k.Name], secrets[k.Secret] = true, true
	}
	if c.Layout < Layout2025 || c.Layout > LayoutErrorInfo {
		return fmt.Errorf("%w: layout: %d: unknown", ErrInvalidConfig, int(c.Layout))
	}
	if math.IsNaN(c.ImageScale) || c.ImageScale <= 0 || c.ImageScale > 1 {
		return fmt.Errorf("%w: imageScale: %v: must be in (0, 1]", ErrInvalidConfig, c.ImageScale)
	}
	if c.MaxBodyBytes < 0 {
		return fmt.Errorf("%w: maxBodyBytes: %d: must be > 0", ErrInvalidConfig, c.MaxBodyBytes)
	}
	return c.Faults.validate()
}

func (k Key) validate(field string) error {
	if k.Name == "" {
		return fmt.Errorf("%w: %s.name: empty", ErrInvalidConfig, field)
	}
	if k.Secret == "" {
		return fmt.Errorf("%w: %s.secret (key %q): empty", ErrInvalidConfig, field, k.Name)
	}
	return nil
}
