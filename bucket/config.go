package bucket

import (
	"errors"
	"fmt"
	"time"
)

// Limits are the quotas of one lane: one (project, model class). Zero TPM means
// tokens per minute are not enforced; RPM and RPD must be positive.
type Limits struct {
	RPM int `json:"rpm"`           // requests per minute, over any sliding 60 s window
	RPD int `json:"rpd"`           // requests per Pacific calendar day
	TPM int `json:"tpm,omitempty"` // estimated input tokens per minute, over any sliding 60 s window; 0 = off
}

func (l Limits) validate(field string) error {
	if l.RPM <= 0 {
		return fmt.Errorf("%s.rpm: %d: must be > 0", field, l.RPM)
	}
	if l.RPD <= 0 {
		return fmt.Errorf("%s.rpd: %d: must be > 0", field, l.RPD)
	}
	if l.TPM < 0 {
		return fmt.Errorf("%s.tpm: %d: must be >= 0 (0 = not enforced)", field, l.TPM)
	}
	return nil
}

// Key is an API key, by id (never its secret), and the project it belongs to.
// Keys of one project share that project's lanes. Project must be set; callers
// that give each key its own project use the key's id as its project.
type Key struct {
	ID      string
	Project string
}

// ClassConfig describes one model class: its name and the limits each project
// has on it.
type ClassConfig struct {
	Name   string
	Limits Limits
	// Burst is how many requests a lane may start at once after an idle
	// spell; then it paces them at RPM/60 per second. It does not change
	// the window bound (at most RPM in any 60 s). Default RPM: a lane may
	// send its whole minute at once, and the next as the window frees, which
	// is the quota's own minimum wall time. Lower it (down to 1) to spread a
	// lane's requests over the minute.
	Burst int
	// WindowMargin is added to the time every request of the class counts
	// from in its lane's window: a request stamped at t holds its slot until
	// t + WindowMargin + 60 s. It covers the time from the stamp (see
	// Class.Stamp) until the request reaches the API, so that the API's own
	// 60 s window never sees more than RPM. Zero: none. Must be >= 0 and
	// under a minute.
	WindowMargin time.Duration
	// Probe makes each lane send one request alone until one of its
	// requests succeeds (Class.Settled with ok): a project that cannot
	// serve (out of credit, no quota on the model) then costs one request
	// per class, not a burst. A probe holds its lane until it is settled or
	// for ProbeRecheck at most, so a slow first answer delays the lane's
	// next request by ProbeRecheck, no more. Default false.
	Probe bool
	// SharedTPM makes every record (Lease.Record) of a lane carry a token
	// budget (Lease.Budget) for a store that takes it from a TPM window
	// shared with other processes (package store's Redis): a lease whose
	// tokens do not fit in what is left of its record's budget asks for a
	// record of its own, so no request is sent beyond a budget granted.
	// Ignored when Limits.TPM is 0. Default false: TPM is this process's
	// alone.
	SharedTPM bool
}

// ProbeRecheck is the longest a probe holds its lane (see
// ClassConfig.Probe): answers that take a project out (429, 400) come back
// well within it.
const ProbeRecheck = 5 * time.Second

// Config describes a Pool.
type Config struct {
	// Classes are the model classes; at least one.
	Classes []ClassConfig
	// Keys are the API keys; at least one. Ids must be unique and non-empty.
	Keys []Key
	// Location is the time zone whose midnight starts a new quota day.
	// Default: America/Los_Angeles.
	Location *time.Location
	// Critical is the fraction of a class's summed daily limits at which
	// Critical reports true. Default 0.9.
	Critical float64
}

// MaxChunk is the most daily units a lane of limits l reserves at once: 1 %
// of its RPD, at least 1; on a lane with a small RPD (under 1,000), up to
// SlowCovers, 4 % of its RPD and half its RPM when that is more (the image
// limits, 20 RPM and 250 RPD: 10 units, where 1 % is 2). Chunks are sized
// from the lane's use (see Lease.Chunk): one unit at low rates, about a
// second of traffic at full rate on a fast lane, up to SlowCovers requests
// over a longer life on a slow one, never more than MaxChunk.
//
// A process killed with a record in hand over-counts the lane's day by at
// most the record's unused units: at most MaxChunk per lane (for the image
// limits 10 units, 4 % of the day, where it was 2 until records followed
// the lane's pace; a clean stop gives them back). The raise buys a shared
// store's round trips: a slow lane's record covers up to 10 requests, not
// 1 or 2 (see RecordLife).
func MaxChunk(l Limits) int {
	return max(1, l.RPD/100, min(SlowCovers, l.RPD/25, l.RPM/2))
}

// ChunkLife is how long after it is recorded a reservation (Lease.Record)
// of a fast lane may be used (its Until), and the shortest life of any: a
// lane whose record is 3/4 ChunkLife old or more (a slow lane's: its life
// less ChunkLife/4) asks for a new record (Lease.Record with Chunk 0)
// before it sends again, so the leases of a record are acquired at least
// ChunkLife/4 before its Until and stamped (right after, by the caller)
// before it. Chunks of fast lanes are sized to last about a second, so a
// lane at a steady rate seldom renews. A lane is fast while SlowCovers
// requests at its recent pace (a moving average of the time between its
// acquisitions) take at most ChunkLife, 300 requests a minute or more, or
// when it took 5 requests or more in its last second or the current one
// (a burst); a slow lane's records live longer, up to MaxChunkLife (see
// RecordLife). This bounds how long a crash can hold a lane's window (see
// package doc).
const ChunkLife = 2 * time.Second

// MaxChunkLife is the longest life of a record (Lease.Until - the
// acquisition's time), that of a slow lane's (see RecordLife). A shared
// store that grants records takes it as the longest any process's grant
// may last.
const MaxChunkLife = 30 * time.Second

// SlowCovers is how many requests a slow lane's record aims to cover: its
// chunk is sized for the lane's demand over a life of SlowCovers times its
// recent pace (at most MaxChunkLife), at most MaxChunk.
const SlowCovers = 10

// renewLead is how long before its Until a record stops covering new
// leases (ChunkLife/4: acquired before it, a lease is stamped before Until).
const renewLead = ChunkLife / 4

// RecordLife is the life (Lease.Until - the acquisition's time) of a record
// covering covers requests on a lane whose recent pace is one request every
// pace (0: unknown, or a fast lane): ChunkLife on a fast lane (SlowCovers
// requests at that pace take at most ChunkLife) and when the pace is
// unknown; on a slow lane, long enough for the record's covers at that pace
// with half a pace and ChunkLife/4 to spare, ((covers-1) + 1/2) × pace +
// ChunkLife/4, at least ChunkLife and at most MaxChunkLife. The image lane
// paced at 20 RPM (a request every 3 s), covering 10: 29 s.
func RecordLife(covers int, pace time.Duration) time.Duration {
	if !slow(pace) || covers <= 1 {
		return ChunkLife
	}
	d := time.Duration(covers-1)*pace + pace/2 + renewLead
	return min(max(d, ChunkLife), MaxChunkLife)
}

// slow reports whether a lane at pace (time between requests; 0: unknown)
// is slow: SlowCovers requests take longer than ChunkLife.
func slow(pace time.Duration) bool {
	return pace > 0 && SlowCovers*pace > ChunkLife
}

// fastPerSecond is the rate of a lane at the edge of slow: SlowCovers
// requests in ChunkLife, per second (5). A lane that took as many in its
// last second or in the current one is fast whatever its average pace.
const fastPerSecond = int(SlowCovers * time.Second / ChunkLife)

// slowWant is how many requests a slow lane at pace may use in one record:
// the most whose RecordLife fits in SlowCovers × pace (at most
// MaxChunkLife), at least 1.
func slowWant(pace time.Duration) int {
	h := min(SlowCovers*pace, MaxChunkLife)
	return max(1, int((h-renewLead-pace/2)/pace)+1)
}

// Pacific is America/Los_Angeles, where Gemini's daily quotas reset.
// It is nil when the time zone database is missing; Config falls back to an
// error in that case (import time/tzdata to embed it).
var Pacific, _ = time.LoadLocation("America/Los_Angeles")

func (c *Config) withDefaults() {
	if c.Location == nil {
		c.Location = Pacific
	}
	if c.Critical == 0 {
		c.Critical = 0.9
	}
}

// Validate reports the first problem with the configuration, naming the field
// and value.
func (c Config) Validate() error {
	c.withDefaults()
	if c.Location == nil {
		return errors.New("location: America/Los_Angeles not found: import time/tzdata")
	}
	if c.Critical < 0 || c.Critical > 1 {
		return fmt.Errorf("critical: %v: must be in (0, 1]", c.Critical)
	}
	if len(c.Classes) == 0 {
		return errors.New("classes: none configured: need at least one model class")
	}
	seen := make(map[string]bool)
	for i, cl := range c.Classes {
		if cl.Name == "" {
			return fmt.Errorf("classes[%d].name: empty", i)
		}
		if seen[cl.Name] {
			return fmt.Errorf("classes[%d].name: %q: duplicate class", i, cl.Name)
		}
		seen[cl.Name] = true
		if err := cl.Limits.validate(fmt.Sprintf("classes[%d] (%s)", i, cl.Name)); err != nil {
			return err
		}
		if cl.Burst < 0 || cl.Burst > cl.Limits.RPM {
			return fmt.Errorf("classes[%d] (%s).burst: %d: must be 0 (default) to rpm (%d)", i, cl.Name, cl.Burst, cl.Limits.RPM)
		}
		if cl.WindowMargin < 0 || cl.WindowMargin >= time.Minute {
			return fmt.Errorf("classes[%d] (%s).window_margin: %v: must be >= 0 and under 1m", i, cl.Name, cl.WindowMargin)
		}
	}
	if len(c.Keys) == 0 {
		return errors.New("keys: none configured: a class with no lanes cannot serve; need at least one key")
	}
	ids := make(map[string]bool)
	for i, k := range c.Keys {
		if k.ID == "" {
			return fmt.Errorf("keys[%d].id: empty", i)
		}
		if ids[k.ID] {
			return fmt.Errorf("keys[%d].id: %q: duplicate key id", i, k.ID)
		}
		ids[k.ID] = true
		if k.Project == "" {
			return fmt.Errorf("keys[%d].project: empty for key %q: every key belongs to a project (use the key id for a project of its own)", i, k.ID)
		}
	}
	return nil
}
