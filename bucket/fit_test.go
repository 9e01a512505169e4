package bucket

import (
	"testing"
	"time"
)

// TestRefundReturnsTPMPacing: a lease refunded (a shared window refused its
// grant) gives its tokens back to the lane's TPM pacing, not only to its
// window: a lane refused every 5 s for a minute sends its requests as soon
// as the window has room, not one per refill of a quarter of TPM (about
// 15 s, reported as "RPM window, next slot in 14s": newcomer's F-g).
func TestRefundReturnsTPMPacing(t *testing.T) {
	p := mustPool(t, Config{Classes: []ClassConfig{{Name: "text", Limits: Limits{RPM: 30, RPD: 1000, TPM: 4000}}}, Keys: keysN(1)})
	c := p.Class("text")
	now := t0
	// Refused 12 times over a minute: each lease refunded at once.
	for range 12 {
		l, ok, next := c.Acquire(now, 992)
		if !ok {
			t.Fatalf("at %v: no lease (next %v) with nothing sent", now, next)
		}
		c.Refund(l, now)
		now = now.Add(5 * time.Second)
	}
	// Nothing was sent: four requests of 992 fit in TPM 4000 now (the
	// pacing of RPM 30 allows a burst).
	for i := range 4 {
		if _, ok, next := c.Acquire(now, 992); !ok {
			t.Fatalf("request %d after 12 refunds: no lease, next in %v (TPM pacing drained by refunded leases)", i+1, next.Sub(now))
		}
	}
}

// TestBudgeted: a record granted a smaller budget than its Budget (a
// shared token window with room for part of it) spends from what was
// granted: the lane's next lease that does not fit records again (a
// top-up), and its PrevUnused is what is left of the granted budget.
func TestBudgeted(t *testing.T) {
	p := mustPool(t, Config{Classes: []ClassConfig{{Name: "text", Limits: Limits{RPM: 600, RPD: 1000, TPM: 4000}, SharedTPM: true}}, Keys: keysN(1)})
	c := p.Class("text")
	now := t0
	// A slow lane (a request every 3 s) records for several requests.
	var l Lease
	for i := 0; ; i++ {
		var ok bool
		l, ok, _ = c.AcquireFor(now, 100, 4)
		if !ok {
			t.Fatal("no lease")
		}
		if l.Record && l.Covers >= 3 {
			break
		}
		if i > 50 {
			t.Fatalf("no record of 3 covers or more: %+v", l)
		}
		now = now.Add(3 * time.Second)
	}
	if l.Budget < 300 {
		t.Fatalf("budget %d for %d covers of 100", l.Budget, l.Covers)
	}
	c.Budgeted(l, 200) // room for 2 requests of 100
	c.Scheduled(l, 2, nil)
	now = now.Add(time.Second)
	m, ok, _ := c.AcquireFor(now, 100, 4)
	if !ok || m.Record {
		t.Fatalf("second request: ok %v, record %v; want it under the record's granted budget", ok, m.Record)
	}
	now = now.Add(time.Second)
	m, ok, _ = c.AcquireFor(now, 100, 4)
	if !ok || !m.Record || m.PrevUnused != 0 {
		t.Fatalf("third request: ok %v, record %v, prev unused %d; want a new record, nothing left of 200", ok, m.Record, m.PrevUnused)
	}
	// A budget at or above the lease's changes nothing.
	c.Budgeted(m, m.Budget)
	if got := c.lanes[0].budget; got != m.Budget-100 {
		t.Errorf("budget left %d after Budgeted with the whole budget, want %d", got, m.Budget-100)
	}
}
