package bucket

import "time"

// windowNanos is the length of the sliding window RPM and TPM are counted over.
const windowNanos = int64(time.Minute)

// entry is one acquisition in a lane's sliding window.
type entry struct {
	at   int64 // unix nanoseconds
	tok  int64 // estimated (then actual) input tokens
	dead bool  // refunded: no longer counts
}

// window is the exact log of a lane's acquisitions in the last 60 s: a ring
// buffer of entries in acquisition order. It holds at most RPM live entries,
// so its memory is bounded by the lane's limit (plus refunded entries not yet
// expired).
type window struct {
	buf     []entry
	head    int    // index of the oldest entry
	n       int    // entries in buf
	headSeq uint64 // sequence number of buf[head]
	live    int    // entries not dead
	tokens  int64  // sum of tok over live entries
}

func (w *window) at(i int) *entry { return &w.buf[(w.head+i)%len(w.buf)] }

// expire drops entries that left the window (at <= now-60s) and dead ones at the head.
func (w *window) expire(now int64) {
	for w.n > 0 {
		e := &w.buf[w.head]
		if !e.dead && e.at+windowNanos > now {
			return
		}
		if !e.dead {
			w.live--
			w.tokens -= e.tok
		}
		*e = entry{}
		w.head++
		if w.head == len(w.buf) {
			w.head = 0
		}
		w.n--
		w.headSeq++
	}
}

// push appends an acquisition and returns its sequence number.
func (w *window) push(at, tok int64) uint64 {
	if w.n == len(w.buf) {
		w.grow()
	}
	i := w.head + w.n
	if i >= len(w.buf) {
		i -= len(w.buf)
	}
	w.buf[i] = entry{at: at, tok: tok}
	w.n++
	w.live++
	w.tokens += tok
	return w.headSeq + uint64(w.n) - 1
}

func (w *window) grow() {
	size := 2 * len(w.buf)
	if size < 16 {
		size = 16
	}
	buf := make([]entry, size)
	for i := 0; i < w.n; i++ {
		buf[i] = *w.at(i)
	}
	w.buf = buf
	w.head = 0
}

// find returns the entry with sequence number seq, or nil when it has left the window.
func (w *window) find(seq uint64) *entry {
	if seq < w.headSeq || seq >= w.headSeq+uint64(w.n) {
		return nil
	}
	return w.at(int(seq - w.headSeq))
}

// oldestLive returns the time of the oldest live entry; ok is false when there is none.
func (w *window) oldestLive() (int64, bool) {
	for i := 0; i < w.n; i++ {
		if e := w.at(i); !e.dead {
			return e.at, true
		}
	}
	return 0, false
}

// tokensFreeAt returns the earliest time at which the live tokens in the
// window leave room for need more under limit. Entries leave in log order
// (expire), and a slot moved later by Class.Restamp may hold the entries
// behind it: the first i have all left at the latest of their times.
func (w *window) tokensFreeAt(need, limit int64) int64 {
	sum, latest := w.tokens, int64(0)
	for i := 0; i < w.n; i++ {
		e := w.at(i)
		if e.dead {
			continue // dead entries leave at once
		}
		latest = max(latest, e.at)
		sum -= e.tok
		if sum+need <= limit {
			return latest + windowNanos
		}
	}
	return 0 // unreachable when need <= limit: an empty window has room
}
