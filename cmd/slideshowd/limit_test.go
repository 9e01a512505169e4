package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// With every allowed connection held open (clients that send nothing),
// /healthz and /readyz still answer, on a reserved connection; other
// requests on reserved connections get 503.
func TestConnectionLimitKeepsHealth(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "max_connections: 2\n")
	d := startServe(t, dir, keyEnv(base, filepath.Join(dir, "data")))
	for range 2 {
		c, err := net.Dial("tcp", d.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + d.addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The kernel hands connections to Accept in order: the two idle ones
	// hold both slots before the first request below is accepted.
	if code, b := get("/healthz"); code != 200 || !strings.Contains(b, `"status":"ok"`) {
		t.Errorf("/healthz at the limit: %d %s", code, b)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz at the limit: %d", code)
	}
	if code, b := get("/v1/usage"); code != 503 || !strings.Contains(b, "connection limit reached") {
		t.Errorf("/v1/usage at the limit: %d %s", code, b)
	}
}
