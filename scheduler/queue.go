package scheduler

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// task is a submitted job while the scheduler holds it.
type task struct {
	job       Job
	id        uint64
	ctx       context.Context
	stop      func() bool // unregisters the queued-cancellation hook
	handle    *Handle
	enqueued  time.Time // first submission: aging counts from here
	queuedAt  time.Time // latest (re)queue, for Waited
	deadline  time.Time // zero: none
	attempts  int       // attempts made
	failures  int       // transient failures so far
	notBefore time.Time
	canceled  bool // left the queue (context ended); skipped when met
	heapIdx   int
	lastErr   error
}

// deque is a FIFO of tasks with push at either end.
type deque struct {
	buf  []*task
	head int
	n    int
	live int // tasks not canceled
}

func (d *deque) grow() {
	size := max(16, 2*len(d.buf))
	buf := make([]*task, size)
	for i := 0; i < d.n; i++ {
		buf[i] = d.buf[(d.head+i)%len(d.buf)]
	}
	d.buf, d.head = buf, 0
}

func (d *deque) pushBack(t *task) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.buf[(d.head+d.n)%len(d.buf)] = t
	d.n++
	d.live++
}

func (d *deque) pushFront(t *task) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
	d.buf[d.head] = t
	d.n++
	d.live++
}

// front returns the first live task, dropping canceled ones.
func (d *deque) front() *task {
	for d.n > 0 {
		t := d.buf[d.head]
		if !t.canceled {
			return t
		}
		d.popFront()
	}
	return nil
}

func (d *deque) popFront() *task {
	t := d.buf[d.head]
	d.buf[d.head] = nil
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	if !t.canceled {
		d.live--
	}
	if d.n == 0 && len(d.buf) > 1024 {
		d.buf, d.head = nil, 0 // give a drained large queue's memory back
	}
	return t
}

// delayHeap holds tasks waiting for their backoff to end, by notBefore.
type delayHeap []*task

func (h *delayHeap) push(t *task) {
	t.heapIdx = len(*h)
	*h = append(*h, t)
	h.up(t.heapIdx)
}

func (h *delayHeap) pop() *task {
	old := *h
	t := old[0]
	last := len(old) - 1
	old.swap(0, last)
	old[last] = nil
	*h = old[:last]
	if last > 0 {
		h.down(0)
	}
	t.heapIdx = -1
	return t
}

func (h delayHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}

func (h delayHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h[j].notBefore.Before(h[i].notBefore) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h delayHeap) down(i int) {
	n := len(h)
	for {
		j := 2*i + 1
		if j >= n {
			return
		}
		if r := j + 1; r < n && h[r].notBefore.Before(h[j].notBefore) {
			j = r
		}
		if !h[j].notBefore.Before(h[i].notBefore) {
			return
		}
		h.swap(i, j)
		i = j
	}
}

// Handle follows a submitted job. It is safe for concurrent use.
type Handle struct {
	id    uint64
	class string
	run   *runner // its class, for Waiting
	t     *task   // for Withdraw
	done  chan struct{}
	state atomic.Int32
	start atomic.Int64 // estimated start, unix nanoseconds

	once sync.Once
	err  error // set before done is closed
}

// ID returns the job's id, unique within the scheduler.
func (h *Handle) ID() uint64 { return h.id }

// Class returns the job's class.
func (h *Handle) Class() string { return h.class }

// Done is closed when the job has ended.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Wait blocks until the job ends and returns its error (nil when it
// succeeded), or until ctx ends and returns ctx.Err(); the job goes on.
func (h *Handle) Wait(ctx context.Context) error {
	select {
	case <-h.done:
		return h.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Err returns the job's error once it has ended, and nil before.
func (h *Handle) Err() error {
	select {
	case <-h.done:
		return h.err
	default:
		return nil
	}
}

// State returns the job's current state.
func (h *Handle) State() State { return State(h.state.Load()) }

// EstimatedStart returns when the job is expected to start: the time a lane
// will have capacity for it given the jobs ahead of it. It is the zero Time
// once the job has started.
func (h *Handle) EstimatedStart() time.Time {
	n := h.start.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// finish ends the job once; it reports whether this call ended it. When it
// does, before is called (if not nil) before the job's waiters wake, so what
// it records (the final event) is there for whoever reads it after Wait.
func (h *Handle) finish(st State, err error, before func()) bool {
	ended := false
	h.once.Do(func() {
		h.err = err
		h.state.Store(int32(st))
		h.start.Store(0)
		if before != nil {
			before()
		}
		close(h.done)
		ended = true
	})
	return ended
}
