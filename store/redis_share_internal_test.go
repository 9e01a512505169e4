package store

import (
	"testing"
	"time"
)

// TestWindowCapPromised: in an outage, the share's room is the slots of
// the view that left the window since it began, less the ones promised to
// a scheduled grant's future slots (the view counting more than RPM): a
// window of 3 slots sent and a grant of 4 (3 of them promised as the 3
// leave) gives no room when the 3 have left (the old code gave 3), and
// the grant's 4 once it has left too; without promises, each slot that
// leaves is room.
func TestWindowCapPromised(t *testing.T) {
	s := &Redis{window: time.Minute}
	s.f.gran = 1000
	lane := LaneID{Project: "p1", Class: "text"}
	c := RedisClass{Name: "text", RPM: 4}
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := since.UnixMilli()
	old := []leaveAt{{at: f + 5000, n: 1}, {at: f + 6000, n: 1}, {at: f + 7000, n: 1}}
	out := func(leave []leaveAt) *outage {
		return &outage{since: since, n: 1,
			view: &clusterView{lanes: map[LaneID]laneView{lane: {leave: leave}}}}
	}
	promised := out(append(old, leaveAt{at: f + 80000, n: 4}))
	for _, tt := range []struct {
		o    *outage
		now  int64
		want int
	}{
		{promised, f + 7000, 0},
		{promised, f + 80000, 4},
		{out(old), f + 6000, 2},
		{out(old), f + 7000, 3},
	} {
		if got, _ := s.windowCap(tt.o, lane, c, tt.now, 30*time.Second); got != tt.want {
			t.Errorf("windowCap at F + %d ms (%d slots in the view) = %d, want %d", tt.now-f, len(tt.o.view.lanes[lane].leave), got, tt.want)
		}
	}
}
