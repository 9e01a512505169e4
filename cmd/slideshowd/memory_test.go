package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// residentPeak returns a process's peak resident memory (VmHWM), in bytes.
func residentPeak(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// maxResident is the stated bound on the daemon's peak resident memory
// under 32 concurrent 32 MiB bodies with the default limits (at most
// 2 x 32 MiB of bodies read and decoded at once). Before the bound it was
// 5.1 GB.
const maxResident = 1 << 30

// 32 concurrent 32 MiB submissions: each is answered (400 for the too-long
// text once decoded, or 503 with Retry-After over the bodies-in-flight
// bound) and the daemon's peak resident memory stays under maxResident.
func TestMemoryUnderLargeBodies(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	_, base := startEmulator(t, emulator.Faults{})
	dir := t.TempDir()
	d := startServe(t, dir, keyEnv(base, filepath.Join(dir, "data")))
	const size = 32 << 20
	prefix, suffix := `{"source":"big","slides":[{"text":"`, `"}],"images":1}`
	body := make([]byte, size-len(suffix))
	copy(body, prefix)
	for i := len(prefix); i < len(body); i++ {
		body[i] = 'a'
	}
	body = append(body, suffix...)
	if len(body) != size {
		t.Fatalf("body of %d bytes", len(body))
	}
	codes := make(map[int]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post("http://"+d.addr+"/v1/slideshows", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Errorf("POST: %v", err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	peak := residentPeak(t, d.cmd.Process.Pid)
	t.Logf("answers %v; peak resident memory %d MiB (bound %d MiB)", codes, peak>>20, maxResident>>20)
	for code := range codes {
		if code != 400 && code != 503 {
			t.Errorf("answer %d, want 400 or 503", code)
		}
	}
	if codes[400] == 0 {
		t.Error("no body was read")
	}
	if peak > maxResident {
		t.Errorf("peak resident memory %d MiB, over the bound of %d MiB", peak>>20, maxResident>>20)
	}
}
