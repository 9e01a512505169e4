package store

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these when they
// have one of these causes; test them with errors.Is.
var (
	// ErrLocked: another process (or another Open in this process) holds the
	// database file.
	ErrLocked = errors.New("store: database file is held by another process")
	// ErrNotFound: no record with that id.
	ErrNotFound = errors.New("store: not found")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrSchema: the file was written by an incompatible version.
	ErrSchema = errors.New("store: unsupported schema version")
	// ErrInvalid: an argument is malformed (bad day, empty lane, n <= 0, ...).
	// The error names the field and the value.
	ErrInvalid = errors.New("store: invalid argument")
	// ErrDamaged: the file failed its check at open (see DamagedError);
	// nothing was changed. Restore a backup.
	ErrDamaged = errors.New("store: damaged file")
	// ErrTooOld: AddDaily for a day older than the days the store keeps.
	ErrTooOld = errors.New("store: day is older than the history kept")
)
