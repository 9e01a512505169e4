package store_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/slideshowd/slideshowd/store"
)

// TestBoltSharedLifeCopy: a life record read on the file it was written to
// is not a Copy, also once the file is renamed (the same file); read on a
// copy of the file, or written without the file it names (a slideshowd
// before it), it is.
func TestBoltSharedLifeCopy(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the boot id, device and inode numbers are read on Linux only")
	}
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	life := store.SharedLife{Life: "c~1", Epoch: "e1", Gen: 3, File: "made up", Copy: true}
	read := func(p string) store.SharedLife {
		t.Helper()
		b, err := store.Open(p, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		l, err := b.SharedLife(ctx, "cl")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	b, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetSharedLife(ctx, "cl", life); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if l := read(path); l.Copy || l.File == "" || l.File == "made up" || l.Life != "c~1" || l.Gen != 3 {
		t.Errorf("read on its own file: %+v, want not a copy, File the file's", l)
	}
	moved := filepath.Join(dir, "b.db")
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if l := read(moved); l.Copy {
		t.Errorf("read on its own file renamed: %+v, want not a copy", l)
	}
	cpy := filepath.Join(dir, "copy.db")
	copyFile(t, moved, cpy)
	if l := read(cpy); !l.Copy {
		t.Errorf("read on a copy: %+v, want a copy", l)
	}
	// A record without File (written before it): a copy.
	db, err := bolt.Open(moved, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := json.Marshal(map[string]any{"life": "c~1", "epoch": "e1"})
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("life:cl"), v) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if l := read(moved); !l.Copy || l.Life != "c~1" {
		t.Errorf("a record naming no file: %+v, want a copy", l)
	}
}
