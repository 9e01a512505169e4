package scheduler

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// A key disabled by an answer is stored with the fingerprint of its secret;
// at the next start it comes back only when its fingerprint changed.
func TestKeyFingerprintBringsKeyBack(t *testing.T) {
	cases := []struct {
		name   string
		stored string // fingerprint stored with the disabled key
		now    string // fingerprint in the configuration at the next start
		back   bool
	}{
		{"secret replaced", "fp-old", "fp-new", true},
		{"same secret", "fp-old", "fp-old", false},
		{"stored without fingerprint", "", "fp-new", false},
		{"secret not loaded", "fp-old", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := store.NewMemory()
				s := start(t, Config{Classes: textImage(60, 100, 10, 10, 2), Keys: keys(1), Store: st,
					Fingerprints: map[string]string{"key1": tc.stored}})
				err := s.Do(t.Context(), Job{Class: "text", Work: func(ctx context.Context, l Lease) error {
					return &KeyError{Reason: "leaked"}
				}})
				if !errors.Is(err, ErrNoLanes) {
					t.Fatalf("Do = %v, want ErrNoLanes once its only key is disabled", err)
				}
				ds, err := st.DisabledKeys(t.Context())
				if err != nil || len(ds) != 1 || ds[0].KeyID != "key1" || ds[0].Fingerprint != tc.stored {
					t.Fatalf("stored disabled keys = %+v, %v; want key1 with fingerprint %q", ds, err, tc.stored)
				}
				s2, err := New(Config{Classes: textImage(60, 100, 10, 10, 2), Keys: keys(1), Store: st,
					Fingerprints: map[string]string{"key1": tc.now}})
				if err != nil {
					t.Fatal(err)
				}
				k := s2.Keys()[0]
				if back := k.Disabled == ""; back != tc.back {
					t.Fatalf("after restart: key1 disabled = %q, want back %v", k.Disabled, tc.back)
				}
				ds, _ = st.DisabledKeys(t.Context())
				if stored := len(ds) == 1; stored == tc.back {
					t.Fatalf("after restart: stored disabled keys = %+v, want back %v", ds, tc.back)
				}
			})
		})
	}
}

func TestDisableEnableKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		rec := &recorder{}
		s := start(t, Config{Classes: textImage(60, 100, 10, 10, 2), Keys: keys(2), Store: st, Observer: rec})
		start := time.Now()
		if err := s.DisableKey(t.Context(), "key1", ""); err != nil {
			t.Fatal(err)
		}
		if err := s.DisableKey(t.Context(), "nope", ""); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("DisableKey(nope) = %v, want ErrUnknownKey", err)
		}
		if err := s.EnableKey(t.Context(), "nope"); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("EnableKey(nope) = %v, want ErrUnknownKey", err)
		}
		ks := s.Keys()
		if len(ks) != 2 || ks[0].Disabled != ReasonOperator || !ks[0].DisabledSince.Equal(start) ||
			ks[0].Classes[0].State != "disabled" || ks[1].Disabled != "" || ks[1].Classes[1].State != "ok" {
			t.Fatalf("Keys = %+v", ks)
		}
		if got := s.Summary().DisabledKeys; len(got) != 1 || got[0].ID != "key1" || !got[0].Since.Equal(start) {
			t.Fatalf("Summary.DisabledKeys = %+v", got)
		}
		if ev := rec.of(EventKeyDisabled); len(ev) != 1 || ev[0].KeyID != "key1" || ev[0].Reason != ReasonOperator {
			t.Fatalf("events = %+v", ev)
		}
		// Every job now goes to key2.
		for range 3 {
			if err := s.Do(t.Context(), Job{Class: "image", Work: func(ctx context.Context, l Lease) error {
				if l.KeyID != "key2" {
					t.Errorf("job ran on %s, a disabled key", l.KeyID)
				}
				return nil
			}}); err != nil {
				t.Fatal(err)
			}
		}
		// Restart: still disabled (an operator's disable has no fingerprint).
		s2, err := New(Config{Classes: textImage(60, 100, 10, 10, 2), Keys: keys(2), Store: st,
			Fingerprints: map[string]string{"key1": "x", "key2": "y"}})
		if err != nil {
			t.Fatal(err)
		}
		if k := s2.Keys()[0]; k.Disabled != ReasonOperator || !k.DisabledSince.Equal(start) {
			t.Fatalf("after restart: %+v", k)
		}
		if err := s.EnableKey(t.Context(), "key1"); err != nil {
			t.Fatal(err)
		}
		if err := s.EnableKey(t.Context(), "key1"); err != nil {
			t.Fatalf("enabling an enabled key: %v", err)
		}
		if k := s.Keys()[0]; k.Disabled != "" || !k.DisabledSince.IsZero() || k.Classes[0].State != "ok" {
			t.Fatalf("after enable: %+v", k)
		}
		if ds, _ := st.DisabledKeys(t.Context()); len(ds) != 0 {
			t.Fatalf("after enable: stored %+v", ds)
		}
	})
}

// Keys shows each lane's blocking state per class, with when it ends.
func TestKeysLaneStates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(60, 2, 10, 10, 2), Keys: keys(2)})
		for range 2 {
			if err := s.Do(t.Context(), Job{Class: "text", Work: func(ctx context.Context, l Lease) error {
				if l.KeyID == "key2" {
					return &RateLimitedError{Scope: ScopeMinute, RetryAfter: 20 * time.Second}
				}
				return nil
			}}); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		ks := s.Keys()
		cool := ks[1].Classes[0]
		if cool.State != "cooling" || !cool.Until.After(now) {
			t.Fatalf("key2 text = %+v, want cooling", cool)
		}
		if ks[1].Classes[1].State != "ok" {
			t.Fatalf("key2 image = %+v: a text 429 must not touch image", ks[1].Classes[1])
		}
		// key1 served both jobs (the second after key2's 429): its day of 2 is spent.
		if day := ks[0].Classes[0]; day.State != "day_used" || !day.Until.Equal(bucket.NextMidnight(now, bucket.Pacific)) {
			t.Fatalf("key1 text = %+v, want day_used until the next Pacific midnight", day)
		}
	})
}

// lineCounter counts the log lines that contain want; safe for concurrent
// writers (zerolog writes each line in one Write).
type lineCounter struct {
	want string
	mu   sync.Mutex
	n    int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += bytes.Count(p, []byte(c.want))
	return len(p), nil
}

func (c *lineCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// A leaked key answers every model alike: when the text and the image class
// both get that answer on the same key at once, the key is disabled once,
// so it is logged and emitted once (an operator reads one line per key
// disabled, and slideshowd_keys_disabled_total counts it once). Both calls
// are in flight before either answers, so the two classes' disables run
// concurrently (run with -race).
func TestKeyDisabledOnceByTwoClasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		rec := &recorder{}
		logs := &lineCounter{want: "key disabled on every class"}
		s := start(t, Config{Classes: textImage(60, 100, 10, 10, 2), Keys: keys(1), Store: st, Observer: rec,
			Logger: zerolog.New(logs)})
		inFlight, answer := make(chan struct{}), make(chan struct{})
		done := make(chan error, 2)
		for _, class := range []string{"text", "image"} {
			go func() {
				done <- s.Do(t.Context(), Job{Class: class, Work: func(ctx context.Context, l Lease) error {
					inFlight <- struct{}{}
					<-answer
					return &KeyError{Reason: ReasonLeaked}
				}})
			}()
		}
		<-inFlight
		<-inFlight
		close(answer)
		for range 2 {
			if err := <-done; !errors.Is(err, ErrNoLanes) {
				t.Fatalf("Do = %v, want ErrNoLanes once the only key is disabled", err)
			}
		}
		if ev := rec.of(EventKeyDisabled); len(ev) != 1 || ev[0].KeyID != "key1" || ev[0].Reason != ReasonLeaked {
			t.Errorf("key disabled events = %+v, want one for key1", ev)
		}
		if n := logs.count(); n != 1 {
			t.Errorf("%q logged %d times, want once", logs.want, n)
		}
		if k := s.Keys()[0]; k.Disabled != ReasonLeaked || k.Classes[0].State != "disabled" || k.Classes[1].State != "disabled" {
			t.Errorf("Keys()[0] = %+v, want key1 disabled on both classes", k)
		}
		if ds, err := st.DisabledKeys(t.Context()); err != nil || len(ds) != 1 || ds[0].Reason != ReasonLeaked {
			t.Errorf("stored disabled keys = %+v, %v", ds, err)
		}
	})
}
