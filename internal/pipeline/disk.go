package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// noSpace reports whether err is a lack of space (ENOSPC, or EDQUOT: over
// the user's quota).
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		// bbolt does not always wrap the write's error.
		err != nil && (strings.Contains(err.Error(), "no space left on device") || strings.Contains(err.Error(), "disk quota exceeded"))
}

// diskError returns err wrapping ErrNoSpace when it is a lack of space.
func (p *Pipeline) diskError(err error) error {
	if err == nil || !noSpace(err) || errors.Is(err, ErrNoSpace) {
		return err
	}
	p.log.Error().Err(err).Msg("the data directory's disk is full: submits answer 507 until space is freed")
	err = fmt.Errorf("%w: %v", ErrNoSpace, err)
	p.probed(err)
	return err
}

// probed records the outcome of a real write as the latest probe, so that
// DiskHealth reports a full disk, and its end, at once.
func (p *Pipeline) probed(err error) {
	p.probe.mu.Lock()
	p.probe.at, p.probe.err = time.Now(), err
	p.probe.mu.Unlock()
}

// probeBytes is the size of the file DiskHealth writes: enough to fail on a
// nearly full disk, small enough to cost nothing.
const probeBytes = 64 << 10

// diskProbe caches the result of the last probe for probeEvery.
type diskProbe struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

const probeEvery = 2 * time.Second

// DiskHealth reports whether the data directory takes writes: it writes,
// syncs and removes a probe file of 64 KiB in jobs/ (at most every 2
// seconds; between, the last result). nil when it does; an error wrapping
// ErrNoSpace when the disk is full; another error when jobs/ cannot be
// written. Safe for concurrent use. Service resumes by itself: a submit is
// always attempted, and the next probe after space is freed reports nil.
func (p *Pipeline) DiskHealth() error {
	p.probe.mu.Lock()
	defer p.probe.mu.Unlock()
	if !p.probe.at.IsZero() && time.Since(p.probe.at) < probeEvery {
		return p.probe.err
	}
	p.probe.err = probeDir(p.jobsDir)
	p.probe.at = time.Now()
	return p.probe.err
}

// probeDir writes, syncs and removes a probe file in dir.
func probeDir(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return wrapSpace(fmt.Errorf("pipeline: %s is not writable: %w", dir, err))
	}
	name := f.Name()
	defer os.Remove(name)
	_, err = f.Write(make([]byte, probeBytes))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return wrapSpace(fmt.Errorf("pipeline: writing to %s: %w", filepath.Base(dir), err))
	}
	return nil
}

func wrapSpace(err error) error {
	if noSpace(err) {
		return fmt.Errorf("%w: %v", ErrNoSpace, err)
	}
	return err
}
