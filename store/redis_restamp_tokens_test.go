package store_test

import (
	"context"
	"testing"
	"time"
)

// TestRedisRestampedTokens (the reviewer's F2 of session 8): a lease of a's
// grant G1 (600 tokens) written 4.85 s after its stamp, after G1 was settled
// by a's next grant (which moved G1's token budget back to G1's latest
// stamp). Restamped used to add a slot at the write but leave the 600 tokens
// at the stamp: a minute after the stamp they left the shared token window
// while the API still counted them (it got the request at the write), and b
// was granted 900 more: 1,500 in a minute at TPM 1,000. Now the late
// request's tokens count from the write too.
func TestRedisRestampedTokens(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	a, b := e.open(t, "a", tpmClass), e.open(t, "b", tpmClass)
	t0 := e.clock.now()
	if _, err := a.Reserve(ctx, e.tokens(1, 600)); err != nil {
		t.Fatal(err)
	}
	stamp := t0.Add(100 * time.Millisecond)
	a.Stamped(lane, stamp)
	e.clock.add(time.Second)
	// a's next grant settles G1 (its budget moves back to the stamp).
	if _, err := a.Reserve(ctx, e.tokens(1, 0)); err != nil {
		t.Fatal(err)
	}
	a.Stamped(lane, t0.Add(1100*time.Millisecond))
	t.Logf("token window after the settlement: %v", tokenWindow(t, e))
	// G1's request is written at t0 + 4.95 s: it reaches the API by t0 + 5 s.
	e.clock.add(4 * time.Second)
	to := t0.Add(5 * time.Second)
	a.Restamped(lane, stamp, to, 600)
	t.Logf("token window after the late write: %v", tokenWindow(t, e))
	// A minute after the stamp, 4.9 s before the late request leaves the API's window.
	e.clock.add(stamp.Add(time.Minute + 10*time.Millisecond).Sub(e.clock.now()))
	if err := reserveErr(b, e.tokens(1, 900)); err == nil {
		t.Fatalf("b granted 900 tokens at %v while a's late request of 600 (arrived %v) is in the API's window: TPM 1000",
			e.clock.now().Sub(t0), to.Sub(t0))
	}
}
