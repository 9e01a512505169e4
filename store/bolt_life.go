package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// keyLife prefixes a cluster's name in the meta bucket: the life of the
// Redis ledger that last ran on the file, as JSON (SetSharedLife). A
// slideshowd before it ignores the key.
const keyLife = "life:"

// SharedLife is what a Bolt file keeps of the last life of a process that
// used it in a cluster on Redis (see Redis, "Faults"): the life's name in
// Redis (the process name and its life's suffix), the cluster's epoch it
// joined, and the day units it granted itself on an outage's share that
// were not yet added to Redis (Pending, per day and lane; none once its
// reconnect added them). Gen numbers the life's records, from 1, each
// written with the next (0: a record from before it): the reconnect that
// adds Pending to Redis records there the Gen of the last record written
// (see Redis, "The charge replaced"), so a record its crash left unemptied
// is not added twice. File identifies the file the record was written to
// (the kernel's boot id and the file's device and inode numbers;
// SetSharedLife sets it, "" where they are not read: off Linux), and Copy,
// set by SharedLife (never stored), says the file read is another one, or
// was written before the machine's last boot, or the record names none
// (written by a slideshowd before it): a copy of the file, made by hand or
// moved to another file system or machine, whose life may still run on
// the original. A process that starts
// on the file replaces the charge that life got as presumed dead after an
// outage by Pending; on a Copy it only raises that charge to Pending. Prev
// names the lives on the file before it, as the use of the day names them
// (their process names, newest first, at most maxPrevLives, none of them
// Life's own name): a re-seed of an empty Redis counts their parts within
// the own counts of the process on the file (see Redis, "Redis restarted
// empty").
type SharedLife struct {
	Life    string       `json:"life"`
	Epoch   string       `json:"epoch"`
	Gen     uint64       `json:"gen,omitempty"`
	Pending []DailyCount `json:"pending,omitempty"`
	File    string       `json:"file,omitempty"`
	Copy    bool         `json:"-"`
	Prev    []string     `json:"prev,omitempty"`
}

// SharedLife returns the last life of cluster recorded in the file
// (SetSharedLife), Copy set when that record was written to another file
// (see SharedLife's type); the zero SharedLife when none was (a new file,
// or one a slideshowd before this wrote). Read by the process that opened
// the file, a record written to this file by another names a life that
// no longer runs on it: the file is locked while open (Open), so that
// life closed it or died. Safe for concurrent use;
// ErrClosed after Close; a record that does not decode is an error naming
// the key.
func (s *Bolt) SharedLife(ctx context.Context, cluster string) (SharedLife, error) {
	var l SharedLife
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get([]byte(keyLife + cluster))
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("store: meta %q: %w", keyLife+cluster, err)
		}
		return nil
	})
	if err == nil && l.Life != "" {
		l.Copy = l.File == "" || l.File != fileID(s.path)
	}
	return l, err
}

// SetSharedLife records l as the last life of cluster in the file, in one
// synced transaction (see SharedLife), its File set to this file's
// identity (l.File and l.Copy are ignored). Safe for concurrent use;
// ErrClosed after Close.
func (s *Bolt) SetSharedLife(ctx context.Context, cluster string, l SharedLife) error {
	l.File, l.Copy = fileID(s.path), false
	v, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(keyLife+cluster), v)
	})
}

// ForgetSharedLives deletes the life records of every cluster from the
// file (see SharedLife) and returns how many there were, in one synced
// transaction. `slideshowd store restore` calls it on the copy it puts in
// place: a backup's record is the life as it was when the backup was
// taken, and a start on it would replace that life's charge as presumed
// dead by the pending units of then, dropping the share units the life
// took after the backup (see Redis, "The charge replaced"); without a
// record the charge stays, a bound of what the life sent. Safe for
// concurrent use; ErrClosed after Close.
func (s *Bolt) ForgetSharedLives(ctx context.Context) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.Seek([]byte(keyLife)); k != nil && bytes.HasPrefix(k, []byte(keyLife)); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, err
}
