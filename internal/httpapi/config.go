package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// Service is what the HTTP API needs of the pipeline. Implementations must be
// safe for concurrent use.
type Service interface {
	// Submit stores a new job durably and returns its id; the handler
	// answers 202 only after it returned. It returns a *pipeline.InputError
	// for input it refuses.
	Submit(ctx context.Context, r pipeline.Request) (string, error)
	// Status returns the state of a job, or pipeline.ErrNotFound.
	Status(ctx context.Context, id string) (pipeline.Status, error)
	// Wait blocks until job id is done or failed and returns its status;
	// it returns ctx.Err() when ctx ends first, or pipeline.ErrNotFound.
	// It must not poll: GET /v1/slideshows/{id}?wait= holds one call per
	// waiting client.
	Wait(ctx context.Context, id string) (pipeline.Status, error)
	// ImagePath returns the path of the finished image n (1-based) of job
	// id, or pipeline.ErrNotFound when the job or the file is missing or the
	// image is not done.
	ImagePath(ctx context.Context, id string, n int) (string, error)
	// Retry reopens job id when it failed, keeping what it finished, and
	// queues it again; the reopened record is stored before it returns (the
	// handler then answers 202 with Status). It wraps pipeline.ErrNotFailed
	// when the job is not failed, pipeline.ErrNotFound when there is no such
	// job, and returns pipeline.ErrClosed once the pipeline has stopped.
	Retry(ctx context.Context, id string) error
	// Cancel stops job id and stores it canceled, returning its status; a
	// job that has ended gives an error wrapping pipeline.ErrFinal (with
	// its status), an unknown one pipeline.ErrNotFound.
	Cancel(ctx context.Context, id string) (pipeline.Status, error)
	// Jobs returns one page of jobs, newest first; a bad filter gives a
	// *pipeline.InputError.
	Jobs(ctx context.Context, f pipeline.Filter) (pipeline.Page, error)
}

// KeyService is what the HTTP API needs to show and steer the API keys;
// *scheduler.Scheduler implements it. Implementations must be safe for
// concurrent use and never return a secret.
type KeyService interface {
	// Keys returns every key with its state.
	Keys() []scheduler.KeyStatus
	// EnableKey puts a key back into service; it wraps
	// scheduler.ErrUnknownKey for an unknown id.
	EnableKey(ctx context.Context, keyID string) error
	// DisableKey takes a key out of service (reason "" means an operator's
	// disable); it wraps scheduler.ErrUnknownKey for an unknown id.
	DisableKey(ctx context.Context, keyID, reason string) error
}

// LaneService is what the HTTP API needs to put a stopped lane (a project
// on a class the API said has no quota: scheduler.ScopeNoQuota) back into
// service; *scheduler.Scheduler implements it. Implementations must be
// safe for concurrent use.
type LaneService interface {
	// ResumeLane resumes the lane durably; a lane that is not stopped is
	// not an error. It wraps scheduler.ErrUnknownClass for an unknown class
	// and scheduler.ErrUnknownLane for a project without a lane on it.
	ResumeLane(ctx context.Context, class, project string) error
}

// The scheduler is the KeyService and LaneService the daemon serves.
var (
	_ KeyService  = (*scheduler.Scheduler)(nil)
	_ LaneService = (*scheduler.Scheduler)(nil)
)

// The pipeline is the Service the daemon serves.
var _ Service = (*pipeline.Pipeline)(nil)

// DefaultMaxBodyBytes is the default limit of a POST body: 32 MiB, room for
// a slideshow with about 24 MiB of base64-encoded slide images.
const DefaultMaxBodyBytes int64 = 32 << 20

// MinTokenLength is the shortest bearer token Validate accepts.
const MinTokenLength = 16

// Config describes the handler New builds. Field comments give the defaults.
type Config struct {
	// Service runs the jobs; required.
	Service Service
	// Summary returns the scheduler's usage snapshot for GET /v1/usage
	// (typically (*scheduler.Scheduler).Summary). Default none: GET /v1/usage
	// answers 503.
	Summary func() scheduler.Summary
	// Keys shows and steers the API keys (GET /v1/keys, POST
	// /v1/keys/{id}/enable and /disable); typically the *scheduler.Scheduler.
	// Default none: those endpoints answer 503.
	Keys KeyService
	// Lanes resumes stopped lanes (POST /v1/lanes/{class}/{project}/resume);
	// typically the *scheduler.Scheduler. The answer shows the lane from
	// Summary when that is set. Default none: the endpoint answers 503.
	Lanes LaneService
	// Token, when set, is the bearer token every /v1/ request (and /metrics,
	// unless PublicMetrics) must carry: "Authorization: Bearer <Token>". At
	// least MinTokenLength characters, printable, without spaces. Default
	// none: no authentication (bind the server to loopback then).
	Token string
	// PublicMetrics serves GET /metrics without the token. Default false:
	// /metrics shows the same key ids, projects and usage as /v1/usage, so it
	// is protected like it; Prometheus sends the token with
	// `authorization: {credentials_file: ...}` in its scrape config.
	PublicMetrics bool
	// MaxBodyBytes limits a POST body; larger bodies get 413. Default
	// DefaultMaxBodyBytes (32 MiB).
	MaxBodyBytes int64
	// MaxBodyBytesInFlight bounds the bytes of request bodies being read
	// and decoded at once (a weighted semaphore: a body of known length
	// holds its length, a chunked one MaxBodyBytes, until its answer). A
	// body over the bound gets 503 with Retry-After. Default 2 x
	// MaxBodyBytes; at least MaxBodyBytes.
	MaxBodyBytesInFlight int64
	// Secrets are strings (the Gemini API keys) that must never appear in a
	// response or a log line; the handler replaces them with "[REDACTED]"
	// wherever foreign text reaches its output (errors, paths, JSON bodies).
	// The Token is always included.
	Secrets []string
	// Logger receives one line per request; default zerolog.Nop().
	Logger zerolog.Logger
	// Metrics, when set, counts the requests and serves GET /metrics.
	// Default none: GET /metrics answers 404.
	Metrics *Metrics
	// Stopping, when set, is closed when the server begins to shut down,
	// before the listener closes (slideshowd serve closes it at SIGTERM and
	// keeps serving through the shutdown grace). From then on: requests
	// other than GET and HEAD (new work: submits, retries, cancels, key
	// changes) answer 503 UNAVAILABLE with Retry-After: 5; GET /readyz
	// answers 503 so load balancers drain; long polls (GET
	// /v1/slideshows/{id}?wait=) running answer at once with the job's
	// status and new ones answer 503 with Retry-After, so
	// http.Server.Shutdown need not wait up to MaxWait for them; other reads
	// are served; requests already running finish as usual. Default none: a
	// long poll ends with its wait or its request's context.
	Stopping <-chan struct{}
	// Shared, when set, reports the health of the quota shared with other
	// processes (typically (*store.Redis).Health): while it returns an
	// error, GET /healthz answers 200 {"status":"degraded"} with the
	// error's text (secrets redacted) as the reason. GET /readyz stays ok
	// for it: the process still takes work and sends on its safe share, as
	// every other process of the cluster does. Default none.
	Shared func() error
	// Backup, when set, serves GET /v1/store/backup (with the token): it
	// writes a consistent copy of the store to w (typically
	// (*store.Bolt).Backup: one read transaction, writes go on) and returns
	// the bytes written. Default none: 404.
	Backup func(ctx context.Context, w io.Writer) (int64, error)
	// PageRefresh is how often the status page (GET /) reloads itself.
	// Default DefaultPageRefresh (5s); negative: never.
	PageRefresh time.Duration
	// Gatherer is what GET /metrics exposes. Default: the registry given to
	// NewMetrics when it is a prometheus.Gatherer.
	Gatherer prometheus.Gatherer
}

func (c *Config) withDefaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxBodyBytesInFlight < c.MaxBodyBytes {
		c.MaxBodyBytesInFlight = 2 * c.MaxBodyBytes
	}
	if c.PageRefresh == 0 {
		c.PageRefresh = DefaultPageRefresh
	}
	if c.Gatherer == nil && c.Metrics != nil {
		c.Gatherer = c.Metrics.gatherer
	}
}

// Validate reports the first problem with the configuration, naming the
// field (and the value, except for the token).
func (c Config) Validate() error {
	c.withDefaults()
	if c.Service == nil {
		return errors.New("httpapi: service: nil: required")
	}
	if c.MaxBodyBytes < 0 {
		return fmt.Errorf("httpapi: max_body_bytes: %d: must be > 0", c.MaxBodyBytes)
	}
	if c.Token != "" {
		if n := len(c.Token); n < MinTokenLength {
			return fmt.Errorf("httpapi: token: %d characters: must be at least %d", n, MinTokenLength)
		}
		if i := strings.IndexFunc(c.Token, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsGraphic(r) || r == ' ' }); i >= 0 {
			return fmt.Errorf("httpapi: token: character %d: must be printable ASCII without spaces", i+1)
		}
	}
	return nil
}
