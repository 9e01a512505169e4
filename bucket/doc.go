// Package bucket holds the quota state of slideshowd: the lanes of each model
// class and the choice of the lane and key for the next request.
//
// # Basics
//
// A lane is one (project, model class): Gemini quotas belong to projects, so
// the keys of one project share its lanes. Each lane enforces its Limits:
//
//   - RPM over any sliding 60 s window, exactly: a log of the window's
//     acquisitions refuses the RPM+1st. A golang.org/x/time/rate limiter at
//     RPM/60 per second (burst: by default RPM, the whole minute at once)
//     paces requests within the minute; the window check is what bounds
//     them, since a token bucket alone admits burst + RPM in a window.
//   - TPM (estimated input tokens) the same way, when set, with a rate limiter
//     at TPM/60 per second.
//   - RPD per Pacific calendar day: the count resets at midnight
//     America/Los_Angeles, so a quota day lasts 23 or 25 hours on
//     daylight-saving changes. The API counts a request on the day it
//     arrives: a lane takes nothing in its day's last WindowMargin (it
//     waits for midnight), and a lease whose slot still moves past
//     midnight (stamped or written late) is charged on both days
//     (Class.CrossDay: its unit of the old day stays, one unit of the new
//     day is taken, kept until the lane rolls to that day). A stamped
//     lease still in flight at midnight (its write not reported:
//     Class.Landed not called yet) holds one unit of the new day:
//     Class.PreCharge, in the day's last WindowMargin, charges them for
//     the caller to record (in a shared store too) before midnight; one
//     not charged so holds a provisional unit from the lane's roll on.
//     CrossDay confirms it, Landed leaves it to the lane's next request
//     (or gives the provisional one back), so the new day never takes
//     more than RPD less those units.
//
// Class.Acquire returns a Lease (key id, project, day) on a ready lane,
// rotating round-robin over ready lanes and over each lane's enabled keys, or,
// when none is ready, the earliest time one will be. Ready lanes sit in a
// ring and waiting lanes in a heap by readiness time, so Acquire costs the
// same with 5 lanes or 500 and never scans lanes that are cooling down.
//
// With ClassConfig.SharedTPM (TPM shared with other processes through a
// store), every record of a lane also carries a token budget
// (Lease.Budget), and a lease that does not fit in what its record's budget
// has left records again.
//
// A lease's outcome: Release (actual tokens, TPM reconciled), Refund (the
// request never left the process: window slots and the day unit come back),
// CoolDown (per-minute 429: this lane of this class only), Exhaust (per-day
// 429: until the next Pacific midnight), and Pool.Disable (invalid or leaked
// key: out of every class). Hold blocks a lane like CoolDown for a reason
// that is not a 429 (a shared ledger refused a grant) and is reported apart
// (LaneUsage.HeldUntil and HeldReason, not CoolUntil).
//
// # Durability
//
// The package does no I/O. A lease whose Record is set asks the caller to
// record a reservation durably before sending the request (write-ahead; see
// package store): Chunk new daily units, sized from the lane's use (the
// requests it acquired in its last second plus one; on a slow lane, its
// demand at its recent pace over a longer life, up to SlowCovers requests;
// at most MaxChunk: 1 % of RPD, more on a lane with a small RPD), covering
// the lane's next Covers requests until Until (ChunkLife, 2 s, after the
// record on a fast lane; up to MaxChunkLife, 30 s, on a slow one). After the
// record the caller stamps the lease (Stamp), which moves its window slot to
// the stamp plus the class's WindowMargin. Restore loads a recorded count
// after a restart and RestoreWindow the requests still in a lane's window;
// Ledger returns what a clean stop should store (units to give back, window
// logs). So the recorded count never falls below the true count, a crash
// over-counts by at most one chunk per lane, and a new process can count the
// requests of the last 60 s on the safe side.
//
// # Caveats
//
// Time is an argument (like rate.Limiter.AllowN): callers pass a monotonic,
// non-decreasing now per class. A lane waiting for TPM room for a large
// request waits for that request's size; smaller requests on it wait too.
package bucket
