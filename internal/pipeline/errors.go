package pipeline

import (
	"errors"
	"fmt"
)

// Sentinel errors.
var (
	// ErrNotFound: no job with that id, or the job has no such image (yet).
	ErrNotFound = errors.New("pipeline: not found")
	// ErrClosed: Submit or Retry after Run has returned, or a second Run.
	ErrClosed = errors.New("pipeline: closed")
	// ErrNotFailed: Retry of a job that is neither failed nor canceled (queued, in progress
	// or done).
	ErrNotFailed = errors.New("pipeline: job not failed")
	// ErrNoSpace: a write to the data directory failed for lack of space
	// (ENOSPC or EDQUOT); nothing of the request was kept. The HTTP API
	// maps it to 507.
	ErrNoSpace = errors.New("pipeline: no space left on the data directory's disk")
	// ErrFinal: Cancel of a job that has already ended (done, failed or
	// canceled).
	ErrFinal = errors.New("pipeline: job already ended")
	// ErrKeyReused: a keyed Submit whose Request differs from the one that
	// created the job stored under its Key; nothing was submitted. See
	// KeyReusedError.
	ErrKeyReused = errors.New("pipeline: key already used for a different request")
)

// KeyReusedError is a keyed Submit refused because job ID was created
// under Key by a different Request (its digest differs). It wraps
// ErrKeyReused; the HTTP API maps it to 422.
type KeyReusedError struct {
	Key string
	ID  string
}

func (e *KeyReusedError) Error() string {
	return fmt.Sprintf("pipeline: key %q: already used by job %s for a different request", excerpt(e.Key), e.ID)
}

func (e *KeyReusedError) Unwrap() error { return ErrKeyReused }

// InputError is a Request that Submit refuses: Field names the field
// ("images", "slides[2].image"), Value shows the value (shortened; never
// image bytes) and Reason says why. The HTTP API maps it to 400.
type InputError struct {
	Field  string
	Value  string
	Reason string
}

func (e *InputError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("pipeline: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("pipeline: %s: %s: %s", e.Field, e.Value, e.Reason)
}
