package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// filledStore writes a store with jobs, day counts, lane states and a
// disabled key, big enough for several levels of pages, and returns its
// bytes.
func filledStore(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "full.db")
	b, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 400 {
		data := []byte(fmt.Sprintf(`{"id":"job-%04d","source":%q}`, i, strings.Repeat("s", 200+i%700)))
		if err := b.PutJob(ctx, store.JobRecord{ID: fmt.Sprintf("job-%04d", i), Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	for d := range 5 {
		day := time.Date(2026, 3, 1+d, 0, 0, 0, 0, time.UTC).Format(store.DayFormat)
		for p := range 20 {
			if _, err := b.AddDaily(ctx, day, store.LaneID{Project: fmt.Sprint("p", p), Class: "text"}, 1+p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.SetLaneState(ctx, store.LaneState{Lane: store.LaneID{Project: "p1", Class: "image"}, CoolUntil: time.Unix(1e9, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := b.DisableKey(ctx, store.DisabledKey{KeyID: "k1", Reason: "invalid", At: time.Unix(1e9, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDamagedFiles opens damaged copies of a store: truncations, random bit
// flips (seeds printed), zeroed pages, an empty file, garbage. Open must
// return an error wrapping ErrDamaged naming the file, or (for damage bbolt
// can survive, like a zeroed first meta page or a flipped bit inside a
// value) succeed with every record readable; it must never panic or fault.
func TestDamagedFiles(t *testing.T) {
	good := filledStore(t)
	const page = 4096
	pages := len(good) / page
	if pages < 8 {
		t.Fatalf("store of %d pages: too small to damage meaningfully", pages)
	}
	type damage struct {
		name string
		file []byte
		must bool // must be found damaged
	}
	var cases []damage
	truncate := func(n int) []byte { return append([]byte(nil), good[:n]...) }
	cases = append(cases,
		damage{"empty", nil, true},
		damage{"one byte", truncate(1), true},
		damage{"half a page", truncate(page / 2), true},
		damage{"two pages", truncate(2 * page), true},
		damage{"half", truncate(len(good) / 2), true},
		damage{"all but the last page", truncate(len(good) - page), false}, // may be free space
		damage{"three quarters", truncate(len(good) / 4 * 3), false},
		damage{"garbage", bytesOf(len(good), 7), true},
	)
	zero := func(pgs ...int) []byte {
		b := append([]byte(nil), good...)
		for _, p := range pgs {
			clear(b[p*page : (p+1)*page])
		}
		return b
	}
	cases = append(cases,
		damage{"zeroed both meta pages", zero(0, 1), true},
		damage{"zeroed meta page 0", zero(0), false},
	)
	for p := 2; p < pages; p += max(1, pages/12) {
		cases = append(cases, damage{fmt.Sprintf("zeroed page %d", p), zero(p), false})
	}
	for seed := uint64(1); seed <= 24; seed++ {
		r := rand.New(rand.NewPCG(seed, seed))
		b := append([]byte(nil), good...)
		n := 200
		if seed%3 == 0 {
			n = 1 + int(seed%5)
		}
		for range n {
			i := r.IntN(len(b))
			b[i] ^= 1 << r.IntN(8)
		}
		cases = append(cases, damage{fmt.Sprintf("%d bits flipped, seed %d", n, seed), b, false})
	}

	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".db")
			if err := os.WriteFile(path, c.file, 0o600); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			verr := store.Verify(path, store.Options{})
			b, err := store.Open(path, store.Options{})
			if (verr == nil) != (err == nil) {
				t.Errorf("Verify says %v, Open says %v", verr, err)
			} else if err != nil && err.Error() != verr.Error() {
				// One message on every path (serve, store check): not
				// bbolt's panic text when the layout names the damage.
				t.Errorf("Open says %v\nVerify says %v", err, verr)
			}
			if err != nil {
				var de *store.DamagedError
				if !errors.Is(err, store.ErrDamaged) || !errors.As(err, &de) && !errors.Is(err, store.ErrSchema) {
					t.Fatalf("Open: %v: want ErrDamaged", err)
				}
				if !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q: want one line naming the file", err)
				}
				after, _ := os.ReadFile(path)
				if string(after) != string(before) {
					t.Errorf("Open changed a damaged file")
				}
				t.Log(err)
				return
			}
			defer b.Close()
			if c.must {
				t.Fatalf("Open accepted %s", c.name)
			}
			// Survived: everything reads.
			ctx := context.Background()
			if _, err := b.History(ctx); err != nil {
				t.Logf("History: %v", err)
			}
			_ = b.Jobs(ctx, func(store.JobRecord) bool { return true })
		})
	}
}

func bytesOf(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// A backup taken while the store is open is a consistent, checked copy
// stamped with its time.
func TestBackupFile(t *testing.T) {
	dir := t.TempDir()
	b := mustOpen(t, filepath.Join(dir, "slideshowd.db"), store.Options{})
	ctx := context.Background()
	lane := store.LaneID{Project: "p", Class: "text"}
	if _, err := b.AddDaily(ctx, "2026-03-01", lane, 42); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "copy.db")
	before := time.Now()
	if _, err := b.BackupFile(ctx, dest); err != nil {
		t.Fatal(err)
	}
	if err := store.Verify(dest, store.Options{}); err != nil {
		t.Fatal(err)
	}
	at, ok, err := store.BackupTime(dest)
	if err != nil || !ok || at.Before(before.Add(-time.Second)) || at.After(time.Now()) {
		t.Fatalf("BackupTime = %v, %v, %v", at, ok, err)
	}
	c := mustOpen(t, dest, store.Options{})
	got, err := c.Daily(ctx, "2026-03-01")
	if err != nil || len(got) != 1 || got[0].Count != 42 {
		t.Fatalf("Daily of the copy = %v, %v", got, err)
	}
	if _, err := os.Stat(dest + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
}
