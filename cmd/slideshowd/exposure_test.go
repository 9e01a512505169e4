package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRefusesOpenAPIOffLoopback: without SLIDESHOWD_TOKEN, serve
// refuses (exit 2, one line saying why and what to do) to listen on an
// address other machines can reach, before it opens the data directory;
// loopback without a token and any address with a token still serve.
func TestServeRefusesOpenAPIOffLoopback(t *testing.T) {
	refused := []struct {
		name, yaml string
		args       []string
		addr       string
	}{
		{"all IPv4 interfaces", "", []string{"-addr", "0.0.0.0:0"}, "0.0.0.0:0"},
		{"empty host", "", []string{"-addr", ":0"}, ":0"},
		{"all IPv6 interfaces", "", []string{"-addr", "[::]:0"}, "[::]:0"},
		{"config listen", "listen: 0.0.0.0:0\n", nil, "0.0.0.0:0"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+tt.yaml)
			data := filepath.Join(dir, "data")
			r := runServeUntilServing(t, dir, keyEnv("http://127.0.0.1:1", data), tt.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2; stderr %q", r.code, r.stderr)
			}
			want := "slideshowd serve: listen address " + tt.addr + " is not loopback and SLIDESHOWD_TOKEN is not set"
			if !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 ||
				!strings.Contains(r.stderr, "set SLIDESHOWD_TOKEN") || !strings.Contains(r.stderr, "listen on 127.0.0.1") {
				t.Errorf("stderr %q, want one line starting %q saying what to do", r.stderr, want)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("data directory touched before refusing: %v", err)
			}
		})
	}
	t.Run("loopback without token", func(t *testing.T) {
		dir := t.TempDir()
		writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
		d := startServeAt(t, dir, keyEnv("http://127.0.0.1:1", filepath.Join(dir, "data")), "localhost:0")
		if code, body := d.call(t, "GET", "/healthz", "", ""); code != 200 {
			t.Errorf("GET /healthz on localhost without a token: %d %s", code, body)
		}
	})
	t.Run("all interfaces with token", func(t *testing.T) {
		dir := t.TempDir()
		writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
		vars := keyEnv("http://127.0.0.1:1", filepath.Join(dir, "data"))
		vars["SLIDESHOWD_TOKEN"] = testToken
		d := startServeAt(t, dir, vars, "0.0.0.0:0")
		if strings.Contains(d.logs(), "SLIDESHOWD_TOKEN is not set") {
			t.Errorf("refusal logged with a token:\n%s", d.logs())
		}
	})
}

// runServeUntilServing runs serve to its end, or kills it when it logs that
// it serves (the exit code then is -1, and stderr is what it wrote).
func runServeUntilServing(t *testing.T, dir string, vars map[string]string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	cmd.Env = cmdEnv(t, vars)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "serving the HTTP API") {
			cmd.Process.Kill()
			cmd.Wait()
			return result{code: -1, stderr: stderr.String()}
		}
	}
	err = cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code: code, stderr: stderr.String()}
}

// TestREADMEOpenAPIRefusal: the refusal the README quotes is the one serve
// prints.
func TestREADMEOpenAPIRefusal(t *testing.T) {
	got := readmeBlock(t, "text", "is not loopback and SLIDESHOWD_TOKEN")
	if want := openAPIRefusal("0.0.0.0:8080") + "\n"; got != want {
		t.Errorf("README quotes\n%q\nserve prints\n%q", got, want)
	}
}
