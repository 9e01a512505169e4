package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Reserve implements Ledger, in one synced transaction.
func (s *Bolt) Reserve(ctx context.Context, r Record) (int, error) {
	if err := checkRecord(r); err != nil {
		return 0, err
	}
	v := encodeRecord(r)
	var total int
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var err error
		if r.Units > 0 {
			total, err = s.addDailyTx(tx, r.Day, r.Lane, r.Units)
		} else if counts := tx.Bucket(bucketDaily).Bucket([]byte(r.Day)); counts != nil {
			total, err = decodeCount(counts.Get(laneKey(r.Lane)))
		}
		if err != nil {
			return err
		}
		recs := tx.Bucket(bucketRecords)
		if err := forgetRecords(recs, r.At.Add(-RecordKeep)); err != nil {
			return err
		}
		seq, err := recs.NextSequence()
		if err != nil {
			return err
		}
		return recs.Put(binary.BigEndian.AppendUint64(nil, seq), v)
	})
	if err != nil {
		return 0, err
	}
	return total, nil
}

// forgetRecords deletes the oldest records while their Until is before cutoff.
func forgetRecords(recs *bolt.Bucket, cutoff time.Time) error {
	var old [][]byte
	c := recs.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, err := decodeRecord(v)
		if err != nil {
			return err
		}
		if !r.Until.Before(cutoff) {
			break
		}
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := recs.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Settle implements Ledger, in one synced transaction.
func (s *Bolt) Settle(ctx context.Context, st Settlement) error {
	if err := checkSettlement(st); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		daily := tx.Bucket(bucketDaily)
		for _, g := range st.GiveBack {
			counts := daily.Bucket([]byte(g.Day))
			if counts == nil || g.Count == 0 {
				continue
			}
			key := laneKey(g.Lane)
			old, err := decodeCount(counts.Get(key))
			if err != nil {
				return fmt.Errorf("store: day %s lane %s: %w", g.Day, quote(g.Lane.String()), err)
			}
			if err := counts.Put(key, binary.BigEndian.AppendUint64(nil, uint64(max(0, old-g.Count)))); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bucketWindows, bucketRecords} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		wins := tx.Bucket(bucketWindows)
		for _, w := range st.Windows {
			if len(w.Sent) == 0 {
				continue
			}
			v := []byte{valueVersion}
			v = binary.AppendUvarint(v, uint64(len(w.Sent)))
			for _, e := range w.Sent {
				v = binary.BigEndian.AppendUint64(v, uint64(e.At.UnixNano()))
				v = binary.AppendUvarint(v, uint64(e.Tokens))
			}
			if err := wins.Put(laneKey(w.Lane), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// LedgerRecords implements Ledger.
func (s *Bolt) LedgerRecords(ctx context.Context) (LedgerRecords, error) {
	var out LedgerRecords
	err := s.view(ctx, func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketWindows).ForEach(func(k, v []byte) error {
			lane, err := decodeLaneKey(k)
			if err != nil {
				return err
			}
			sent, err := decodeWindow(v)
			if err != nil {
				return fmt.Errorf("store: corrupt window of lane %s: %w", quote(lane.String()), err)
			}
			out.Windows = append(out.Windows, Window{Lane: lane, Sent: sent})
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			out.Records = append(out.Records, r)
			return nil
		})
	})
	if err != nil {
		return LedgerRecords{}, err
	}
	return out, nil
}

func decodeWindow(v []byte) ([]Sent, error) {
	if len(v) == 0 || v[0] != valueVersion {
		return nil, errors.New("bad version")
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || n > uint64(len(v)) {
		return nil, errors.New("bad length")
	}
	rest := v[1+w:]
	out := make([]Sent, 0, n)
	for range n {
		if len(rest) < 9 {
			return nil, errors.New("truncated")
		}
		at := int64(binary.BigEndian.Uint64(rest))
		tok, w := binary.Uvarint(rest[8:])
		if w <= 0 || tok > 1<<62 {
			return nil, errors.New("bad tokens")
		}
		out = append(out, Sent{At: time.Unix(0, at).UTC(), Tokens: int64(tok)})
		rest = rest[8+w:]
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing bytes")
	}
	return out, nil
}

func encodeRecord(r Record) []byte {
	lk := laneKey(r.Lane)
	v := []byte{valueVersion}
	v = binary.AppendUvarint(v, uint64(len(lk)))
	v = append(v, lk...)
	v = append(v, r.Day...)
	v = binary.AppendUvarint(v, uint64(r.Units))
	v = binary.AppendUvarint(v, uint64(r.Covers))
	v = binary.BigEndian.AppendUint64(v, uint64(r.At.UnixNano()))
	v = binary.BigEndian.AppendUint64(v, uint64(r.Until.UnixNano()))
	return binary.AppendUvarint(v, uint64(r.PrevTokens))
}

func decodeRecord(v []byte) (Record, error) {
	bad := func(why string) (Record, error) {
		return Record{}, fmt.Errorf("store: corrupt ledger record %x: %s", v, why)
	}
	if len(v) == 0 || v[0] != valueVersion {
		return bad("version")
	}
	rest := v[1:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || n > uint64(len(rest)-w) {
		return bad("lane")
	}
	lane, err := decodeLaneKey(rest[w : w+int(n)])
	if err != nil {
		return bad("lane")
	}
	rest = rest[w+int(n):]
	if len(rest) < len(DayFormat) {
		return bad("day")
	}
	r := Record{Lane: lane, Day: string(rest[:len(DayFormat)])}
	if checkDay(r.Day) != nil {
		return bad("day")
	}
	rest = rest[len(DayFormat):]
	var nums [2]uint64
	for i := range nums {
		x, w := binary.Uvarint(rest)
		if w <= 0 || x > 1<<40 {
			return bad("count")
		}
		nums[i], rest = x, rest[w:]
	}
	r.Units, r.Covers = int(nums[0]), int(nums[1])
	if len(rest) < 16 {
		return bad("times")
	}
	r.At = time.Unix(0, int64(binary.BigEndian.Uint64(rest))).UTC()
	r.Until = time.Unix(0, int64(binary.BigEndian.Uint64(rest[8:]))).UTC()
	tok, w := binary.Uvarint(rest[16:])
	if w <= 0 || tok > 1<<62 || len(rest) != 16+w {
		return bad("tokens")
	}
	r.PrevTokens = int64(tok)
	return r, nil
}
