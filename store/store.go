// Package store keeps what slideshowd must not forget across restarts and
// crashes: the daily request counters of every lane, lane cooldowns and
// exhaustion, disabled keys, and job records.
//
// # Basics
//
// A Store is an interface with two implementations: Memory (for tests and
// embedding without durability) and Bolt, backed by one go.etcd.io/bbolt file.
// Every method is safe for concurrent use.
//
// Daily counters are keyed by (Pacific day, project, class). Callers lease
// daily units in chunks and record the chunk with AddDaily before any of its
// units is used (write-ahead), so the stored count is never below the true
// count: a crash can only over-count, by at most one chunk per lane.
//
// # Caveats
//
// A Bolt file can be opened by one process at a time; Open gives up after
// Options.Timeout with ErrLocked instead of hanging.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors.
var (
	// ErrLocked: another process holds the database file.
	ErrLocked = errors.New("store: database file is held by another process")
	// ErrNotFound: no record with that id.
	ErrNotFound = errors.New("store: not found")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrSchema: the file was written by an incompatible version.
	ErrSchema = errors.New("store: unsupported schema version")
)

// DayFormat is the layout of a day key: the Pacific calendar date.
const DayFormat = "2006-01-02"

// LaneID names a lane: one (project, model class).
type LaneID struct {
	Project string
	Class   string
}

// DailyCount is the number of daily units recorded for a lane on a day.
type DailyCount struct {
	Day   string // DayFormat, Pacific calendar date
	Lane  LaneID
	Count int
}

// LaneState is the persisted blocking state of a lane. A zero time means not set.
type LaneState struct {
	Lane           LaneID
	CoolUntil      time.Time // cooling down after a per-minute 429
	ExhaustedUntil time.Time // out for the day after a per-day 429 (next Pacific midnight)
}

// DisabledKey records why and when a key was taken out of service.
type DisabledKey struct {
	KeyID  string
	Reason string
	At     time.Time
}

// JobRecord is an opaque job document (the daemon stores JSON) under an id.
type JobRecord struct {
	ID   string
	Data []byte
}

// Store is the durable state of slideshowd. Implementations are safe for
// concurrent use.
type Store interface {
	// AddDaily adds n units to the lane's counter for day and returns the new
	// total. The units are durable when it returns without error.
	AddDaily(ctx context.Context, day string, lane LaneID, n int) (int, error)
	// Daily returns every lane's count for day (lanes never counted are absent).
	Daily(ctx context.Context, day string) ([]DailyCount, error)
	// History returns the counts of the days kept, oldest day first.
	History(ctx context.Context) ([]DailyCount, error)

	// SetLaneState stores the lane's state, replacing the previous one; a
	// state with both times zero removes it.
	SetLaneState(ctx context.Context, s LaneState) error
	// LaneStates returns every stored lane state.
	LaneStates(ctx context.Context) ([]LaneState, error)

	// DisableKey marks a key disabled (on every class) with a reason.
	DisableKey(ctx context.Context, d DisabledKey) error
	// EnableKey removes a key's disabled mark; enabling an enabled key is not an error.
	EnableKey(ctx context.Context, keyID string) error
	// DisabledKeys returns every disabled key.
	DisabledKeys(ctx context.Context) ([]DisabledKey, error)

	// PutJob stores (creates or replaces) a job record durably.
	PutJob(ctx context.Context, j JobRecord) error
	// Job returns the record with id, or ErrNotFound.
	Job(ctx context.Context, id string) (JobRecord, error)
	// Jobs calls fn for every job record in id order until fn returns false.
	Jobs(ctx context.Context, fn func(JobRecord) bool) error
	// DeleteJob removes a job record; deleting a missing one is not an error.
	DeleteJob(ctx context.Context, id string) error

	// Close releases the store. Further calls return ErrClosed.
	Close() error
}
