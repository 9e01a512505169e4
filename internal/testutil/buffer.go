// Package testutil holds helpers shared by the tests of several packages.
// Only tests (and test-support packages such as internal/redistest) import
// it; nothing of slideshowd's own code does.
package testutil

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent use: a log sink or a child
// process's output that goroutines write while the test reads it. The zero
// value is an empty buffer ready to use. Write never fails.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
