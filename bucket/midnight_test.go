package bucket

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// The Pacific days these tests end: an ordinary one, and the two
// daylight-saving days of 2026 (23 h: March 8, 25 h: November 1).
var midnightDays = []struct {
	name  string
	start time.Time
	hours float64
}{
	{"24h", time.Date(2026, 11, 27, 0, 0, 0, 0, Pacific), 24},
	{"23h", time.Date(2026, 3, 8, 0, 0, 0, 0, Pacific), 23},
	{"25h", time.Date(2026, 11, 1, 0, 0, 0, 0, Pacific), 25},
}

const midnightMargin = 250 * time.Millisecond

func midnightClass(t *testing.T, rpd int) *Class {
	t.Helper()
	return mustPool(t, Config{Classes: []ClassConfig{{Name: "c", Limits: Limits{RPM: 1000, RPD: rpd}, WindowMargin: midnightMargin}},
		Keys: keysN(1)}).Class("c")
}

// dayEndOf returns the end of the day that starts at start, checking the
// day's length (the daylight-saving days are 23 h and 25 h).
func dayEndOf(t *testing.T, start time.Time, hours float64) time.Time {
	t.Helper()
	end := NextMidnight(start, Pacific)
	if got := end.Sub(start).Hours(); got != hours {
		t.Fatalf("the day starting %v lasts %v h, want %v", start, got, hours)
	}
	return end
}

// TestMidnightHold: in its day's last WindowMargin a lane takes nothing (a
// request taken then could reach the API after midnight, which counts it on
// the next day); it serves again at midnight, on the new day. On every kind
// of day. Before the hold, the lane served until the last nanosecond.
func TestMidnightHold(t *testing.T) {
	for _, d := range midnightDays {
		t.Run(d.name, func(t *testing.T) {
			c := midnightClass(t, 1000)
			end := dayEndOf(t, d.start, d.hours)
			day, next := Day(d.start, Pacific), Day(end, Pacific)
			if l, ok, _ := c.Acquire(end.Add(-midnightMargin-time.Nanosecond), 0); !ok || l.Day != day {
				t.Fatalf("just before the day's last margin: ok %v, day %q, want true, %q", ok, l.Day, day)
			}
			for _, at := range []time.Time{end.Add(-midnightMargin), end.Add(-time.Nanosecond)} {
				if _, ok, wake := c.Acquire(at, 0); ok || !wake.Equal(end) {
					t.Fatalf("at %v (midnight %v): ok %v, next %v: want held until midnight", at, end, ok, wake)
				}
			}
			l, ok, _ := c.Acquire(end, 0)
			if !ok || l.Day != next {
				t.Fatalf("at midnight: ok %v, day %q, want true, %q", ok, l.Day, next)
			}
		})
	}
}

// TestCrossDayLateStamp (the margin alone crosses midnight): a lease taken
// before the day's last margin and stamped in it (a slow record) has its
// slot after midnight; CrossDay charges it on the next day too, once, and
// that day starts with it used: at RPD 2 the lane sends one more request
// there, not two (the API counts the late one on the new day).
func TestCrossDayLateStamp(t *testing.T) {
	for _, d := range midnightDays {
		t.Run(d.name, func(t *testing.T) {
			c := midnightClass(t, 2)
			end := dayEndOf(t, d.start, d.hours)
			next := Day(end, Pacific)
			l, ok, _ := c.Acquire(end.Add(-400*time.Millisecond), 0)
			if !ok {
				t.Fatal("refused")
			}
			slot := c.Stamp(l, end.Add(-100*time.Millisecond))
			if slot.Before(end) {
				t.Fatalf("slot %v before midnight %v", slot, end)
			}
			if got, ok := c.CrossDay(l, time.Time{}, slot); !ok || got != next {
				t.Fatalf("CrossDay: %q %v, want %q true", got, ok, next)
			}
			// Once per lease: a later move from the crossed slot charges nothing.
			if _, again := c.CrossDay(l, slot, slot.Add(time.Second)); again {
				t.Fatal("a second move of the crossed slot charged again")
			}
			if u := c.Usage(end.Add(-time.Millisecond)).Lanes[0].DayUsed; u != 1 {
				t.Fatalf("the old day's use %d, want 1 (its unit stays charged)", u)
			}
			checkNewDay(t, c, end, 1)
		})
	}
}

// checkNewDay checks, from midnight end on, that the lane starts the day
// with want units used and reserved and takes only RPD (2) less them.
func checkNewDay(t *testing.T, c *Class, end time.Time, want int) {
	t.Helper()
	lu := c.Usage(end).Lanes[0]
	if lu.DayUsed != want || lu.Reserved != want {
		t.Fatalf("the new day starts with %d used, %d reserved, want %d and %d", lu.DayUsed, lu.Reserved, want, want)
	}
	got := 0
	for at := end; ; at = at.Add(time.Second) {
		l, ok, next := c.Acquire(at, 0)
		if !ok {
			if want := NextMidnight(end, Pacific); !next.Equal(want) {
				t.Fatalf("refused until %v, want the next midnight %v", next, want)
			}
			break
		}
		c.Stamp(l, at)
		got++
	}
	if got != 2-want {
		t.Fatalf("the new day took %d, want %d (RPD 2, %d charged before)", got, 2-want, want)
	}
}

// TestCrossDayLateWrite (a late write crosses midnight): a lease stamped
// before midnight and written 1.5 s after it, its slot moved by Restamp to
// the write plus WriteMargin, is charged on the new day too: kept until the
// lane rolls to it, or at once when it has (a lease taken after midnight
// before the write). Either way the new day has RPD (2) requests, the late
// one included. A move that stays within the day charges nothing.
func TestCrossDayLateWrite(t *testing.T) {
	for _, d := range midnightDays {
		for _, rolled := range []bool{false, true} {
			name := d.name + "/pending"
			if rolled {
				name = d.name + "/rolled"
			}
			t.Run(name, func(t *testing.T) {
				c := midnightClass(t, 2)
				end := dayEndOf(t, d.start, d.hours)
				// A move within the day: nothing.
				l0, _, _ := c.Acquire(end.Add(-10*time.Second), 0)
				s0 := c.Stamp(l0, end.Add(-10*time.Second))
				if to, moved := c.Restamp(l0, end.Add(-5*time.Second)); !moved {
					t.Fatal("a late write within the day did not move the slot")
				} else if _, ok := c.CrossDay(l0, s0, to); ok {
					t.Fatal("a slot moved within the day charged the next day")
				}
				c.Landed(l0) // its work returned: not in flight at midnight
				l, _, _ := c.Acquire(end.Add(-500*time.Millisecond), 0)
				from := c.Stamp(l, end.Add(-500*time.Millisecond))
				taken := 0
				if rolled {
					nl, ok, _ := c.Acquire(end.Add(time.Second), 0)
					if !ok {
						t.Fatal("refused after midnight")
					}
					c.Stamp(nl, end.Add(time.Second))
					taken = 1
				}
				to, moved := c.Restamp(l, end.Add(1500*time.Millisecond))
				if !moved {
					t.Fatal("the late write did not move the slot")
				}
				if day, ok := c.CrossDay(l, from, to); !ok || day != Day(end, Pacific) {
					t.Fatalf("CrossDay: %q %v, want %q true", day, ok, Day(end, Pacific))
				}
				after := end.Add(2 * time.Second)
				if u := c.Usage(after).Lanes[0].DayUsed; u != 1+taken {
					t.Fatalf("the new day's use %d after the late write, want %d", u, 1+taken)
				}
				if l, ok, _ := c.Acquire(after, 0); ok == (taken == 1) {
					t.Fatalf("after the late write: a lease %v, want one only when the lane took none after midnight", ok)
				} else if ok {
					c.Stamp(l, after)
				}
				if _, ok, _ := c.Acquire(after.Add(time.Second), 0); ok {
					t.Fatal("the new day took more than RPD (2) with the late write")
				}
			})
		}
	}
}

// TestCrossDayRestartBolt: a unit charged on the next day before it began
// (both cases: a late stamp, a late write) is recorded, as the scheduler's
// ledger does, in a Bolt file's count of that day; the process stops
// before midnight and a new one restores today's and tomorrow's counts from
// the file: at midnight its lane starts the day with them used (RPD 3: one
// more request, not three).
func TestCrossDayRestartBolt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	const rpd = 3
	newClass := func() *Class {
		return mustPool(t, Config{Classes: []ClassConfig{{Name: "c", Limits: Limits{RPM: 1000, RPD: rpd}, WindowMargin: midnightMargin}},
			Keys: keysN(1)}).Class("c")
	}
	d := midnightDays[1] // the 23 h day
	end := dayEndOf(t, d.start, d.hours)
	lane := store.LaneID{Project: "key1", Class: "c"}
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := newClass()
	// (a) taken before the last margin, stamped in it.
	la, _, _ := c.Acquire(end.Add(-time.Second), 0)
	sa := c.Stamp(la, end.Add(-10*time.Millisecond))
	// (b) stamped before it, written after midnight.
	lb, _, _ := c.Acquire(end.Add(-time.Second), 0)
	fb := c.Stamp(lb, end.Add(-time.Second))
	tb, _ := c.Restamp(lb, end.Add(time.Second))
	for _, cr := range []struct {
		l        Lease
		from, to time.Time
	}{{la, time.Time{}, sa}, {lb, fb, tb}} {
		if _, err := st.AddDaily(ctx, cr.l.Day, lane, 1); err != nil { // the lease's own record
			t.Fatal(err)
		}
		day, ok := c.CrossDay(cr.l, cr.from, cr.to)
		if !ok {
			t.Fatalf("CrossDay(%v -> %v) charged nothing (midnight %v)", cr.from, cr.to, end)
		}
		if _, err := st.AddDaily(ctx, day, lane, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// The restart, 0.5 s before midnight.
	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := end.Add(-500 * time.Millisecond)
	c = newClass()
	for _, day := range []string{Day(now, Pacific), Day(end, Pacific)} {
		counts, err := st.Daily(ctx, day)
		if err != nil {
			t.Fatal(err)
		}
		if len(counts) != 1 || counts[0].Count != 2 {
			t.Fatalf("stored counts of %s: %v, want 2 on %v", day, counts, lane)
		}
		if !c.Restore(lane.Project, counts[0].Day, counts[0].Count, now) {
			t.Fatalf("Restore of %s not applied", day)
		}
	}
	if lu := c.Usage(now).Lanes[0]; lu.DayUsed != 2 {
		t.Fatalf("today's use after the restart %d, want 2", lu.DayUsed)
	}
	got := 0
	for at := end; ; at = at.Add(time.Second) {
		l, ok, _ := c.Acquire(at, 0)
		if !ok {
			break
		}
		c.Stamp(l, at)
		got++
	}
	if got != rpd-2 {
		t.Fatalf("the new day took %d after the restart, want %d (RPD %d, 2 charged before it began)", got, rpd-2, rpd)
	}
}

// TestMidnightInFlight (gap 1 of the midnight charge): a request stamped
// 0.5 s before midnight is still in flight when the lane rolls to the new
// day, its write not reported yet: it holds one provisional unit of the new
// day, so at RPD 2 the lane takes one request after midnight, not two.
// Written late (its slot moved past midnight), CrossDay confirms that unit
// (the new day's 2 are the late one and one more); landed without crossing
// (its write was in time), the unit comes back and the lane takes a second
// request. Before, the lane took 2 at midnight and the late write made 3
// on a day of RPD 2 (a per-day 429). On every kind of day.
func TestMidnightInFlight(t *testing.T) {
	for _, d := range midnightDays {
		for _, late := range []bool{true, false} {
			name := d.name + "/in-time"
			if late {
				name = d.name + "/late"
			}
			t.Run(name, func(t *testing.T) {
				c := midnightClass(t, 2)
				end := dayEndOf(t, d.start, d.hours)
				newDay := Day(end, Pacific)
				l, ok, _ := c.Acquire(end.Add(-500*time.Millisecond), 0)
				if !ok {
					t.Fatal("refused before the day's last margin")
				}
				from := c.Stamp(l, end.Add(-500*time.Millisecond))
				n1, ok, _ := c.Acquire(end.Add(time.Second), 0)
				if !ok || n1.Day != newDay {
					t.Fatalf("after midnight: ok %v, day %q; want a lease of %s", ok, n1.Day, newDay)
				}
				c.Stamp(n1, end.Add(time.Second))
				if _, ok, next := c.Acquire(end.Add(1500*time.Millisecond), 0); ok {
					t.Fatal("the lane took RPD (2) requests on the new day with one in flight since before midnight")
				} else if want := NextMidnight(end, Pacific); !next.Equal(want) {
					t.Fatalf("refused until %v, want the next midnight %v", next, want)
				}
				if p := c.Provisional("key1", end.Add(time.Second)); p != 1 {
					t.Fatalf("provisional units of the new day %d, want 1 (the request in flight at midnight)", p)
				}
				want := 2 // the lane's use of the new day at the end
				if late {
					to, moved := c.Restamp(l, end.Add(2*time.Second))
					if !moved {
						t.Fatal("the late write did not move the slot")
					}
					if day, ok := c.CrossDay(l, from, to); !ok || day != newDay {
						t.Fatalf("CrossDay: %q %v, want %q true (the caller records the unit)", day, ok, newDay)
					}
				}
				c.Landed(l)
				c.Landed(n1)
				at := end.Add(3 * time.Second)
				if p := c.Provisional("key1", at); p != 0 {
					t.Fatalf("provisional units after the request landed %d, want 0", p)
				}
				if nl, ok, _ := c.Acquire(at, 0); ok == late {
					t.Fatalf("after the request landed (late %v): a lease %v", late, ok)
				} else if ok {
					c.Stamp(nl, at)
				}
				if _, ok, _ := c.Acquire(at.Add(time.Second), 0); ok {
					t.Fatal("the new day took more than RPD (2)")
				}
				if lu := c.Usage(at).Lanes[0]; lu.DayUsed != want || lu.Reserved < want {
					t.Fatalf("the new day's use %d, reserved %d; want %d", lu.DayUsed, lu.Reserved, want)
				}
			})
		}
	}
}

// TestMidnightLandedBefore: a request that lands before midnight, or is
// charged on the next day by a late stamp (CrossDay), holds no provisional
// unit: the lane takes the new day's whole RPD (less the charged unit).
func TestMidnightLandedBefore(t *testing.T) {
	c := midnightClass(t, 2)
	d := midnightDays[0]
	end := dayEndOf(t, d.start, d.hours)
	l, _, _ := c.Acquire(end.Add(-time.Second), 0)
	c.Stamp(l, end.Add(-time.Second))
	c.Landed(l)
	la, _, _ := c.Acquire(end.Add(-400*time.Millisecond), 0)
	slot := c.Stamp(la, end.Add(-100*time.Millisecond))
	if _, ok := c.CrossDay(la, time.Time{}, slot); !ok {
		t.Fatal("the late stamp was not charged on the next day")
	}
	if p := c.Provisional("key1", end); p != 0 {
		t.Fatalf("provisional units %d, want 0", p)
	}
	checkNewDay(t, c, end, 1)
	c.Landed(la) // charged: nothing more comes back
	if lu := c.Usage(end.Add(time.Minute)).Lanes[0]; lu.DayUsed != 2 {
		t.Fatalf("the new day's use %d after the charged lease landed, want 2", lu.DayUsed)
	}
}

// TestPreCharge: in the day's last margin PreCharge charges the next day one
// unit per request in flight (returned for the caller to record before
// midnight, so other processes count it). Written late, CrossDay charges
// nothing more; landed in time (before midnight or after), the unit stays
// reserved on the new day for the lane to use: either way the new day takes
// RPD (2) in all, and never more.
func TestPreCharge(t *testing.T) {
	for _, d := range midnightDays {
		for _, how := range []string{"late", "landed before midnight", "landed after midnight"} {
			t.Run(d.name+"/"+how, func(t *testing.T) {
				c := midnightClass(t, 2)
				end := dayEndOf(t, d.start, d.hours)
				newDay := Day(end, Pacific)
				l, _, _ := c.Acquire(end.Add(-time.Second), 0)
				from := c.Stamp(l, end.Add(-time.Second))
				if got := c.PreCharge(end.Add(-midnightMargin - time.Millisecond)); len(got) != 0 {
					t.Fatalf("PreCharge before the day's last margin: %v, want nothing", got)
				}
				got := c.PreCharge(end.Add(-midnightMargin))
				if len(got) != 1 || got[0] != (DayUnits{Project: "key1", Day: newDay, Units: 1}) {
					t.Fatalf("PreCharge in the last margin: %v, want 1 unit of %s", got, newDay)
				}
				if again := c.PreCharge(end.Add(-time.Millisecond)); len(again) != 0 {
					t.Fatalf("a second PreCharge: %v, want nothing (charged once)", again)
				}
				switch how {
				case "late":
					to, _ := c.Restamp(l, end.Add(time.Second))
					if day, ok := c.CrossDay(l, from, to); ok {
						t.Fatalf("CrossDay of a pre-charged lease: %q, true; want nothing more to record", day)
					}
					c.Landed(l)
				case "landed before midnight":
					c.Landed(l)
				}
				at := end.Add(2 * time.Second)
				want := 1 // the new day's leases after midnight
				if how != "late" {
					want = 2
				}
				n := 0
				for i := range 3 {
					nl, ok, _ := c.Acquire(at.Add(time.Duration(i)*time.Second), 0)
					if !ok {
						break
					}
					c.Stamp(nl, at)
					n++
					if how == "landed after midnight" && i == 0 {
						if p := c.Provisional("key1", at); p != 1 {
							t.Fatalf("provisional units %d after midnight, want 1", p)
						}
						c.Landed(l)
					}
				}
				if how == "landed after midnight" {
					want = 2
				}
				if n != want {
					t.Fatalf("the new day took %d, want %d (RPD 2)", n, want)
				}
				if lu := c.Usage(at.Add(5 * time.Second)).Lanes[0]; lu.Reserved != 2 || lu.DayUsed != 2 {
					t.Fatalf("the new day's use %d, reserved %d; want 2 and 2", lu.DayUsed, lu.Reserved)
				}
			})
		}
	}
}
