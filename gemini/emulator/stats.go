package emulator

import (
	"maps"
	"slices"
	"time"
)

// Stats is a snapshot of what an Emulator served. It is a copy: changing it
// does not change the emulator.
type Stats struct {
	// Requests counts generateContent and streamGenerateContent requests by
	// key name, model and status.
	Requests map[RequestKey]int
	// MaxWindow is, per (project, model), the most requests admitted in any
	// sliding 60 s window so far (requests spent through Spend included), by
	// the times they were received, whatever order they were checked in.
	MaxWindow map[LaneKey]int
	// RateLimited counts 429 answers by quota id ("GenerateRequestsPerMinutePerProjectPerModel",
	// with "-FreeTier" when Config.FreeTier). A 429 that violated several
	// quotas counts once for each.
	RateLimited map[string]int
	// Day is, per (project, model), the requests admitted on the current day
	// (in Config.Location) at the time of the snapshot.
	Day map[LaneKey]int
	// Spent is, per (project, model), the requests admitted through Spend.
	Spent map[LaneKey]int
	// CountTokens is the number of countTokens requests answered 200.
	CountTokens int

	// What the API saw, per (project, model), of the generate requests that
	// reached the quota check (key known, request valid), whatever their
	// answer (200, 429, 5xx): a client that respects the quota keeps
	// MaxSentWindow at most the lane's RPM and RateLimitedPerMinute at 0.
	//
	// Sent holds their arrival times, oldest first: the moment each one's
	// body had been received (when it counts), before it was parsed.
	Sent map[LaneKey][]time.Time
	// MaxSentWindow is the most of them that arrived in any sliding 60 s
	// window (one arriving at t counts during [t, t+60s)).
	MaxSentWindow map[LaneKey]int
	// RateLimitedPerMinute counts the lane's 429s for a per-minute quota
	// (RPM or TPM; once per request, also when a per-day quota was
	// exceeded too).
	RateLimitedPerMinute map[LaneKey]int
}

// Stats returns a snapshot of the counters.
func (e *Emulator) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	s := Stats{
		Requests:    maps.Clone(e.requests),
		MaxWindow:   make(map[LaneKey]int, len(e.lanes)),
		RateLimited: maps.Clone(e.rateLimited),
		Day:         make(map[LaneKey]int, len(e.lanes)),
		Spent:       make(map[LaneKey]int),
		CountTokens: e.countTokens,

		Sent:                 make(map[LaneKey][]time.Time),
		MaxSentWindow:        make(map[LaneKey]int),
		RateLimitedPerMinute: make(map[LaneKey]int),
	}
	for k, l := range e.lanes {
		if len(l.sent) > 0 {
			s.Sent[k] = slices.Clone(l.sent)
			s.MaxSentWindow[k] = l.maxSent
		}
		if l.limited > 0 {
			s.RateLimitedPerMinute[k] = l.limited
		}
		if l.maxWin > 0 {
			s.MaxWindow[k] = l.maxWin
		}
		if n := l.today(now, e.loc); n > 0 {
			s.Day[k] = n
		}
		if l.spent > 0 {
			s.Spent[k] = l.spent
		}
	}
	return s
}

// Status is the number of requests answered with status, over all keys and
// models.
func (s Stats) Status(status int) int {
	n := 0
	for k, c := range s.Requests {
		if k.Status == status {
			n += c
		}
	}
	return n
}

// Total is the number of generate requests answered, whatever the status.
func (s Stats) Total() int {
	n := 0
	for _, c := range s.Requests {
		n += c
	}
	return n
}
