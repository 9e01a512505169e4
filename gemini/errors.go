package gemini

import (
	"errors"
	"strings"
)

// Sentinel errors.
var (
	// ErrInvalidInput is wrapped by the errors AnalyzeSlideshow and
	// GenerateImage return for input they refuse before submitting a job;
	// the message names the field.
	ErrInvalidInput = errors.New("gemini: invalid input")
	// ErrNoScheduler is returned by AnalyzeSlideshow and GenerateImage when
	// Config.Scheduler is nil.
	ErrNoScheduler = errors.New("gemini: no scheduler configured")
	// ErrUnknownKey is wrapped in the outcome of work handed a lease for a key
	// id the Client was not configured with: the scheduler and the Client
	// disagree about the keys.
	ErrUnknownKey = errors.New("gemini: lease names a key this client does not have")
	// ErrBadAnswer is matched by an *AnswerError for an answer that is not
	// what was asked for (malformed or incomplete JSON, no image).
	ErrBadAnswer = errors.New("gemini: unusable answer")
	// ErrBlocked is matched by an *AnswerError for an answer withheld by
	// the API's safety filters: the same request would be blocked again.
	ErrBlocked = errors.New("gemini: blocked by safety filters")
	// ErrDecode is wrapped when the SDK could not decode an answer (it
	// panicked on a body of an unexpected shape); it is classified transient.
	ErrDecode = errors.New("gemini: could not decode the answer")
)

// AnswerError reports a call that succeeded (HTTP 200) but whose answer
// cannot be used: a safety block, no image, or JSON that does not match the
// requested schema. Problem says exactly what was wrong. It is not changed
// after it is returned, so it may be shared between goroutines.
//
// Classify maps a blocked answer to *scheduler.PermanentError and any other
// to *scheduler.TransientError; the jobs of AnalyzeSlideshow and
// GenerateImage retry a bad answer once and fail the job on the second (see
// the package documentation).
type AnswerError struct {
	Model        string // the model that answered
	FinishReason string // the first candidate's finishReason, "" when none
	BlockReason  string // promptFeedback.blockReason, "" when none
	Problem      string // what was wrong, e.g. "image_prompts has 3 items, want 4"
	blocked      bool
}

func (e *AnswerError) Error() string {
	var b strings.Builder
	if e.blocked {
		b.WriteString("gemini: answer blocked")
	} else {
		b.WriteString("gemini: unusable answer")
	}
	if e.Model != "" {
		b.WriteString(" from " + e.Model)
	}
	b.WriteString(" (finishReason ")
	if e.FinishReason == "" {
		b.WriteString("none")
	} else {
		b.WriteString(e.FinishReason)
	}
	if e.BlockReason != "" {
		b.WriteString(", blockReason " + e.BlockReason)
	}
	b.WriteString("): ")
	b.WriteString(e.Problem)
	return b.String()
}

// Blocked reports whether the answer was withheld by safety filters (a
// blockReason on the prompt, or a safety finishReason).
func (e *AnswerError) Blocked() bool { return e.blocked }

// Is matches ErrBlocked for a blocked answer and ErrBadAnswer otherwise.
func (e *AnswerError) Is(target error) bool {
	if e.blocked {
		return target == ErrBlocked
	}
	return target == ErrBadAnswer
}
