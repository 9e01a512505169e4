package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckDay(t *testing.T) {
	tests := []struct {
		day string
		ok  bool
	}{
		{"2026-03-08", true},
		{"2024-02-29", true}, // leap day
		{"0001-01-01", true},
		{"9999-12-31", true},
		{"2025-02-29", false},
		{"2026-04-31", false},
		{"2026-00-10", false},
		{"2026-01-00", false},
		{"0000-06-15", false},
		{"2026-3-8", false},
		{"2026/03/08", false},
		{"26-03-08", false},
		{"+2026-03-08", false},
		{"2026-03-08\n", false},
		{"２026-03-08", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.day, func(t *testing.T) {
			err := checkDay(tt.day)
			if (err == nil) != tt.ok {
				t.Fatalf("checkDay(%q) = %v, want ok %v", tt.day, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("checkDay(%q) = %v, want ErrInvalid", tt.day, err)
			}
		})
	}
}

func TestOldestKept(t *testing.T) {
	tests := []struct {
		newest  string
		history int
		want    string
	}{
		{"2026-03-08", 7, "2026-03-02"},
		{"2026-03-08", 1, "2026-03-08"},
		{"2026-03-01", 2, "2026-02-28"},
		{"2024-03-01", 2, "2024-02-29"},
		{"2026-01-03", 7, "2025-12-28"},
		{"0001-01-03", 7, "0001-01-01"},
		{"9999-12-31", maxHistory, "9899-10-17"},
	}
	for _, tt := range tests {
		if got := oldestKept(tt.newest, tt.history); got != tt.want {
			t.Errorf("oldestKept(%s, %d) = %s, want %s", tt.newest, tt.history, got, tt.want)
		}
	}
}

// FuzzCheckDay checks checkDay against time.Parse and that oldestKept of a
// valid day is a valid day no later than it, in string and in time order.
func FuzzCheckDay(f *testing.F) {
	for _, s := range []string{"2026-03-08", "2024-02-29", "2025-02-29", "0001-01-01", "9999-12-31", "2026-3-8", "", "2026-03-08T00:00:00Z"} {
		f.Add(s, 7)
	}
	f.Fuzz(func(t *testing.T, s string, history int) {
		err := checkDay(s)
		parsed, perr := time.Parse(DayFormat, s)
		canonical := perr == nil && parsed.Format(DayFormat) == s && parsed.Year() >= 1
		if (err == nil) != canonical {
			t.Fatalf("checkDay(%q) = %v, but time.Parse gives %v, %v", s, err, parsed, perr)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "day: "+quote(s)) {
				t.Fatalf("checkDay(%q) = %v: want ErrInvalid naming day and value", s, err)
			}
			return
		}
		if len(s) != len(DayFormat) {
			t.Fatalf("valid day %q has length %d", s, len(s))
		}
		h := 1 + (history%maxHistory+maxHistory)%maxHistory
		old := oldestKept(s, h)
		if err := checkDay(old); err != nil {
			t.Fatalf("oldestKept(%s, %d) = %s: %v", s, h, old, err)
		}
		oldT, _ := time.Parse(DayFormat, old)
		if old > s || oldT.After(parsed) {
			t.Fatalf("oldestKept(%s, %d) = %s is later", s, h, old)
		}
		if days := int(parsed.Sub(oldT).Hours()/24) + 1; days > h || (days < h && old != "0001-01-01") {
			t.Fatalf("oldestKept(%s, %d) = %s keeps %d days", s, h, old, days)
		}
	})
}

// FuzzLaneKey checks that lane keys round-trip and that decoding any bytes
// (lane keys and values) returns an error rather than panicking.
func FuzzLaneKey(f *testing.F) {
	f.Add("proj", "text", []byte{4, 'p', 'r', 'o', 'j', 't'})
	f.Add("", "", []byte{0xff, 0xff})
	f.Add("a\x00b", "image", []byte{1, 1})
	f.Fuzz(func(t *testing.T, project, class string, raw []byte) {
		lane := LaneID{Project: project, Class: class}
		got, err := decodeLaneKey(laneKey(lane))
		if err != nil || got != lane {
			t.Fatalf("laneKey of %+v decodes to %+v, %v", lane, got, err)
		}
		if l, err := decodeLaneKey(raw); err == nil {
			if len(l.Project)+len(l.Class) > len(raw) {
				t.Fatalf("decodeLaneKey(%x) = %+v: longer than its input", raw, l)
			}
		}
		_, _ = decodeLaneState(laneKey(lane), raw)
		_, _ = decodeDisabled([]byte(project), raw)
		_, _ = decodeCount(raw)

		at := time.Unix(int64(len(raw))*1_000_003, int64(len(class))).In(time.FixedZone("z", 3600))
		v := appendTime([]byte{valueVersion}, at)
		v = append(v, class...)
		d, err := decodeDisabled([]byte(project), v)
		if err != nil || d.KeyID != project || d.Reason != class || !d.At.Equal(at) || d.At.Location() != time.UTC {
			t.Fatalf("disabled key round trip: %+v, %v", d, err)
		}
	})
}
