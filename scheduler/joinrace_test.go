package scheduler

import (
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// joinReleasedStore stands for store.Redis just after its heartbeat released
// the join hold: no longer joining, reachable (what refused and
// releaseJoined read).
type joinReleasedStore struct{ *store.Memory }

func (joinReleasedStore) Joining() bool     { return false }
func (joinReleasedStore) Unreachable() bool { return false }

// TestJoinReleasedBeforeRefused: a grant refused as the process joined
// (GrantError.Joining, Until the hold's end, up to 91 s after Redis restarted
// empty) whose hold the heartbeat released before the refusal was handled:
// the lane is not left held until that end (review9 R9-2: it was held "Redis
// back, recovering" for 1m31s, which releaseJoined never ends).
func TestJoinReleasedBeforeRefused(t *testing.T) {
	s, err := New(Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 100}, WindowMargin: 250 * time.Millisecond}},
		Keys: keys(1), Store: joinReleasedStore{store.NewMemory()}})
	if err != nil {
		t.Fatal(err)
	}
	r := s.classes["text"]
	now := time.Now()
	lease, ok, _ := r.class.AcquireFor(now, 0, 1)
	if !ok {
		t.Fatal("no lease")
	}
	end := now.Add(91 * time.Second)
	r.refused(&store.GrantError{Lane: store.LaneID{Project: lease.Project, Class: "text"}, Reason: "share", Until: end, Joining: true}, lease, now)
	s.releaseJoined(now.Add(time.Second)) // the next heartbeat: not joining
	for _, lu := range r.class.Usage(now.Add(time.Second)).Lanes {
		if lu.HeldUntil.After(now.Add(2 * time.Second)) {
			t.Errorf("lane %s held %q for %v after the join was released", lu.Project, lu.HeldReason, lu.HeldUntil.Sub(now))
		}
	}
}
