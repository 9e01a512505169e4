package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DamagedError is the error of a Bolt file that fails its check: Open,
// Verify and CheckFile return it, wrapping ErrDamaged. Problem says what is
// wrong, on one line.
type DamagedError struct {
	Path    string
	Problem string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("store: %s is damaged: %s", e.Path, e.Problem)
}

// Unwrap returns ErrDamaged.
func (e *DamagedError) Unwrap() error { return ErrDamaged }

func damaged(path, format string, args ...any) error {
	p := fmt.Sprintf(format, args...)
	return &DamagedError{Path: path, Problem: strings.Join(strings.Fields(p), " ")}
}

// guarded runs fn with memory faults turned into panics
// (debug.SetPanicOnFault) and any panic turned into an error: bbolt reads
// its file through a memory map and answers many kinds of damage with an
// assertion panic or a fault (a truncated file reads past its end).
func guarded(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if p := recover(); p != nil {
			err = damaged(path, "reading it fails: %v", p)
		}
	}()
	return fn()
}

// maxCheckErrors is how many problems of bbolt's check are read; the
// error names the first and counts them.
const maxCheckErrors = 100

// checkDB checks an open file: a walk that reads every bucket, key and
// value in this goroutine (so that a fault or a bbolt assertion is caught
// by guarded before bbolt's own check, which runs in a goroutine of its
// own, reads the same pages), the known records decoded, then bbolt's
// consistency check (tx.Check: page reachability, double frees, key order).
func checkDB(path string, db *bolt.DB) error {
	full, err := checkLayout(path)
	if err != nil {
		return err
	}
	return guarded(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				return walkBucket(string(name), b)
			}); err != nil {
				return damaged(path, "%v", err)
			}
			if !full {
				// One meta page is invalid (a torn write; bbolt uses the
				// other): bbolt's check would assert on it. checkPages
				// checked the same layout.
				return nil
			}
			var problems []string
			n := 0
			for err := range tx.Check() {
				n++
				if len(problems) < maxCheckErrors {
					problems = append(problems, err.Error())
				}
			}
			if n > 0 {
				more := ""
				if n > 1 {
					more = fmt.Sprintf(" (and %d more problems)", n-1)
				}
				return damaged(path, "%s%s", problems[0], more)
			}
			return nil
		})
	})
}

// Meta page layout of a bbolt file (native byte order) after the 16-byte
// page header: magic, version, page size, flags (uint32 each), the root
// bucket (root page, sequence: uint64 each), the freelist page, the high
// water mark page, the transaction id and an FNV-64a checksum (uint64 each).
const (
	pageHeaderSize  = 16
	metaFlag        = 0x04
	freelistFlag    = 0x10
	metaFreelistOff = pageHeaderSize + 4*4 + 16
	metaTxidOff     = metaFreelistOff + 16
	metaChecksumOff = metaTxidOff + 8
	noFreelist      = ^uint64(0)
)

// checkLayout reads the file and checks its layout (see checkPages); ok
// says bbolt's check may run.
func checkLayout(path string) (ok bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	bad, metasValid := checkPages(data)
	if bad != "" {
		return false, damaged(path, "%s", bad)
	}
	return metasValid, nil
}

// walkBucket reads every key and value below b, decoding the records whose
// layout this package knows.
func walkBucket(path string, b *bolt.Bucket) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			child := b.Bucket(k)
			if child == nil {
				return fmt.Errorf("bucket %s: key %q has no value and is no bucket", path, k)
			}
			if path == string(bucketDaily) {
				if err := checkDay(string(k)); err != nil {
					return fmt.Errorf("bucket daily: %v", err)
				}
			}
			if err := walkBucket(path+"/"+string(k), child); err != nil {
				return err
			}
			continue
		}
		var err error
		switch {
		case strings.HasPrefix(path, string(bucketDaily)+"/"):
			if _, err = decodeLaneKey(k); err == nil {
				_, err = decodeCount(v)
			}
		case path == string(bucketLanes):
			_, err = decodeLaneState(k, v)
		case path == string(bucketDisabled):
			_, err = decodeDisabled(k, v)
		case path == string(bucketEnabled):
			_, err = decodeEnabled(k, v)
		case path == string(bucketResumed):
			_, _, err = decodeResumed(k, v)
		}
		if err != nil {
			return fmt.Errorf("bucket %s: key %q: %v", path, k, err)
		}
	}
	return nil
}

// checkFileSize refuses an empty file: bbolt would take it for a new one
// and every job and count would be silently gone.
func checkFileSize(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil // missing: a new store (the caller decides whether one was expected)
	}
	if !fi.Mode().IsRegular() {
		return damaged(path, "not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Size() == 0 {
		return damaged(path, "empty file (0 bytes): it held the store, and its jobs and day counts are gone; restore a backup (slideshowd store restore FILE)")
	}
	return nil
}

// Verify checks the Bolt file at path read-only, without changing it: the
// same check Open runs. A file held by a running process gives ErrLocked
// after opts.Timeout; a damaged file a *DamagedError; a missing file an
// error wrapping fs.ErrNotExist.
func Verify(path string, opts Options) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	opts = opts.withDefaults()
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := checkFileSize(path); err != nil {
		return err
	}
	var db *bolt.DB
	err := guarded(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, ReadOnly: true})
		return err
	})
	if err != nil {
		return openErr(path, opts, err)
	}
	defer func() { _ = guarded(path, db.Close) }()
	if err := checkDB(path, db); err != nil {
		return err
	}
	return guarded(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				return damaged(path, "no meta bucket: not a slideshowd store")
			}
			if string(meta.Get(keySchema)) != fmt.Sprint(SchemaVersion) {
				return fmt.Errorf("store: %s: %w: the file has schema version %q, this slideshowd reads version %d", path, ErrSchema, meta.Get(keySchema), SchemaVersion)
			}
			return nil
		})
	})
}

// openErr turns an error of bolt.Open into the package's: ErrLocked for a
// held file, a *DamagedError for a file bbolt refuses or panics on (bad
// meta page, checksum, version, a truncated file), else as is. A damaged
// file is described by checkLayout's message when the layout names the
// damage, so Open and Verify say the same thing. The layout is read only
// after bolt.Open failed (not before it, when a running writer may hold
// the file: that gives ErrLocked, not a torn read taken for damage).
func openErr(path string, opts Options, err error) error {
	var de *DamagedError
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("store: open %s: %w (for example a running slideshowd); gave up after %v", path, ErrLocked, opts.Timeout)
	case errors.As(err, &de):
		// bbolt panicked or faulted reading it (a truncated file: "invalid
		// freelist page: <garbage>"): the layout's message names the
		// damage, the same one Verify gives.
		if _, lerr := checkLayout(path); lerr != nil {
			return lerr
		}
		return err
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrInvalidMapping), strings.Contains(err.Error(), "file size too small"),
		strings.Contains(err.Error(), "page"):
		// bbolt refused it and let go of it: say what is wrong in our terms.
		if _, lerr := checkLayout(path); lerr != nil {
			return lerr
		}
		return damaged(path, "%v", err)
	}
	return fmt.Errorf("store: open %s: %w", path, err)
}

// keyBackupAt in the meta bucket of a backup copy: when the copy was taken
// (RFC 3339, UTC). Restore reads it.
var keyBackupAt = []byte("backup_at")

// Backup writes a consistent copy of the whole file to w, from one read
// transaction (writes go on meanwhile), and returns the bytes written.
func (s *Bolt) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// BackupFile writes a consistent copy to dest (through dest.tmp, synced,
// checked, stamped with the time of the copy, then renamed) and returns its
// size.
func (s *Bolt) BackupFile(ctx context.Context, dest string) (int64, error) {
	at := time.Now()
	tmp := dest + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("store: backup: %w", err)
	}
	n, err := s.Backup(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = FinishBackup(tmp, dest, at)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("store: backup to %s: %w", dest, err)
	}
	return n, nil
}

// FinishBackup checks the copy at tmp (a *DamagedError if it fails),
// stamps it with at (the time the copy was taken, or earlier: Restore
// counts what may have been sent since), syncs it and renames it to dest.
func FinishBackup(tmp, dest string, at time.Time) error {
	if err := Verify(tmp, Options{}); err != nil {
		return err
	}
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: DefaultTimeout})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyBackupAt, []byte(at.UTC().Format(time.RFC3339Nano)))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dest); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dest))
}

// BackupTime returns when the backup at path was taken (see FinishBackup);
// ok is false for a file that is not a stamped backup. The file must be
// verified first.
func BackupTime(path string) (at time.Time, ok bool, err error) {
	err = guarded(path, func() error {
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: DefaultTimeout, ReadOnly: true})
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				return nil
			}
			if v := meta.Get(keyBackupAt); v != nil {
				t, err := time.Parse(time.RFC3339Nano, string(v))
				if err != nil {
					return damaged(path, "meta backup_at: %q: not a time", v)
				}
				at, ok = t, true
			}
			return nil
		})
	})
	return at, ok, err
}

// syncDir fsyncs a directory, so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
