//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBatchImageNotRegularFile: an image path that names a FIFO or a
// device is refused before anything runs, naming the entry and path; a
// FIFO's open had blocked the check for ever (newcomer9 N9-3), /dev/null
// was read as an empty file.
func TestBatchImageNotRegularFile(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.png"), 0o600); err != nil {
		t.Skip("no FIFO here:", err)
	}
	for _, tt := range []struct{ image, want string }{
		{"/dev/null", `[0].slides[0].image: "/dev/null": not a regular file (a device)`},
		{"fifo.png", `[0].slides[0].image: "fifo.png": not a regular file (a named pipe)`},
	} {
		file := writeTestFile(t, filepath.Join(dir, "b.json"), `[{"source": "a", "slides": [{"text": "x", "image": "`+tt.image+`"}], "images": 2}]`)
		got := make(chan error, 1)
		go func() {
			_, err := readBatch(context.Background(), file)
			got <- err
		}()
		select {
		case err := <-got:
			if want := file + ": " + tt.want; err == nil || err.Error() != want {
				t.Errorf("%s: error %v, want %q", tt.image, err, want)
			}
		case <-time.After(time.Minute):
			os.WriteFile(filepath.Join(dir, tt.image), nil, 0) // let the blocked open end
			t.Fatalf("%s: the check still blocks after a minute", tt.image)
		}
	}
}

// TestBatchFirstSignalWhileChecking: a signal while the batch file is
// still read (here a FIFO that nothing writes, as a hung network file
// system would) stops the batch at once with 130: nothing runs yet, so
// there is nothing to let finish. One signal had been ignored; a second
// was needed (newcomer9 N9-3).
func TestBatchFirstSignalWhileChecking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "batch.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no FIFO here:", err)
	}
	defer func() { // the read left behind ends: the writer closes at once
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the first SIGINT or SIGTERM
	var stdout, stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"batch", fifo, "-dry-run"}, env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }})
	}()
	select {
	case c := <-code:
		if c != exitSignal {
			t.Errorf("exit %d, want %d; stderr: %s", c, exitSignal, stderr.String())
		}
		if want := "slideshowd: " + fifo + ": interrupted while checking the batch file; nothing was sent\n"; stderr.String() != want {
			t.Errorf("stderr %q, want %q", stderr.String(), want)
		}
		if strings.Contains(stdout.String(), "valid") {
			t.Errorf("stdout: %s", stdout.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("the batch still checks a minute after the signal")
	}
}
