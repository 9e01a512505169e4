package scheduler

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors.
var (
	// ErrClosed is returned by Submit and Do when the scheduler is not running
	// or has stopped.
	ErrClosed = errors.New("scheduler: closed")
	// ErrUnknownClass is returned by Submit for a job whose class is not configured.
	ErrUnknownClass = errors.New("scheduler: unknown class")
	// ErrUnknownKey is returned by EnableKey and DisableKey for a key id not configured.
	ErrUnknownKey = errors.New("scheduler: unknown key")
	// ErrUnknownLane is returned by ResumeLane for a project that has no
	// lane on the class (no key of the project is configured).
	ErrUnknownLane = errors.New("scheduler: unknown lane")
	// ErrNoCapacity is wrapped by *NoCapacityError: the job cannot start
	// before its deadline.
	ErrNoCapacity = errors.New("scheduler: no capacity")
	// ErrRetriesExhausted is wrapped in the error of a job that failed
	// transiently more often than its retry budget allows.
	ErrRetriesExhausted = errors.New("scheduler: retry budget exhausted")
	// ErrNoLanes is returned for jobs of a class none of whose keys is enabled.
	ErrNoLanes = errors.New("scheduler: no enabled lanes")
)

// Scope says which quota a rate limit hit.
type Scope int

const (
	// ScopeUnknown: a 429 that did not say which quota; back off.
	ScopeUnknown Scope = iota
	// ScopeMinute: a per-minute quota (requests or input tokens); the lane cools down.
	ScopeMinute
	// ScopeDay: a per-day quota; the lane is exhausted until the next Pacific midnight.
	ScopeDay
	// ScopeNoQuota: the quota's limit is 0: the project has no quota on the
	// class's model at all (e.g. a free tier without access to it). The lane
	// stops with ReasonNoQuota until an operator resumes it
	// (Scheduler.ResumeLane) or the class's configured limits change.
	ScopeNoQuota
)

func (s Scope) String() string {
	switch s {
	case ScopeMinute:
		return "minute"
	case ScopeDay:
		return "day"
	case ScopeNoQuota:
		return "no quota"
	default:
		return "unknown"
	}
}

// RateLimitedError is the outcome of a request rejected by a quota (HTTP 429).
// The lane that served it cools down for RetryAfter (ScopeMinute, ScopeUnknown)
// or is exhausted until the next Pacific midnight (ScopeDay, whatever RetryAfter says),
// and the job goes back to the head of its priority to try another lane.
type RateLimitedError struct {
	Scope      Scope
	RetryAfter time.Duration // 0 when the answer gave none
	Quota      string        // the quota's id when known, e.g. "GenerateRequestsPerMinutePerProjectPerModel"
	Limit      int           // the quota's value when the answer gave one (> 0); 0 when unknown (a limit of 0 is ScopeNoQuota)
	Err        error
}

func (e *RateLimitedError) Error() string {
	s := fmt.Sprintf("rate limited (scope %s", e.Scope)
	if e.Quota != "" {
		s += ", quota " + e.Quota
	}
	if e.Limit > 0 {
		s += fmt.Sprintf(", limit %d", e.Limit)
	}
	if e.RetryAfter > 0 {
		s += ", retry after " + e.RetryAfter.String()
	}
	s += ")"
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *RateLimitedError) Unwrap() error { return e.Err }

// Reasons a key or a lane is out of service, in words an operator reads in
// usage, /v1/usage and the metrics: the Reason of a *KeyError, of a disabled
// key (bucket.KeyState.Disabled, store.DisabledKey) and of a stopped lane
// (bucket.LaneUsage.Stopped). Classifiers may use other words too.
const (
	// ReasonInvalid: the API rejects the key (a typo, a deleted key).
	ReasonInvalid = "invalid"
	// ReasonExpired: the key has expired; the operator renews it.
	ReasonExpired = "expired"
	// ReasonLeaked: the key was reported as leaked; the operator replaces it.
	ReasonLeaked = "leaked"
	// ReasonOutOfCredit: the project's prepaid credit is used up (a project
	// outcome: every key of the project).
	ReasonOutOfCredit = "out of credit"
	// ReasonBillingRequired: the project cannot serve without a billing
	// account or a paid tier (a project outcome).
	ReasonBillingRequired = "billing required"
	// ReasonNoQuota: the project's limit on the class's model is 0 (a lane
	// outcome: ScopeNoQuota).
	ReasonNoQuota = "no quota on this model"
)

// KeyError is the outcome of a request rejected because of the key itself
// (invalid, expired, leaked) or, with Project set, because of its whole
// project (out of credit, billing required). The key (or every key of the
// project) is disabled on every class, durably, with Reason, until an
// operator enables it again; the job goes back to try another key, and fails
// with the reasons when no lane of its class is left.
type KeyError struct {
	Reason  string // short words, e.g. ReasonInvalid, ReasonOutOfCredit
	Project bool   // disable every key of the lease's project
	Err     error
}

func (e *KeyError) Error() string {
	what := "key"
	if e.Project {
		what = "project"
	}
	s := what + " unusable: " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *KeyError) Unwrap() error { return e.Err }

// TransientError is the outcome of a failure that is nobody's fault (503, 500,
// 504, network): the job is retried with exponential backoff and jitter, up to
// the retry budget; the lane is not blamed.
type TransientError struct {
	Err error
}

func (e *TransientError) Error() string {
	if e.Err == nil {
		return "transient failure"
	}
	return "transient: " + e.Err.Error()
}

func (e *TransientError) Unwrap() error { return e.Err }

// PermanentError is the outcome of a request that is wrong in itself (400, 404):
// the job fails with it and is not retried.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string {
	if e.Err == nil {
		return "permanent failure"
	}
	return "permanent: " + e.Err.Error()
}

func (e *PermanentError) Unwrap() error { return e.Err }

// NotSentError marks a failure that happened before the request left the
// process (encoding, a cancelled context before sending): the lease's units
// (RPM, TPM, day) are refunded. Work wraps its error with NotSent to say so.
type NotSentError struct {
	Err error
}

func (e *NotSentError) Error() string {
	if e.Err == nil {
		return "request not sent"
	}
	return "not sent: " + e.Err.Error()
}

func (e *NotSentError) Unwrap() error { return e.Err }

// NotSent wraps err to report that the request never left the process.
func NotSent(err error) error { return &NotSentError{Err: err} }

// NoCapacityError is returned for a job whose deadline falls before the
// earliest moment it could start.
type NoCapacityError struct {
	Class    string
	Earliest time.Time // zero when no lane of the class can ever serve it
	Deadline time.Time
}

func (e *NoCapacityError) Error() string {
	if e.Earliest.IsZero() {
		return fmt.Sprintf("scheduler: no capacity: class %q has no lane that can serve the job", e.Class)
	}
	return fmt.Sprintf("scheduler: no capacity: class %q can start the job at %s at the earliest, after its deadline %s",
		e.Class, e.Earliest.Format(time.RFC3339), e.Deadline.Format(time.RFC3339))
}

func (e *NoCapacityError) Is(target error) bool { return target == ErrNoCapacity }

// A Classifier maps the error returned by a job's work to one of the outcome
// errors above (*RateLimitedError, *KeyError, *TransientError,
// *PermanentError), possibly wrapped in *NotSentError. It is never called
// with a nil error. Errors it leaves untyped are treated as transient;
// context.Canceled and context.DeadlineExceeded from the job's own context
// end the job.
type Classifier func(error) error
