package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/store"
)

// The daemon writes a backup every interval and keeps the newest keep.
func TestRollingBackups(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, StoreFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := &daemon{cfg: config.Config{Data: dir}, store: st}
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); d.runBackups(ctx, time.Hour, 2, zerolog.Nop()) }()
		count := func() int {
			ents, _ := os.ReadDir(filepath.Join(dir, backupDir))
			return len(ents)
		}
		time.Sleep(time.Hour - time.Second)
		synctest.Wait()
		if n := count(); n != 0 {
			t.Errorf("%d backups before the first interval", n)
		}
		for want := range []int{1, 2, 2, 2} {
			time.Sleep(time.Hour)
			synctest.Wait()
			if n := count(); n != min(want+1, 2) {
				t.Errorf("after %d intervals: %d backups, want %d", want+1, n, min(want+1, 2))
			}
		}
		cancel()
		<-done
	})
	ents, _ := os.ReadDir(filepath.Join(dir, backupDir))
	for _, e := range ents {
		if err := store.Verify(filepath.Join(dir, backupDir, e.Name()), store.Options{}); err != nil {
			t.Error(err)
		}
	}
}
