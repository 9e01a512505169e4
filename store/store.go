package store

import (
	"context"
	"fmt"
	"time"
)

// DayFormat is the layout of a day key: the Pacific calendar date.
const DayFormat = "2006-01-02"

// MaxIDLen is the longest project, class, key id or job id a store accepts, in
// bytes.
const MaxIDLen = 1024

// LaneID names a lane: one (project, model class).
type LaneID struct {
	Project string
	Class   string
}

// String returns "project/class", for messages.
func (l LaneID) String() string { return l.Project + "/" + l.Class }

// DailyCount is the number of daily units recorded for a lane on a day.
type DailyCount struct {
	Day   string // DayFormat, Pacific calendar date
	Lane  LaneID
	Count int
}

// LaneState is the persisted blocking state of a lane. A zero time means not
// set; an empty Stopped means not stopped.
type LaneState struct {
	Lane           LaneID
	CoolUntil      time.Time // cooling down after a per-minute 429
	ExhaustedUntil time.Time // out for the day after a per-day 429 (next Pacific midnight)
	// Stopped is why the lane serves nothing until an operator resumes it
	// (e.g. "no quota on this model"), and Config the configuration it was
	// stopped under (opaque to the store): the scheduler drops a stop whose
	// Config differs from the one it runs with.
	Stopped string
	Config  string
}

// empty reports whether s blocks nothing (SetLaneState removes it).
func (s LaneState) empty() bool {
	return s.CoolUntil.IsZero() && s.ExhaustedUntil.IsZero() && s.Stopped == ""
}

// DisabledKey records why and when a key was taken out of service.
type DisabledKey struct {
	KeyID  string
	Reason string
	At     time.Time
	// Fingerprint is a one-way digest of the key's secret when it was
	// disabled (never the secret itself), so that a key whose secret was
	// replaced in the configuration since can be put back into service at
	// start. Empty: unknown (an operator's disable, or an older record).
	// At most MaxIDLen bytes.
	Fingerprint string
}

// JobRecord is an opaque job document (the daemon stores JSON) under an id.
// A store keeps its own copy of Data and returns fresh copies; empty Data comes
// back as nil.
type JobRecord struct {
	ID   string
	Data []byte
}

// Store is the durable state of slideshowd. Implementations are safe for
// concurrent use. Every method returns ctx.Err() if ctx is already done,
// ErrClosed after Close, and an error wrapping ErrInvalid for a malformed
// argument.
type Store interface {
	// AddDaily adds n units (n > 0) to the lane's counter for day and returns
	// the new total. The units are durable when it returns without error. A
	// day older than the history kept gives ErrTooOld.
	AddDaily(ctx context.Context, day string, lane LaneID, n int) (int, error)
	// Daily returns every lane's count for day, by project then class (lanes
	// never counted are absent; a day not kept gives none).
	Daily(ctx context.Context, day string) ([]DailyCount, error)
	// History returns the counts of the days kept, oldest day first, then by
	// project and class.
	History(ctx context.Context) ([]DailyCount, error)

	// SetLaneState stores the lane's state, replacing the previous one; a
	// state with both times zero and no Stopped reason removes it.
	SetLaneState(ctx context.Context, s LaneState) error
	// LaneStates returns every stored lane state, by project then class.
	LaneStates(ctx context.Context) ([]LaneState, error)

	// DisableKey marks a key disabled (on every class) with a reason,
	// replacing an earlier mark.
	DisableKey(ctx context.Context, d DisabledKey) error
	// EnableKey removes a key's disabled mark; enabling an enabled key is not an error.
	EnableKey(ctx context.Context, keyID string) error
	// DisabledKeys returns every disabled key, by key id.
	DisabledKeys(ctx context.Context) ([]DisabledKey, error)

	// PutJob stores (creates or replaces) a job record durably.
	PutJob(ctx context.Context, j JobRecord) error
	// Job returns the record with id, or ErrNotFound.
	Job(ctx context.Context, id string) (JobRecord, error)
	// Jobs calls fn for every job record in id order until fn returns false.
	// fn runs without any lock or transaction held, so it may call the store
	// (for example PutJob or DeleteJob); a record deleted before the iteration
	// reaches it is not visited, and one added during the iteration may or may
	// not be.
	Jobs(ctx context.Context, fn func(JobRecord) bool) error
	// DeleteJob removes a job record; deleting a missing one is not an error.
	DeleteJob(ctx context.Context, id string) error

	// Close releases the store. Further calls return ErrClosed; closing twice
	// is not an error.
	Close() error
}

// Options configure a store. The zero value gives the defaults. Memory uses
// only History.
type Options struct {
	// Timeout is how long Open waits for the file lock before it gives up with
	// ErrLocked. Default 1s.
	Timeout time.Duration
	// History is how many calendar days of daily counters are kept, counted
	// back from the newest day written: at least 2, because the scheduler
	// writes the next Pacific day's unit of a request that may reach the API
	// after midnight before that midnight (its cross-day charge), and the
	// day still running must be kept then. Default 7.
	History int
	// NoSync skips fsync on commit: counts are then NOT durable across a
	// machine crash. For tests and benchmarks only. Default false.
	NoSync bool
}

// Defaults of Options.
const (
	DefaultTimeout = time.Second
	DefaultHistory = 7
)

// minHistory and maxHistory bound Options.History: at least the day
// running and the next one (see Options.History), at most about 100 years,
// so that date arithmetic stays far from overflow.
const (
	minHistory = 2
	maxHistory = 36600
)

func (o Options) withDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.History == 0 {
		o.History = DefaultHistory
	}
	return o
}

// Validate reports the first invalid field of o, after defaults are applied
// (so zero fields are valid).
func (o Options) Validate() error {
	o = o.withDefaults()
	if o.Timeout < 0 {
		return fmt.Errorf("%w: Options.Timeout: %v: must be > 0 (0 = default %v)", ErrInvalid, o.Timeout, DefaultTimeout)
	}
	if o.History < minHistory || o.History > maxHistory {
		return fmt.Errorf("%w: Options.History: %d: must be in %d..%d days (0 = default %d)", ErrInvalid, o.History, minHistory, maxHistory, DefaultHistory)
	}
	return nil
}
