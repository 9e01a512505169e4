package store

import (
	"context"
	"fmt"
	"time"
)

// A Record is one write-ahead reservation of a lane: Units new daily units
// of Day, and the promise that the Covers requests it covers are stamped
// into the lane's window between At and Until (see bucket.Lease.Record).
// A process that is killed leaves its records behind; the next one rebuilds
// the lane's window from them on the safe side (package scheduler).
type Record struct {
	Lane   LaneID
	Day    string    // DayFormat, Pacific calendar date of the units
	Units  int       // new daily units added to the lane's count for Day; >= 0 (0: a renewal)
	Covers int       // requests of the lane the record covers; >= 1
	At     time.Time // the reservation's time: no request it covers is stamped before
	Until  time.Time // no request it covers is stamped after; >= At
	// PrevTokens is the estimated input tokens of the requests covered by
	// the lane's previous record (>= 0).
	PrevTokens int64
	// Tokens is the input-token budget of the requests the record covers
	// (>= 0), for a shared store that enforces the lane's TPM across
	// processes: Redis takes it from the lane's shared TPM window with the
	// grant (see Redis). Bolt and Memory do not use it (Bolt does not store
	// it).
	Tokens int64
	// PrevUnused is the part of the Tokens of the lane's previous record
	// that no request used (>= 0): a shared store gives it back from that
	// record's grant (Redis). Bolt and Memory do not use it.
	PrevUnused int64
}

// Sent is one request in a lane's window log: the time its slot counts from
// (its stamp plus the class's window margin) and its input tokens.
type Sent struct {
	At     time.Time
	Tokens int64
}

// Window is the window log of one lane, oldest request first.
type Window struct {
	Lane LaneID
	Sent []Sent
}

// Settlement is what a process writes at a clean stop: the daily units it
// reserved and did not use, given back, and the exact window log of every
// lane.
type Settlement struct {
	GiveBack []DailyCount // units to subtract from each lane's count of Day (Count >= 0)
	Windows  []Window     // the new window logs; every stored log and record is replaced
	// Unused are token budgets no request used (Record.Tokens of the
	// lanes' last records, shared TPM): Redis gives them back from this
	// process's latest grant of each lane. Bolt and Memory ignore them.
	Unused []UnusedTokens
}

// UnusedTokens is the part of a lane's last record's token budget that no
// request used.
type UnusedTokens struct {
	Lane   LaneID
	Tokens int64 // >= 0
}

// LedgerRecords is what Reserve and Settle left in a store: the window logs
// of the last clean stop and the records written since, in write order.
type LedgerRecords struct {
	Windows []Window
	Records []Record
}

// RecordKeep is how long records are kept after their Until: Reserve forgets
// older ones. It outlasts any window (60 s plus a margin under a minute).
const RecordKeep = 2 * time.Minute

// Ledger is the durable side of the quota ledger: the write-ahead daily
// units and the window logs that outlive a process. Bolt and Memory implement
// it; the scheduler uses it when its Store does, and falls back to AddDaily
// (no window across restarts, no units given back) when it does not.
// Implementations are safe for concurrent use and follow Store's rules for
// ctx, ErrClosed and ErrInvalid.
type Ledger interface {
	// Reserve adds r.Units to the lane's count for r.Day (as AddDaily does;
	// a day older than the history kept gives ErrTooOld) and stores r, in
	// one durable step, and returns the new count. It forgets records whose
	// Until is RecordKeep before r.At.
	Reserve(ctx context.Context, r Record) (int, error)
	// Settle applies s in one durable step: subtracts each GiveBack count
	// (never below zero; a day not kept is skipped), then replaces every
	// stored window log with s.Windows and deletes every record.
	Settle(ctx context.Context, s Settlement) error
	// LedgerRecords returns the stored window logs, by lane, and records, in
	// write order.
	LedgerRecords(ctx context.Context) (LedgerRecords, error)
}

func checkRecord(r Record) error {
	if err := checkDay(r.Day); err != nil {
		return err
	}
	if err := checkLane(r.Lane); err != nil {
		return err
	}
	switch {
	case r.Units < 0:
		return fmt.Errorf("%w: Record.Units: %d: must be >= 0", ErrInvalid, r.Units)
	case r.Covers < 1:
		return fmt.Errorf("%w: Record.Covers: %d: must be >= 1", ErrInvalid, r.Covers)
	case r.At.IsZero():
		return fmt.Errorf("%w: Record.At: zero", ErrInvalid)
	case r.Until.Before(r.At):
		return fmt.Errorf("%w: Record.Until: %v: before At %v", ErrInvalid, r.Until, r.At)
	case r.PrevTokens < 0:
		return fmt.Errorf("%w: Record.PrevTokens: %d: must be >= 0", ErrInvalid, r.PrevTokens)
	case r.Tokens < 0:
		return fmt.Errorf("%w: Record.Tokens: %d: must be >= 0", ErrInvalid, r.Tokens)
	case r.PrevUnused < 0:
		return fmt.Errorf("%w: Record.PrevUnused: %d: must be >= 0", ErrInvalid, r.PrevUnused)
	}
	return nil
}

func checkSettlement(s Settlement) error {
	for i, g := range s.GiveBack {
		if err := checkDay(g.Day); err != nil {
			return err
		}
		if err := checkLane(g.Lane); err != nil {
			return err
		}
		if g.Count < 0 {
			return fmt.Errorf("%w: Settlement.GiveBack[%d].Count: %d: must be >= 0", ErrInvalid, i, g.Count)
		}
	}
	for i, u := range s.Unused {
		if err := checkLane(u.Lane); err != nil {
			return err
		}
		if u.Tokens < 0 {
			return fmt.Errorf("%w: Settlement.Unused[%d].Tokens: %d: must be >= 0", ErrInvalid, i, u.Tokens)
		}
	}
	for i, w := range s.Windows {
		if err := checkLane(w.Lane); err != nil {
			return err
		}
		for j, e := range w.Sent {
			if e.Tokens < 0 {
				return fmt.Errorf("%w: Settlement.Windows[%d].Sent[%d].Tokens: %d: must be >= 0", ErrInvalid, i, j, e.Tokens)
			}
		}
	}
	return nil
}
