package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// TestEmulateReceiveTimes: `slideshowd emulate` serves through
// emulator.RecordReceiveTimes: a body written while the handler is held
// reads as received when it was written, not when the handler read it.
func TestEmulateReceiveTimes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, entered, release, got := heldHandler()
	srv, ln := emulatorServer(h, ln)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()
	checkReceiveTimes(t, ln.Addr().String(), entered, release, got)
}

// TestDemoEmulatorReceiveTimes: `slideshowd demo` serves its emulator as
// `slideshowd emulate` does, with the kernel's receive times (it had
// served it on a plain listener: a request counted when the emulator got
// the CPU to read it).
func TestDemoEmulatorReceiveTimes(t *testing.T) {
	h, entered, release, got := heldHandler()
	addr, stop, err := startDemoEmulator(h)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	checkReceiveTimes(t, addr, entered, release, got)
}

// heldHandler returns a handler that says it entered, waits for release,
// reads the body and sends ReceivedAt and when it began to read.
func heldHandler() (h http.Handler, entered, release chan struct{}, got chan [2]time.Time) {
	entered, release = make(chan struct{}, 1), make(chan struct{})
	got = make(chan [2]time.Time, 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		start := time.Now()
		io.ReadAll(r.Body)
		got <- [2]time.Time{emulator.ReceivedAt(r), start}
	}), entered, release, got
}

// checkReceiveTimes sends held requests to addr until one reads as
// received when it was written.
func checkReceiveTimes(t *testing.T, addr string, entered, release chan struct{}, got chan [2]time.Time) {
	t.Helper()
	// The kernel turns receive stamping on asynchronously after the first
	// socket asks for it (the listener's, just now): the first requests
	// can come without a stamp and count when read. A few tries.
	for try := 1; ; try++ {
		w0, rx, start := heldRequest(t, addr, entered, release, got)
		if !rx.Before(w0.Add(-time.Millisecond)) && rx.Before(start) {
			t.Logf("try %d: received %v after the write began, %v before the handler read", try, rx.Sub(w0), start.Sub(rx))
			return
		}
		if try == 20 {
			t.Fatalf("ReceivedAt %v after the write began, %v before the handler read: want >= 0 and > 0", rx.Sub(w0), start.Sub(rx))
		}
	}
}

// heldRequest writes a request's body while the handler is held, holds it
// 50 ms more, and returns when the body was written and what the handler saw.
func heldRequest(t *testing.T, addr string, entered chan struct{}, release chan struct{}, got chan [2]time.Time) (w0, rx, start time.Time) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	io.WriteString(c, "POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: e\r\nContent-Length: 2\r\n\r\n")
	<-entered
	w0 = time.Now()
	io.WriteString(c, "{}")
	<-time.After(50 * time.Millisecond) // the bytes wait while the handler is held
	release <- struct{}{}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	g := <-got
	return w0, g[0], g[1]
}
