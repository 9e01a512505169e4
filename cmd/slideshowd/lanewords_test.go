package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/scheduler"
)

// TestLaneWords: `keys` and `usage` word a cooldown ending within the
// second as "<1s" (not "0s"), and a lane the cluster holds (a grant
// refused, no 429) by its hold, not as a cooldown.
func TestLaneWords(t *testing.T) {
	now := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	midnight := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		state scheduler.KeyClassState
		want  string
	}{
		{scheduler.KeyClassState{State: "cooling", Until: now.Add(300 * time.Millisecond)}, "cooling <1s"},
		{scheduler.KeyClassState{State: "cooling", Until: now.Add(20 * time.Second)}, "cooling 20s"},
		{scheduler.KeyClassState{State: "held", Reason: scheduler.HoldWindow, Until: now.Add(13 * time.Second)},
			"waiting for the cluster's window (13s)"},
		{scheduler.KeyClassState{State: "held", Reason: scheduler.HoldShare, Until: now.Add(400 * time.Millisecond)},
			"Redis unreachable: share used (<1s)"},
		{scheduler.KeyClassState{State: "held", Reason: scheduler.HoldDay, Until: midnight},
			"cluster day full until Dec 2 00:00 PST"},
	} {
		if got := keyClassState(tt.state, now); got != tt.want {
			t.Errorf("keys: %+v: %q, want %q", tt.state, got, tt.want)
		}
	}
	for _, tt := range []struct {
		lane scheduler.LaneSummary
		want string
	}{
		{scheduler.LaneSummary{Enabled: true, DayLimit: 250, CoolUntil: now.Add(300 * time.Millisecond)}, "cooling down for <1s"},
		{scheduler.LaneSummary{Enabled: true, DayLimit: 250, HeldUntil: now.Add(13 * time.Second), Held: scheduler.HoldWindow},
			"waiting for the cluster's window (13s)"},
		{scheduler.LaneSummary{Enabled: true, DayLimit: 250, HeldUntil: now.Add(13 * time.Second), Held: scheduler.HoldTokens,
			CoolUntil: now.Add(20 * time.Second)}, "cooling down for 20s"}, // the 429's cooldown outlasts the hold
		{scheduler.LaneSummary{Enabled: true, DayLimit: 250, HeldUntil: midnight, Held: scheduler.HoldDay},
			"cluster day full until Dec 2 00:00 PST"},
	} {
		if got := laneState(tt.lane, now, midnight); got != tt.want {
			t.Errorf("usage: %+v: %q, want %q", tt.lane, got, tt.want)
		}
	}
}

// TestUsageClusterDay: with a shared store usage says the day used by the
// cluster and by this process apart, and what is left is the cluster's
// (day_remaining: 2 of 20, not this process's 18).
func TestUsageClusterDay(t *testing.T) {
	now := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	sum := scheduler.Summary{Time: now, Classes: []scheduler.ClassSummary{{Name: "image", Keys: 2, RPMLimit: 40,
		DayUsed: 2, DayLimit: 20, ClusterDayUsed: 18, DayRemaining: 2}}}
	var out bytes.Buffer
	printUsage(&out, sum, config.Config{})
	if want := "today 18 used by the cluster (2 by this process), 2 left"; !strings.Contains(out.String(), want) {
		t.Errorf("usage without %q:\n%s", want, out.String())
	}
	sum.Classes[0].ClusterDayUsed, sum.Classes[0].DayRemaining = 0, 18
	out.Reset()
	printUsage(&out, sum, config.Config{})
	if want := "today 2 used, 18 left"; !strings.Contains(out.String(), want) {
		t.Errorf("usage without %q:\n%s", want, out.String())
	}
}

// TestUsageKeysColumnAligned: a lane whose keys are all disabled shows
// "(disabled: ...)" in the KEYS column where the header and the other
// lanes' keys start (it began with a space, one column to the right).
func TestUsageKeysColumnAligned(t *testing.T) {
	now := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	sum := scheduler.Summary{Time: now, Classes: []scheduler.ClassSummary{{Name: "text", Keys: 1, RPMLimit: 10, DayLimit: 100,
		Lanes: []scheduler.LaneSummary{
			{Project: "team", Keys: []string{"main"}, Enabled: true, RPMLimit: 5, DayLimit: 50},
			{Project: "other", DisabledKeys: []string{"leaky"}, RPMLimit: 5, DayLimit: 50},
		}}}}
	var out bytes.Buffer
	printUsage(&out, sum, config.Config{})
	col := -1
	for line := range strings.Lines(out.String()) {
		if i := strings.Index(line, "KEYS"); i >= 0 && strings.Contains(line, "PROJECT") {
			col = i
			continue
		}
		if col < 0 || len(line) <= col {
			continue
		}
		for _, cell := range []string{"main", "(disabled: leaky)"} {
			if i := strings.Index(line, cell); i >= 0 && i != col {
				t.Errorf("%q at column %d, the KEYS header at %d:\n%s", cell, i, col, out.String())
			}
		}
	}
	if col < 0 || !strings.Contains(out.String(), "(disabled: leaky)") {
		t.Fatalf("no lane table with the disabled key:\n%s", out.String())
	}
}

// TestUsageLanesOutOfService: the class's day counts its enabled lanes
// only, so a lane stopped (or with every key disabled) after sending took
// its requests out of "today N used" without a word (0 used while the lane
// below said 1); the line now says them apart.
func TestUsageLanesOutOfService(t *testing.T) {
	now := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	sum := scheduler.Summary{Time: now, Classes: []scheduler.ClassSummary{{Name: "image", Keys: 0, RPMLimit: 0, DayLimit: 0,
		Lanes: []scheduler.LaneSummary{
			{Project: "project1", DisabledKeys: []string{"key1"}, Stopped: "no quota on this model", RPMLimit: 20, DayLimit: 240, DayUsed: 1},
		}}}}
	var out bytes.Buffer
	printUsage(&out, sum, config.Config{})
	if want := "today 0 used, 0 left (plus 1 used today by this process on lanes out of service)\n"; !strings.Contains(out.String(), want) {
		t.Errorf("usage without %q:\n%s", want, out.String())
	}
	sum.Classes[0].Lanes[0].Enabled, sum.Classes[0].DayUsed = true, 1
	out.Reset()
	printUsage(&out, sum, config.Config{})
	if strings.Contains(out.String(), "out of service") {
		t.Errorf("an enabled lane's use is said apart:\n%s", out.String())
	}
}
