package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the version of the Bolt file layout this package reads and
// writes. Open records it in a new file and refuses a file of another version.
const SchemaVersion = 1

// The layout of a Bolt file (schema version 1). Top-level buckets:
//
//	meta      "schema" -> decimal ASCII version ("1"); "epoch:<cluster>" ->
//	          the Redis epoch this file's day counts were last added to
//	          (SetSharedEpoch); "life:<cluster>" -> JSON, the last life of
//	          a process on the file in that cluster (SetSharedLife)
//	daily     one nested bucket per day, named by the day ("2026-03-08");
//	          inside: laneKey -> count, 8-byte big-endian uint64
//	lanes     laneKey -> 0x01, time, time (CoolUntil, ExhaustedUntil)
//	disabled  key id -> 0x01, time (At), reason bytes (the rest); or
//	          0x02, time (At), uvarint(len(fingerprint)), fingerprint, reason
//	          bytes (the rest), written when a fingerprint is set
//	enabled   key id -> 0x01, time: when the key was last enabled, kept until
//	          it is disabled again (KeysEnabled; see EnableTimes)
//	resumed   laneKey -> 0x01, time: when the lane was last resumed, kept
//	          until it is stopped again (LanesResumed; see ResumeTimes)
//	jobs      job id -> the job's Data as given
//	windows   laneKey -> 0x01, uvarint(n), n x (8-byte big-endian unix ns, uvarint tokens):
//	          the lane's window log at the last clean stop (Ledger.Settle)
//	records   8-byte big-endian sequence -> 0x01, uvarint(len(laneKey)), laneKey,
//	          day (10 bytes), uvarint Units, uvarint Covers, 8-byte At and Until
//	          (unix ns), uvarint PrevTokens: Ledger.Reserve's records, in write order
//
// The windows, records, enabled and resumed buckets came after version 1 without changing it:
// Open creates them in an older file, and an older slideshowd ignores them.
//
// laneKey is uvarint(len(project)), project, class. A time is uvarint(len),
// then time.Time.MarshalBinary of the UTC time (the zero time included).
var (
	bucketMeta     = []byte("meta")
	bucketDaily    = []byte("daily")
	bucketLanes    = []byte("lanes")
	bucketDisabled = []byte("disabled")
	bucketJobs     = []byte("jobs")
	bucketWindows  = []byte("windows")
	bucketRecords  = []byte("records")
	bucketEnabled  = []byte("enabled")
	bucketResumed  = []byte("resumed")

	keySchema = []byte("schema")
	// keyEpoch prefixes a cluster's name in meta (SharedEpoch).
	keyEpoch = "epoch:"
)

// valueVersion is the first byte of encoded lane states and disabled keys.
const valueVersion = 1

// disabledFingerprint is the first byte of a disabled key that carries a
// fingerprint; files written before it keep valueVersion.
const disabledFingerprint = 2

// Bolt is a Store in one go.etcd.io/bbolt file; see the package doc for the
// guarantees. A Bolt is safe for concurrent use; writes are serialised by
// bbolt, each in its own transaction, synced to disk before the call returns
// (unless Options.NoSync). Its zero value is not usable: create one with Open.
type Bolt struct {
	path    string
	history int

	mu sync.RWMutex // held shared by calls, exclusively by Close
	db *bolt.DB     // nil after Close

	jobDeletes atomic.Uint64 // DeleteJob calls that returned; see Jobs
}

var (
	_ Store  = (*Bolt)(nil)
	_ Ledger = (*Bolt)(nil)
)

// Open opens (creating with mode 0600 if needed) the Bolt file at path,
// records or checks its schema version and deletes daily counters outside the
// kept history. If another process, or another Open in this process, holds the
// file, Open gives up after opts.Timeout with an error wrapping ErrLocked. A
// file of another schema version gives an error wrapping ErrSchema. Open
// checks the file first (see Verify): an empty file, or one that fails
// bbolt's consistency check or faults when read, gives a *DamagedError
// (wrapping ErrDamaged), never a panic, and is left as it is.
func Open(path string, opts Options) (*Bolt, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := checkFileSize(path); err != nil {
		return nil, err
	}
	var db *bolt.DB
	err := guarded(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync})
		return err
	})
	if err != nil {
		return nil, openErr(path, opts, err)
	}
	if err := checkDB(path, db); err != nil {
		_ = guarded(path, db.Close)
		return nil, err
	}
	if err := guarded(path, func() error {
		return db.Update(func(tx *bolt.Tx) error { return initFile(tx, opts.History) })
	}); err != nil {
		_ = guarded(path, db.Close)
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &Bolt{path: path, history: opts.History, db: db}, nil
}

// initFile records or checks the schema version, creates the buckets and
// compacts the daily counters.
func initFile(tx *bolt.Tx, history int) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		var other []byte
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			other = bytes.Clone(name)
			return errors.New("stop")
		})
		if other != nil {
			return fmt.Errorf("%w: the file has bucket %q but no schema version; this slideshowd reads version %d",
				ErrSchema, other, SchemaVersion)
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion))); err != nil {
			return err
		}
	}
	raw := meta.Get(keySchema)
	if v, err := strconv.ParseUint(string(raw), 10, 64); err != nil || v != SchemaVersion {
		found := quote(string(raw))
		if err == nil {
			found = strconv.FormatUint(v, 10)
		} else if raw == nil {
			found = "none"
		}
		return fmt.Errorf("%w: the file has schema version %s, this slideshowd reads version %d", ErrSchema, found, SchemaVersion)
	}
	for _, name := range [][]byte{bucketDaily, bucketLanes, bucketDisabled, bucketJobs, bucketWindows, bucketRecords, bucketEnabled, bucketResumed} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	newest, err := newestDay(tx.Bucket(bucketDaily))
	if err != nil || newest == "" {
		return err
	}
	return compact(tx.Bucket(bucketDaily), oldestKept(newest, history))
}

// newestDay returns the newest day in the daily bucket, "" if none.
func newestDay(daily *bolt.Bucket) (string, error) {
	k, _ := daily.Cursor().Last()
	if k == nil {
		return "", nil
	}
	if err := checkDay(string(k)); err != nil {
		return "", fmt.Errorf("store: corrupt daily bucket: %w", err)
	}
	return string(k), nil
}

// compact deletes the days before oldest.
func compact(daily *bolt.Bucket, oldest string) error {
	var old [][]byte
	c := daily.Cursor()
	for k, _ := c.First(); k != nil && string(k) < oldest; k, _ = c.Next() {
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := daily.DeleteBucket(k); err != nil {
			return fmt.Errorf("store: compact day %s: %w", k, err)
		}
	}
	return nil
}

// Path returns the file's path.
func (s *Bolt) Path() string { return s.path }

// view runs fn in a read transaction, holding s.mu shared.
func (s *Bolt) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.db == nil {
		return ErrClosed
	}
	return s.db.View(fn)
}

// update runs fn in a write transaction (synced unless Options.NoSync),
// holding s.mu shared.
func (s *Bolt) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.db == nil {
		return ErrClosed
	}
	return s.db.Update(fn)
}

// SharedEpoch returns the epoch of cluster's shared state on Redis that
// this file's day counts were last added to (SetSharedEpoch); "" when none
// was recorded (a new file, or one a slideshowd without Redis wrote). The
// Redis ledger reads it when it joins the cluster (see Redis, "Redis
// restarted empty"). Safe for concurrent use; ErrClosed after Close.
func (s *Bolt) SharedEpoch(ctx context.Context, cluster string) (string, error) {
	var ep string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ep = string(tx.Bucket(bucketMeta).Get([]byte(keyEpoch + cluster)))
		return nil
	})
	return ep, err
}

// SetSharedEpoch records, in one synced transaction, that this file's day
// counts are in epoch of cluster's shared state on Redis (see SharedEpoch).
func (s *Bolt) SetSharedEpoch(ctx context.Context, cluster, epoch string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(keyEpoch+cluster), []byte(epoch))
	})
}

// AddDaily implements Store, in one synced transaction.
func (s *Bolt) AddDaily(ctx context.Context, day string, lane LaneID, n int) (int, error) {
	if err := checkAdd(day, lane, n); err != nil {
		return 0, err
	}
	var total int
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var err error
		total, err = s.addDailyTx(tx, day, lane, n)
		return err
	})
	if err != nil {
		return 0, err
	}
	return total, nil
}

// addDailyTx adds n to the lane's count of day in tx and returns the total.
func (s *Bolt) addDailyTx(tx *bolt.Tx, day string, lane LaneID, n int) (int, error) {
	daily := tx.Bucket(bucketDaily)
	newest, err := newestDay(daily)
	if err != nil {
		return 0, err
	}
	if newest != "" {
		if oldest := oldestKept(newest, s.history); day < oldest {
			return 0, tooOld(day, oldest, s.history)
		}
	}
	counts := daily.Bucket([]byte(day))
	if counts == nil {
		if day > newest {
			if err := compact(daily, oldestKept(day, s.history)); err != nil {
				return 0, err
			}
		}
		if counts, err = daily.CreateBucket([]byte(day)); err != nil {
			return 0, err
		}
	}
	key := laneKey(lane)
	old, err := decodeCount(counts.Get(key))
	if err != nil {
		return 0, fmt.Errorf("store: day %s lane %s: %w", day, quote(lane.String()), err)
	}
	total, err := addCount(day, lane, old, n)
	if err != nil {
		return 0, err
	}
	return total, counts.Put(key, binary.BigEndian.AppendUint64(nil, uint64(total)))
}

// Daily implements Store.
func (s *Bolt) Daily(ctx context.Context, day string) ([]DailyCount, error) {
	if err := checkDay(day); err != nil {
		return nil, err
	}
	var out []DailyCount
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = appendDay(out, day, tx.Bucket(bucketDaily).Bucket([]byte(day)))
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, compareCounts)
	return out, nil
}

// History implements Store.
func (s *Bolt) History(ctx context.Context) ([]DailyCount, error) {
	var out []DailyCount
	err := s.view(ctx, func(tx *bolt.Tx) error {
		daily := tx.Bucket(bucketDaily)
		return daily.ForEachBucket(func(day []byte) error {
			var err error
			out, err = appendDay(out, string(day), daily.Bucket(day))
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, compareCounts)
	return out, nil
}

// appendDay appends the counts of one day's bucket (nil: none).
func appendDay(out []DailyCount, day string, counts *bolt.Bucket) ([]DailyCount, error) {
	if counts == nil {
		return out, nil
	}
	err := counts.ForEach(func(k, v []byte) error {
		lane, err := decodeLaneKey(k)
		if err != nil {
			return fmt.Errorf("store: day %s: %w", day, err)
		}
		c, err := decodeCount(v)
		if err != nil {
			return fmt.Errorf("store: day %s lane %s: %w", day, quote(lane.String()), err)
		}
		out = append(out, DailyCount{Day: day, Lane: lane, Count: c})
		return nil
	})
	return out, err
}

// SetLaneState implements Store. A state with a stop forgets the lane's
// resume time (ResumeTimes).
func (s *Bolt) SetLaneState(ctx context.Context, st LaneState) error {
	if err := checkLane(st.Lane); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error { return putLaneState(tx, st) })
}

// putLaneState writes st in the lanes bucket (deletes it when empty); a
// stop deletes the lane's resume time.
func putLaneState(tx *bolt.Tx, st LaneState) error {
	key := laneKey(st.Lane)
	if st.Stopped != "" {
		if err := tx.Bucket(bucketResumed).Delete(key); err != nil {
			return err
		}
	}
	if st.empty() {
		return tx.Bucket(bucketLanes).Delete(key)
	}
	v := []byte{valueVersion}
	v = appendTime(v, st.CoolUntil)
	v = appendTime(v, st.ExhaustedUntil)
	if st.Stopped != "" {
		// Appended after the times: a value written before stops existed
		// ends after them and reads as not stopped.
		v = binary.AppendUvarint(v, uint64(len(st.Stopped)))
		v = append(v, st.Stopped...)
		v = binary.AppendUvarint(v, uint64(len(st.Config)))
		v = append(v, st.Config...)
	}
	return tx.Bucket(bucketLanes).Put(key, v)
}

// ResumeLaneAt implements ResumeTimes: in one transaction, the lane's stop
// and its configuration are cleared (its cooldown and exhaustion stay) and
// at is recorded as the time of its resume.
func (s *Bolt) ResumeLaneAt(ctx context.Context, l LaneID, at time.Time) error {
	if err := checkLane(l); err != nil {
		return err
	}
	key := laneKey(l)
	return s.update(ctx, func(tx *bolt.Tx) error {
		st := LaneState{Lane: l}
		if v := tx.Bucket(bucketLanes).Get(key); v != nil {
			var err error
			if st, err = decodeLaneState(key, v); err != nil {
				return err
			}
		}
		st.Stopped, st.Config = "", ""
		if err := putLaneState(tx, st); err != nil {
			return err
		}
		return tx.Bucket(bucketResumed).Put(key, appendTime([]byte{valueVersion}, at))
	})
}

// LanesResumed implements ResumeTimes.
func (s *Bolt) LanesResumed(ctx context.Context) (map[LaneID]time.Time, error) {
	type resumed struct {
		lane LaneID
		at   time.Time
	}
	all, err := readBucket(ctx, s, bucketResumed, func(k, v []byte) (resumed, error) {
		l, at, err := decodeResumed(k, v)
		return resumed{l, at}, err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[LaneID]time.Time, len(all))
	for _, r := range all {
		out[r.lane] = r.at
	}
	return out, nil
}

// decodeResumed decodes an entry of the resumed bucket.
func decodeResumed(k, v []byte) (LaneID, time.Time, error) {
	l, err := decodeLaneKey(k)
	if err != nil {
		return LaneID{}, time.Time{}, err
	}
	if len(v) == 0 || v[0] != valueVersion {
		return LaneID{}, time.Time{}, fmt.Errorf("store: corrupt resume of lane %s: %x", quote(l.String()), v)
	}
	at, rest, err := readTime(v[1:])
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after the time", len(rest))
	}
	if err != nil {
		return LaneID{}, time.Time{}, fmt.Errorf("store: corrupt resume of lane %s: %w", quote(l.String()), err)
	}
	return l, at, nil
}

// LaneStates implements Store.
func (s *Bolt) LaneStates(ctx context.Context) ([]LaneState, error) {
	out, err := readBucket(ctx, s, bucketLanes, decodeLaneState)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b LaneState) int { return compareLanes(a.Lane, b.Lane) })
	return out, nil
}

// DisableKey implements Store.
func (s *Bolt) DisableKey(ctx context.Context, d DisabledKey) error {
	if err := checkID("KeyID", d.KeyID); err != nil {
		return err
	}
	if len(d.Fingerprint) > MaxIDLen {
		return fmt.Errorf("%w: Fingerprint: %d bytes: at most %d", ErrInvalid, len(d.Fingerprint), MaxIDLen)
	}
	var v []byte
	if d.Fingerprint == "" {
		v = appendTime([]byte{valueVersion}, d.At)
	} else {
		v = appendTime([]byte{disabledFingerprint}, d.At)
		v = binary.AppendUvarint(v, uint64(len(d.Fingerprint)))
		v = append(v, d.Fingerprint...)
	}
	v = append(v, d.Reason...)
	return s.update(ctx, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketEnabled).Delete([]byte(d.KeyID)); err != nil {
			return err
		}
		return tx.Bucket(bucketDisabled).Put([]byte(d.KeyID), v)
	})
}

// EnableKey implements Store: EnableKeyAt at the current time.
func (s *Bolt) EnableKey(ctx context.Context, keyID string) error {
	return s.EnableKeyAt(ctx, keyID, time.Now())
}

// EnableKeyAt implements EnableTimes.
func (s *Bolt) EnableKeyAt(ctx context.Context, keyID string, at time.Time) error {
	if err := checkID("keyID", keyID); err != nil {
		return err
	}
	v := appendTime([]byte{valueVersion}, at)
	return s.update(ctx, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketDisabled).Delete([]byte(keyID)); err != nil {
			return err
		}
		return tx.Bucket(bucketEnabled).Put([]byte(keyID), v)
	})
}

// KeysEnabled implements EnableTimes.
func (s *Bolt) KeysEnabled(ctx context.Context) (map[string]time.Time, error) {
	type enabled struct {
		id string
		at time.Time
	}
	all, err := readBucket(ctx, s, bucketEnabled, func(k, v []byte) (enabled, error) {
		at, err := decodeEnabled(k, v)
		return enabled{string(k), at}, err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(all))
	for _, e := range all {
		out[e.id] = e.at
	}
	return out, nil
}

// decodeEnabled decodes a value of the enabled bucket.
func decodeEnabled(k, v []byte) (time.Time, error) {
	if len(v) == 0 || v[0] != valueVersion {
		return time.Time{}, fmt.Errorf("store: corrupt enabled key %s: %x", quote(string(k)), v)
	}
	at, _, err := readTime(v[1:])
	if err != nil {
		return time.Time{}, fmt.Errorf("store: corrupt enabled key %s: %w", quote(string(k)), err)
	}
	return at, nil
}

// DisabledKeys implements Store.
func (s *Bolt) DisabledKeys(ctx context.Context) ([]DisabledKey, error) {
	return readBucket(ctx, s, bucketDisabled, decodeDisabled)
}

// readBucket decodes every entry of bucket, in key order, in one read
// transaction; the first entry decode refuses ends it with that error.
func readBucket[T any](ctx context.Context, s *Bolt, bucket []byte, decode func(k, v []byte) (T, error)) ([]T, error) {
	var out []T
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			d, err := decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutJob implements Store.
func (s *Bolt) PutJob(ctx context.Context, j JobRecord) error {
	if err := checkID("ID", j.ID); err != nil {
		return err
	}
	data := j.Data
	if data == nil {
		data = []byte{}
	}
	return s.update(ctx, func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Put([]byte(j.ID), data) })
}

// Job implements Store.
func (s *Bolt) Job(ctx context.Context, id string) (JobRecord, error) {
	if err := checkID("id", id); err != nil {
		return JobRecord{}, err
	}
	var (
		rec   JobRecord
		found bool
	)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		// A cursor, not Get: an empty value must still count as found.
		k, v := tx.Bucket(bucketJobs).Cursor().Seek([]byte(id))
		if k != nil && string(k) == id {
			rec, found = JobRecord{ID: id, Data: cloneData(v)}, true
		}
		return nil
	})
	if err != nil {
		return JobRecord{}, err
	}
	if !found {
		return JobRecord{}, fmt.Errorf("job %s: %w", quote(id), ErrNotFound)
	}
	return rec, nil
}

// Jobs implements Store. It reads the records in batches, each in its own
// read transaction, and calls fn between transactions. If a record was
// deleted since the batch was read, it reads the rest of the batch again, so
// that deleted records are not visited.
func (s *Bolt) Jobs(ctx context.Context, fn func(JobRecord) bool) error {
	var after []byte // last id visited; nil before the first one
	for {
		deletes := s.jobDeletes.Load()
		batch, err := s.jobBatch(ctx, after)
		if err != nil {
			return err
		}
		stale := false
		for i, r := range batch {
			if i > 0 && s.jobDeletes.Load() != deletes {
				stale = true
				break
			}
			if !fn(r) {
				return nil
			}
			after = []byte(r.ID)
		}
		if !stale && len(batch) < jobsBatch {
			return nil
		}
	}
}

// jobBatch reads up to jobsBatch records with ids after after (from the first
// if after is nil).
func (s *Bolt) jobBatch(ctx context.Context, after []byte) ([]JobRecord, error) {
	batch := make([]JobRecord, 0, jobsBatch)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketJobs).Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.First()
		} else if k, v = c.Seek(after); bytes.Equal(k, after) {
			k, v = c.Next()
		}
		for ; k != nil && len(batch) < jobsBatch; k, v = c.Next() {
			batch = append(batch, JobRecord{ID: string(k), Data: cloneData(v)})
		}
		return nil
	})
	return batch, err
}

// DeleteJob implements Store.
func (s *Bolt) DeleteJob(ctx context.Context, id string) error {
	if err := checkID("id", id); err != nil {
		return err
	}
	err := s.update(ctx, func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Delete([]byte(id)) })
	// Counted after the commit, so that Jobs, seeing the count unchanged,
	// knows its batch predates no delete.
	s.jobDeletes.Add(1)
	return err
}

// Close waits for running calls, then closes the file and releases its lock.
// Closing twice is not an error.
func (s *Bolt) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// laneKey encodes a lane as uvarint(len(project)), project, class.
func laneKey(l LaneID) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(l.Project)+len(l.Class))
	b = binary.AppendUvarint(b, uint64(len(l.Project)))
	b = append(b, l.Project...)
	return append(b, l.Class...)
}

func decodeLaneKey(k []byte) (LaneID, error) {
	n, w := binary.Uvarint(k)
	if w <= 0 || n > uint64(len(k)-w) {
		return LaneID{}, fmt.Errorf("store: corrupt lane key %q", k)
	}
	rest := k[w:]
	return LaneID{Project: string(rest[:n]), Class: string(rest[n:])}, nil
}

func decodeCount(v []byte) (int, error) {
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("store: corrupt counter %x", v)
	}
	c := binary.BigEndian.Uint64(v)
	if c > uint64(^uint(0)>>1) {
		return 0, fmt.Errorf("store: corrupt counter %d", c)
	}
	return int(c), nil
}

// appendTime appends uvarint(len) and the binary form of t in UTC.
func appendTime(b []byte, t time.Time) []byte {
	tb, err := t.UTC().MarshalBinary()
	if err != nil {
		// MarshalBinary fails only for zone offsets that are not whole
		// seconds or out of range; UTC has offset 0.
		panic("store: marshal UTC time: " + err.Error())
	}
	b = binary.AppendUvarint(b, uint64(len(tb)))
	return append(b, tb...)
}

// readTime reads what appendTime wrote and returns the rest of b.
func readString(b []byte) (string, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return "", nil, errors.New("bad string length")
	}
	return string(b[w : w+int(n)]), b[w+int(n):], nil
}

func readTime(b []byte) (time.Time, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return time.Time{}, nil, errors.New("bad time length")
	}
	var t time.Time
	if err := t.UnmarshalBinary(b[w : w+int(n)]); err != nil {
		return time.Time{}, nil, err
	}
	return t.UTC(), b[w+int(n):], nil
}

func decodeLaneState(k, v []byte) (LaneState, error) {
	lane, err := decodeLaneKey(k)
	if err != nil {
		return LaneState{}, err
	}
	st := LaneState{Lane: lane}
	if len(v) == 0 || v[0] != valueVersion {
		return LaneState{}, fmt.Errorf("store: corrupt state of lane %s: %x", quote(lane.String()), v)
	}
	rest := v[1:]
	if st.CoolUntil, rest, err = readTime(rest); err == nil {
		st.ExhaustedUntil, rest, err = readTime(rest)
	}
	if err == nil && len(rest) > 0 {
		if st.Stopped, rest, err = readString(rest); err == nil {
			st.Config, rest, err = readString(rest)
		}
	}
	if err != nil || len(rest) != 0 {
		return LaneState{}, fmt.Errorf("store: corrupt state of lane %s: %x", quote(lane.String()), v)
	}
	return st, nil
}

func decodeDisabled(k, v []byte) (DisabledKey, error) {
	d := DisabledKey{KeyID: string(k)}
	if len(v) == 0 || (v[0] != valueVersion && v[0] != disabledFingerprint) {
		return DisabledKey{}, fmt.Errorf("store: corrupt disabled key %s: %x", quote(d.KeyID), v)
	}
	at, rest, err := readTime(v[1:])
	if err != nil {
		return DisabledKey{}, fmt.Errorf("store: corrupt disabled key %s: %w", quote(d.KeyID), err)
	}
	if v[0] == disabledFingerprint {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return DisabledKey{}, fmt.Errorf("store: corrupt disabled key %s: bad fingerprint length", quote(d.KeyID))
		}
		d.Fingerprint = string(rest[w : w+int(n)])
		rest = rest[w+int(n):]
	}
	d.At, d.Reason = at, string(rest)
	return d, nil
}
