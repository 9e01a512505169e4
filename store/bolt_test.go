package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/slideshowd/slideshowd/store"
)

func dbPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "slideshowd.db")
}

func mustOpen(t *testing.T, path string, opts store.Options) *store.Bolt {
	t.Helper()
	b, err := store.Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func mustClose(t *testing.T, s store.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestBoltPersistence writes every kind of record, closes, re-opens and reads
// them back.
func TestBoltPersistence(t *testing.T) {
	path := dbPath(t)
	ctx := t.Context()
	cool := time.Date(2026, 3, 8, 14, 2, 3, 456789012, time.FixedZone("PST", -8*3600))
	exhausted := time.Date(2026, 3, 9, 8, 0, 0, 0, time.UTC)
	at := time.Now()

	b := mustOpen(t, path, store.Options{})
	if b.Path() != path {
		t.Errorf("Path() = %q, want %q", b.Path(), path)
	}
	mustAdd(t, b, day(0), textA, 40)
	mustAdd(t, b, day(1), textA, 20)
	mustAdd(t, b, day(1), imageA, 2)
	for _, err := range []error{
		b.SetLaneState(ctx, store.LaneState{Lane: textA, CoolUntil: cool}),
		b.SetLaneState(ctx, store.LaneState{Lane: imageA, ExhaustedUntil: exhausted}),
		b.DisableKey(ctx, store.DisabledKey{KeyID: "key-7", Reason: "API_KEY_INVALID", At: at}),
		b.PutJob(ctx, store.JobRecord{ID: "job-1", Data: []byte(`{"n":1}`)}),
		b.PutJob(ctx, store.JobRecord{ID: "job-2"}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, b)

	for round := range 2 { // twice: opening must not lose anything
		b = mustOpen(t, path, store.Options{})
		wantHist := []store.DailyCount{
			{Day: day(0), Lane: textA, Count: 40},
			{Day: day(1), Lane: imageA, Count: 2},
			{Day: day(1), Lane: textA, Count: 20 + round},
		}
		if got := mustHistory(t, b); !slices.Equal(got, wantHist) {
			t.Errorf("History after re-open = %v, want %v", got, wantHist)
		}
		wantStates := []store.LaneState{{Lane: imageA, ExhaustedUntil: exhausted}, {Lane: textA, CoolUntil: cool}}
		if got := mustLaneStates(t, b); !equalLaneStates(got, wantStates) {
			t.Errorf("LaneStates after re-open = %v, want %v", got, wantStates)
		}
		wantKeys := []store.DisabledKey{{KeyID: "key-7", Reason: "API_KEY_INVALID", At: at}}
		if got := mustDisabled(t, b); !equalDisabled(got, wantKeys) {
			t.Errorf("DisabledKeys after re-open = %v, want %v", got, wantKeys)
		}
		wantJobs := []store.JobRecord{{ID: "job-1", Data: []byte(`{"n":1}`)}, {ID: "job-2"}}
		if got := allJobs(t, b); !equalJobs(got, wantJobs) {
			t.Errorf("Jobs after re-open = %v, want %v", got, wantJobs)
		}
		if got := mustAdd(t, b, day(1), textA, 1); got != 21+round {
			t.Errorf("AddDaily after re-open = %d, want %d", got, 21+round)
		}
		mustClose(t, b)
	}
}

func TestBoltFileMode(t *testing.T) {
	path := dbPath(t)
	b := mustOpen(t, path, store.Options{})
	mustAdd(t, b, day(0), textA, 1)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want -rw-------", fi.Mode())
	}
}

// writeRaw changes a closed store file with bbolt directly.
func writeRaw(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestBoltSchema(t *testing.T) {
	tests := []struct {
		name     string
		fresh    bool // change an empty bbolt file instead of one Open made
		change   func(tx *bolt.Tx) error
		wantText []string
	}{
		{
			name:     "newer version",
			change:   func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("2")) },
			wantText: []string{"schema version 2", "reads version 1"},
		},
		{
			name:     "older version",
			change:   func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("0")) },
			wantText: []string{"schema version 0", "reads version 1"},
		},
		{
			name:     "garbage version",
			change:   func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("v1\x00")) },
			wantText: []string{`schema version "v1\x00"`, "reads version 1"},
		},
		{
			name:     "version missing",
			change:   func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Delete([]byte("schema")) },
			wantText: []string{"schema version none", "reads version 1"},
		},
		{
			name:  "some other bbolt file",
			fresh: true,
			change: func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("widgets"))
				return err
			},
			wantText: []string{`bucket "widgets" but no schema version`, "reads version 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := dbPath(t)
			if !tt.fresh {
				b := mustOpen(t, path, store.Options{})
				mustAdd(t, b, day(0), textA, 1)
				mustClose(t, b)
			}
			writeRaw(t, path, tt.change)
			b, err := store.Open(path, store.Options{})
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded, want ErrSchema")
			}
			if !errors.Is(err, store.ErrSchema) {
				t.Fatalf("Open = %v, want ErrSchema", err)
			}
			for _, want := range append(tt.wantText, path) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			// The refused Open released the file.
			writeRaw(t, path, func(tx *bolt.Tx) error { return nil })
		})
	}
}

func TestBoltSchemaRecorded(t *testing.T) {
	path := dbPath(t)
	mustClose(t, mustOpen(t, path, store.Options{}))
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if meta == nil {
			t.Fatal("no meta bucket")
		}
		if v := string(meta.Get([]byte("schema"))); v != "1" || store.SchemaVersion != 1 {
			t.Errorf("schema version %q, SchemaVersion %d, want 1", v, store.SchemaVersion)
		}
		return nil
	})
}

// TestBoltLocked opens the same file twice in one process: bbolt's flock is
// per open file description, so the second Open waits like one from another
// process would, and must give up after its Timeout.
func TestBoltLocked(t *testing.T) {
	path := dbPath(t)
	first := mustOpen(t, path, store.Options{})
	const timeout = 100 * time.Millisecond

	start := time.Now()
	second, err := store.Open(path, store.Options{Timeout: timeout})
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("second Open of a held file succeeded")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	for _, want := range []string{path, "held by another process", "running slideshowd", timeout.String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// bbolt retries every 50ms and stops one retry before the timeout.
	if elapsed < timeout/2 || elapsed > 10*timeout {
		t.Errorf("second Open gave up after %v, want about %v", elapsed, timeout)
	}

	mustClose(t, first)
	again := mustOpen(t, path, store.Options{Timeout: timeout})
	mustAdd(t, again, day(0), textA, 1)
}

func TestBoltOpenInvalid(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		opts    store.Options
		wantErr error
		want    string
	}{
		{"negative timeout", filepath.Join(dir, "a.db"), store.Options{Timeout: -time.Second}, store.ErrInvalid, "Options.Timeout: -1s"},
		{"negative history", filepath.Join(dir, "b.db"), store.Options{History: -1}, store.ErrInvalid, "Options.History: -1"},
		{"huge history", filepath.Join(dir, "c.db"), store.Options{History: 1 << 20}, store.ErrInvalid, "Options.History: 1048576"},
		{"missing directory", filepath.Join(dir, "no", "such", "dir.db"), store.Options{}, os.ErrNotExist, "no/such/dir.db"},
		{"not a bbolt file", garbage, store.Options{}, nil, garbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := store.Open(tt.path, tt.opts)
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Open = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
	for _, name := range []string{"a.db", "b.db", "c.db"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("invalid options created %s (%v)", name, err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		opts  store.Options
		field string
	}{
		{store.Options{}, ""},
		{store.Options{Timeout: time.Millisecond, History: 2, NoSync: true}, ""},
		{store.Options{History: 1}, "Options.History: 1"}, // the day running and the next are both needed
		{store.Options{History: 36600}, ""},
		{store.Options{Timeout: -1}, "Options.Timeout: -1ns"},
		{store.Options{History: -7}, "Options.History: -7"},
		{store.Options{History: 36601}, "Options.History: 36601"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v", tt.opts, err)
				}
				return
			}
			if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate(%+v) = %v, want ErrInvalid naming %s", tt.opts, err, tt.field)
			}
		})
	}
}

func TestNewMemoryPanics(t *testing.T) {
	tests := []struct {
		name string
		opts []store.Options
	}{
		{"invalid history", []store.Options{{History: -1}}},
		{"two options", []store.Options{{}, {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewMemory did not panic")
				}
			}()
			store.NewMemory(tt.opts...)
		})
	}
}

// TestBoltHistoryAtOpen checks that Open compacts to the History it is given.
func TestBoltHistoryAtOpen(t *testing.T) {
	path := dbPath(t)
	b := mustOpen(t, path, store.Options{History: 10})
	for i := range 10 {
		mustAdd(t, b, day(i), textA, i+1)
	}
	mustClose(t, b)

	steps := []struct {
		history  int
		wantDays []string
	}{
		{10, dayRange(0, 9)},
		{0, dayRange(3, 9)}, // default 7
		{3, dayRange(7, 9)},
		{10, dayRange(7, 9)}, // deleted days do not come back
	}
	for _, st := range steps {
		b := mustOpen(t, path, store.Options{History: st.history})
		hist := mustHistory(t, b)
		if got := days(hist); !slices.Equal(got, st.wantDays) {
			t.Errorf("History %d: days %v, want %v", st.history, got, st.wantDays)
		}
		for _, c := range hist {
			var i int
			for i = range 10 {
				if day(i) == c.Day {
					break
				}
			}
			if c.Count != i+1 {
				t.Errorf("History %d: %s count %d, want %d", st.history, c.Day, c.Count, i+1)
			}
		}
		mustClose(t, b)
	}
}

// TestBoltCloseWaits checks that Close during concurrent calls neither races
// nor loses a call that returned success.
func TestBoltCloseWaits(t *testing.T) {
	b := mustOpen(t, dbPath(t), store.Options{NoSync: true})
	path := b.Path()
	done := make(chan int)
	busy := make(chan struct{}) // closed after 20 successful adds
	go func() {
		ok := 0
		for {
			if _, err := b.AddDaily(t.Context(), day(0), textA, 1); err != nil {
				if !errors.Is(err, store.ErrClosed) {
					t.Errorf("AddDaily: %v", err)
				}
				done <- ok
				return
			}
			if ok++; ok == 20 {
				close(busy)
			}
		}
	}()
	<-busy
	mustClose(t, b)
	ok := <-done
	b = mustOpen(t, path, store.Options{})
	if got := mustDaily(t, b, day(0)); len(got) != 1 || got[0].Count != ok {
		t.Errorf("after Close during writes: %v, want %d successful adds", got, ok)
	}
}
