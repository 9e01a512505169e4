package pipeline

import (
	"time"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/scheduler"
)

// SlideInput is one slide of a request: its text and an optional image.
type SlideInput struct {
	Text      string
	Image     []byte // optional; PNG, JPEG, WebP or GIF
	ImageMIME string // detected from the bytes when empty
}

// Request asks for one slideshow: an analysis (text class) then Images
// images (image class) from the analysis' prompts.
type Request struct {
	Source   string
	Slides   []SlideInput
	Images   int    // 1..20
	Priority string // "high", "normal" (default) or "low"
	// Key, when set, makes Submit idempotent: a second Submit with the same
	// Key and an equal request returns the first job's id (the batch
	// command uses it to resume); with a different request it is a
	// *KeyReusedError and submits nothing.
	Key string
}

// JobState is the stage of a slideshow job.
type JobState string

const (
	JobQueued     JobState = "queued"
	JobAnalyzing  JobState = "analyzing"
	JobGenerating JobState = "generating"
	JobDone       JobState = "done"
	JobFailed     JobState = "failed"
	// JobCanceled: an operator canceled the job (Pipeline.Cancel) before it
	// ended; what it finished is kept, and Retry reopens it.
	JobCanceled JobState = "canceled"
)

// ImageState is the stage of one image of a job: pending until the
// scheduler sends its call (also while the call waits in its queue for
// quota), running while the call is in flight and its result is stored,
// then done or failed. Running is not stored: Status and Jobs of a
// running Pipeline fill it in from the scheduler, and a record stored
// with it reads pending.
type ImageState string

const (
	ImagePending ImageState = "pending"
	ImageRunning ImageState = "running"
	ImageDone    ImageState = "done"
	ImageFailed  ImageState = "failed"
)

// ImageStatus describes one image of a job.
type ImageStatus struct {
	N        int        `json:"n"` // 1-based
	State    ImageState `json:"state"`
	Prompt   string     `json:"prompt,omitempty"`
	MIMEType string     `json:"mime_type,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// Status is what a client sees of a job.
type Status struct {
	ID       string           `json:"id"`
	Source   string           `json:"source"`
	Priority string           `json:"priority"`
	State    JobState         `json:"state"`
	Error    string           `json:"error,omitempty"`
	Analysis *gemini.Analysis `json:"analysis,omitempty"`
	Images   []ImageStatus    `json:"images"`
	// Attempts counts the job's runs: 1, plus one per Retry.
	Attempts  int        `json:"attempts"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	RetriedAt *time.Time `json:"retried_at,omitempty"` // the last Retry; nil before any
	// Wait, while the job is queued in the scheduler for quota with no step
	// running, says why and until when at the earliest (its estimated
	// start); nil otherwise. It is not stored: Status and Jobs fill it in
	// from the running scheduler.
	Wait *scheduler.Wait `json:"wait,omitempty"`
}
