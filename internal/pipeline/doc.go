// Package pipeline runs slideshow jobs for the daemon: one analysis on the
// text class, then the requested images on the image class, each step's
// state and output stored before it is reported done, so a restart resumes
// where it stopped.
//
// # Basics
//
// New builds a Pipeline on a store.Store (job records, JSON), a
// *gemini.Client (whose scheduler runs the calls) and a data directory.
// Submit validates a Request (an *InputError names the bad field), writes
// the slides' images under DataDir/jobs/<id>/ and stores the job's record
// before it returns the id: an accepted job is durable. Run works the
// stored jobs: the analysis (gemini.AnalyzeSlideshow) is written to
// analysis.json, then the images (gemini.GenerateImage, all submitted at
// once so the scheduler spreads them over the keys) to image-01.png,
// image-02.png, ...; each file is written to a temporary name, synced and
// renamed, and the step's state is stored after it. Status, ImagePath, Wait
// and List read the stored records.
//
// A job ends done when every image is done, failed when its analysis or any
// image failed; the reason is recorded per image and for the job. A failed
// job stays failed until Retry reopens it: the failed analysis or images go
// back to pending and run again, what was finished is kept, and
// Status.Attempts and Status.RetriedAt record the retry (the batch command
// retries the failed entries of a batch it runs again). Cancel ends a queued
// or running job as canceled (its calls' contexts are cancelled; the
// scheduler refunds only requests that never left); Retry reopens it too.
// Jobs lists stored jobs newest first with filters and cursor pages. While a
// job's calls wait in the scheduler for quota and none runs, Status and Jobs
// fill in Status.Wait (why, until when), followed through scheduler.OnSubmit. Request
// priorities map to scheduler priorities, and the jobs waiting for one of the
// Config.MaxActive slots are taken highest priority first.
//
// Jobs are kept for ever unless Config.Retention is set: then Run deletes a
// job that ended (done or failed) Retention after its end (Status.UpdatedAt),
// its record first, then its directory; Status, ImagePath, Wait and Retry
// then answer ErrNotFound. Run keeps one timer, set to the earliest moment a
// kept job expires, so an idle daemon with nothing final has none. A job
// that Retry reopened is not final and is never deleted while it runs; its
// retention counts from its new end. A caller holding a job (Hold: a batch
// holds its entries until their outputs are written) keeps it past its
// retention until it releases it.
//
// # Caveats
//
// After a restart or a kill -9, Run resumes every job that is not final:
// a step whose output file exists is taken as done even when its state was
// not stored yet (the file is complete by construction), so a finished
// analysis or image is never asked for again. A step that was running is
// asked for again: the API may have answered it, but nothing was kept.
//
// Retry does not know why a step failed: a permanent failure (a prompt the
// model refuses, a model that does not exist) fails again, after spending
// the requests. Retry only what a change (the faults gone, the config
// fixed) may now let pass.
//
// A job holds one of the Config.MaxActive slots from its analysis to its
// last image, including while its calls wait in the scheduler (for a quota
// day to end, say); the jobs behind it wait for a slot, stored.
//
// With Config.Retention set, Run removes at start every directory under
// DataDir/jobs/ named like a job id that has no record: what a crash between
// deleting an expired job's record and its files left behind. Do not keep
// other data there under such names. A keyed Submit whose job was deleted
// submits a new job, under the same id. Deleting a job does not cancel a
// client's download already open on one of its images.
//
// When Run's context ends, steps already running get Config.ShutdownGrace;
// steps cut short by the shutdown (scheduler.ErrClosed, a cancelled
// context) are not failures: they stay pending for the next Run.
package pipeline
