package store

import (
	"cmp"
	"fmt"
	"math"
	"strconv"
	"time"
)

// checkDay reports whether day is a canonical DayFormat date ("2026-03-08")
// with a year in 0001..9999, so that day keys sort like the days they name.
func checkDay(day string) error {
	if len(day) != len(DayFormat) {
		return fmt.Errorf("%w: day: %s: want a date like %s", ErrInvalid, quote(day), DayFormat)
	}
	t, err := time.Parse(DayFormat, day)
	if err != nil || t.Format(DayFormat) != day || t.Year() < 1 {
		return fmt.Errorf("%w: day: %s: want a date like %s", ErrInvalid, quote(day), DayFormat)
	}
	return nil
}

// oldestKept returns the oldest day kept when newest is the newest day written
// and history days are kept. newest must be valid.
func oldestKept(newest string, history int) string {
	t, err := time.Parse(DayFormat, newest)
	if err != nil {
		panic("store: oldestKept of an unchecked day " + strconv.Quote(newest))
	}
	t = t.AddDate(0, 0, -(history - 1))
	if t.Year() < 1 {
		return "0001-01-01"
	}
	return t.Format(DayFormat)
}

// checkID checks a non-empty identifier of at most MaxIDLen bytes.
func checkID(field, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: %s: %q: must not be empty", ErrInvalid, field, id)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: %s: %s (%d bytes): must be at most %d bytes", ErrInvalid, field, quote(id), len(id), MaxIDLen)
	}
	return nil
}

func checkLane(lane LaneID) error {
	if err := checkID("lane.Project", lane.Project); err != nil {
		return err
	}
	return checkID("lane.Class", lane.Class)
}

// checkAdd validates the arguments of AddDaily.
func checkAdd(day string, lane LaneID, n int) error {
	if err := checkDay(day); err != nil {
		return err
	}
	if err := checkLane(lane); err != nil {
		return err
	}
	if n <= 0 {
		return fmt.Errorf("%w: n: %d: must be > 0", ErrInvalid, n)
	}
	return nil
}

// addCount adds n to old, refusing overflow.
func addCount(day string, lane LaneID, old, n int) (int, error) {
	if old > math.MaxInt-n {
		return 0, fmt.Errorf("%w: n: %d: counter of %s on %s (%d) would overflow", ErrInvalid, n, quote(lane.String()), day, old)
	}
	return old + n, nil
}

// tooOld is the error of AddDaily for a day before oldest.
func tooOld(day, oldest string, history int) error {
	return fmt.Errorf("%w: day: %s: the oldest day kept is %s (%d days)", ErrTooOld, day, oldest, history)
}

// quote quotes s for an error message, shortened when long.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

func compareLanes(a, b LaneID) int {
	if c := cmp.Compare(a.Project, b.Project); c != 0 {
		return c
	}
	return cmp.Compare(a.Class, b.Class)
}

func compareCounts(a, b DailyCount) int {
	if c := cmp.Compare(a.Day, b.Day); c != 0 {
		return c
	}
	return compareLanes(a.Lane, b.Lane)
}

// jobsBatch is how many job records Jobs reads per lock or transaction.
const jobsBatch = 64
