package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestLedger runs the Ledger conformance checks on every implementation.
func TestLedger(t *testing.T) {
	for name, open := range map[string]opener{"memory": openMemory, "bolt": openBolt} {
		t.Run(name, func(t *testing.T) {
			t.Run("ReserveSettle", func(t *testing.T) { testReserveSettle(t, open(t, store.Options{}).(store.Ledger)) })
			t.Run("Invalid", func(t *testing.T) { testLedgerInvalid(t, open(t, store.Options{}).(store.Ledger)) })
		})
	}
}

var ledgerT0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func testReserveSettle(t *testing.T, l store.Ledger) {
	ctx := context.Background()
	st := l.(store.Store)
	a := store.LaneID{Project: "p1", Class: "text"}
	b := store.LaneID{Project: "p2", Class: "image"}
	d := day(0)
	rec := func(lane store.LaneID, units int, at time.Time, prev int64) int {
		t.Helper()
		n, err := l.Reserve(ctx, store.Record{Lane: lane, Day: d, Units: units, Covers: max(units, 1), At: at, Until: at.Add(2 * time.Second), PrevTokens: prev})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := rec(a, 5, ledgerT0, 0); n != 5 {
		t.Fatalf("count %d, want 5", n)
	}
	if n := rec(a, 0, ledgerT0.Add(3*time.Second), 40); n != 5 {
		t.Fatalf("renewal: count %d, want 5", n)
	}
	rec(b, 1, ledgerT0.Add(4*time.Second), 0)
	got, err := l.LedgerRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Windows) != 0 || len(got.Records) != 3 {
		t.Fatalf("records %+v, want 3 and no window", got)
	}
	if r := got.Records[1]; r.Lane != a || r.Units != 0 || r.PrevTokens != 40 || !r.At.Equal(ledgerT0.Add(3*time.Second)) || !r.Until.Equal(ledgerT0.Add(5*time.Second)) || r.Day != d {
		t.Fatalf("second record %+v", r)
	}
	// A record much later forgets those whose Until is RecordKeep before it.
	rec(b, 1, ledgerT0.Add(5*time.Second+store.RecordKeep), 0)
	if got, _ = l.LedgerRecords(ctx); len(got.Records) != 3 || got.Records[0].Units != 0 {
		t.Fatalf("after forgetting: %+v", got.Records)
	}

	s := store.Settlement{
		GiveBack: []store.DailyCount{{Day: d, Lane: a, Count: 3}, {Day: d, Lane: b, Count: 9}, {Day: day(-30), Lane: a, Count: 1}},
		Windows:  []store.Window{{Lane: a, Sent: []store.Sent{{At: ledgerT0, Tokens: 7}, {At: ledgerT0.Add(time.Second), Tokens: 0}}}, {Lane: b}},
	}
	if err := l.Settle(ctx, s); err != nil {
		t.Fatal(err)
	}
	counts := mustDaily(t, st, d)
	if len(counts) != 2 || counts[0].Count != 2 || counts[1].Count != 0 {
		t.Fatalf("after give-back: %+v, want p1 2 and p2 0", counts)
	}
	got, err = l.LedgerRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Records) != 0 || len(got.Windows) != 1 || got.Windows[0].Lane != a || len(got.Windows[0].Sent) != 2 ||
		!got.Windows[0].Sent[1].At.Equal(ledgerT0.Add(time.Second)) || got.Windows[0].Sent[0].Tokens != 7 {
		t.Fatalf("after settle: %+v", got)
	}
	if err := l.Settle(ctx, store.Settlement{}); err != nil {
		t.Fatal(err)
	}
	if got, _ = l.LedgerRecords(ctx); len(got.Windows) != 0 {
		t.Fatalf("empty settlement kept windows: %+v", got)
	}
}

func testLedgerInvalid(t *testing.T, l store.Ledger) {
	ctx := context.Background()
	lane := store.LaneID{Project: "p", Class: "c"}
	ok := store.Record{Lane: lane, Day: day(0), Units: 1, Covers: 1, At: ledgerT0, Until: ledgerT0}
	for name, r := range map[string]store.Record{
		"units":  {Lane: lane, Day: day(0), Units: -1, Covers: 1, At: ledgerT0, Until: ledgerT0},
		"covers": {Lane: lane, Day: day(0), Covers: 0, At: ledgerT0, Until: ledgerT0},
		"at":     {Lane: lane, Day: day(0), Covers: 1, Until: ledgerT0},
		"until":  {Lane: lane, Day: day(0), Covers: 1, At: ledgerT0, Until: ledgerT0.Add(-1)},
		"day":    {Lane: lane, Day: "2026-13-01", Covers: 1, At: ledgerT0, Until: ledgerT0},
		"lane":   {Day: day(0), Covers: 1, At: ledgerT0, Until: ledgerT0},
		"tokens": {Lane: lane, Day: day(0), Covers: 1, At: ledgerT0, Until: ledgerT0, PrevTokens: -1},
	} {
		if _, err := l.Reserve(ctx, r); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := l.Reserve(ctx, ok); err != nil {
		t.Fatal(err)
	}
	bad := store.Settlement{GiveBack: []store.DailyCount{{Day: day(0), Lane: lane, Count: -1}}}
	if err := l.Settle(ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("negative give-back: %v, want ErrInvalid", err)
	}
	bad = store.Settlement{Windows: []store.Window{{Lane: lane, Sent: []store.Sent{{At: ledgerT0, Tokens: -1}}}}}
	if err := l.Settle(ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("negative tokens: %v, want ErrInvalid", err)
	}
	l.(store.Store).Close()
	if _, err := l.Reserve(ctx, ok); !errors.Is(err, store.ErrClosed) {
		t.Errorf("closed: %v, want ErrClosed", err)
	}
}

// TestBoltLedgerReopen checks that records and windows survive closing and
// reopening the file.
func TestBoltLedgerReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "slideshowd.db")
	b, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lane := store.LaneID{Project: "p", Class: "image"}
	if _, err := b.Reserve(ctx, store.Record{Lane: lane, Day: day(0), Units: 2, Covers: 2, At: ledgerT0, Until: ledgerT0.Add(time.Second), PrevTokens: 12}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if b, err = store.Open(path, store.Options{}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := b.LedgerRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Record{Lane: lane, Day: day(0), Units: 2, Covers: 2, At: ledgerT0, Until: ledgerT0.Add(time.Second), PrevTokens: 12}
	if len(got.Records) != 1 || got.Records[0] != want {
		t.Fatalf("records %+v, want %+v", got.Records, want)
	}
}
