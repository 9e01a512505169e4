package store

import "testing"

// TestSlotOwner: a window slot is attributed to the known process its
// member starts with, whatever the member's suffix (grants write
// process:seq:n; other scripts may write more parts), the longest name
// winning when names prefix one another; an unknown member falls back to
// its prefix before the last two parts (three for a share grant, its
// reconciliation, or a dead life's charge).
func TestSlotOwner(t *testing.T) {
	alive := []string{"web-1-aa", "web-1-aa:x"}
	byDay := map[string]int{"gone-2-bb": 3}
	for _, tt := range []struct{ member, want string }{
		{"web-1-aa:1z:3", "web-1-aa"},
		{"web-1-aa:1z:s:3", "web-1-aa"},
		{"web-1-aa:x:9:1", "web-1-aa:x"},
		{"gone-2-bb:7:s:1", "gone-2-bb"},
		{"other-3-cc:7:1", "other-3-cc"},
		{"web-1-aab:1:1", "web-1-aab"},
		// A dead life's charge (redis_dead.go): its life, shown by its name
		// alone (displayName), not a process of its own (newcomer10 N10-1).
		{"gone-9-ee~0a1b2c3d:1796180732657:d:1*7", "gone-9-ee~0a1b2c3d"},
	} {
		if got := slotOwner(tt.member, alive, byDay); got != tt.want {
			t.Errorf("slotOwner(%q) = %q, want %q", tt.member, got, tt.want)
		}
	}
	if got := displayName(slotOwner("gone-9-ee~0a1b2c3d:1796180732657:d:2*3", alive, byDay)); got != "gone-9-ee" {
		t.Errorf("a dead life's charge shows as %q, want gone-9-ee", got)
	}
}
