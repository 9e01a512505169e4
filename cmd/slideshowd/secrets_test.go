package main

import (
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// A key put where it does not belong never shows in a start-up error: not
// as a URL's user name or password, a secret_env value, a listen address, a
// log level, an aspect ratio, a model name or the -addr flag.
func TestStartupErrorsHoldNoSecret(t *testing.T) {
	const key = "AIzaSyB0123456789abcdefghijklmnopqrstuv" // a key's shape: AIza + 35
	const password = "s3cretPassw0rd"
	tests := []struct {
		name, yaml string
		vars       map[string]string
		args       []string
	}{
		{"base url user", "", map[string]string{"GEMINI_BASE_URL": "http://" + key + "@127.0.0.1:18090/"}, nil},
		{"base url password", "", map[string]string{"GEMINI_BASE_URL": "http://u:" + key + "@127.0.0.1:18090/"}, nil},
		{"secret_env", "keys:\n  - id: main\n    secret_env: " + key + "\n", map[string]string{"GEMINI_API_KEYS": ""}, nil},
		{"listen", "listen: " + key + "\n", nil, nil},
		{"log.level", "log:\n  level: " + key + "\n", nil, nil},
		{"aspect ratio", "images:\n  aspect_ratio: " + key + "\n", nil, nil},
		{"text model", "classes:\n  text:\n    model: " + key + "/x\n", nil, nil},
		{"image model", "classes:\n  image:\n    model: " + key + "/x\n", nil, nil},
		{"rpm", "classes:\n  image:\n    rpm: " + key + "\n", nil, nil},
		{"unknown field", key + ": 1\n", nil, nil},
		// A key or a password typed where the port goes: net/url's error
		// quotes it ("invalid port \":...\" after host").
		{"base url port", "", map[string]string{"GEMINI_BASE_URL": "http://127.0.0.1:" + key + "/"}, nil},
		{"base_url port", "base_url: http://127.0.0.1:" + key + "/\n", nil, nil},
		{"redis_url port", "redis_url: redis://127.0.0.1:" + password + "/0\n", nil, nil},
		{"SLIDESHOWD_REDIS_URL port", "", map[string]string{"SLIDESHOWD_REDIS_URL": "redis://127.0.0.1:" + password + "/0"}, nil},
		// A key in the path: the HTTP client's errors would quote it.
		{"base url path", "", map[string]string{"GEMINI_BASE_URL": "http://127.0.0.1:18090/" + key + "/"}, nil},
		// A ';' hid the key parameter from the check (url.Values drops
		// the whole query).
		{"base url semicolon", "", map[string]string{"GEMINI_BASE_URL": "http://127.0.0.1:18090/?a=1;key=" + password}, nil},
		{"-addr", "", nil, []string{"-addr", key}},
		{"-addr host", "", nil, []string{"-addr", key + ":99999"}},
		{"configured secret in -addr", "", map[string]string{"GEMINI_API_KEYS": "plain-configured-secret"}, []string{"-addr", "plain-configured-secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), tt.yaml)
			vars := map[string]string{"GEMINI_API_KEYS": secrets[0], "SLIDESHOWD_DATA": filepath.Join(dir, "data")}
			for k, v := range tt.vars {
				vars[k] = v
			}
			r := runBin(t, dir, vars, append([]string{"serve"}, tt.args...)...)
			if r.code != exitBadArgs {
				t.Errorf("exit %d, want %d; stderr %q", r.code, exitBadArgs, r.stderr)
			}
			for _, s := range []string{key, "AIza", password, "plain-configured-secret", secrets[0]} {
				if strings.Contains(r.stderr+r.stdout, s) {
					t.Errorf("output shows %q: %s", s, r.stderr)
				}
			}
		})
	}
}

// A FIFO as config file is refused at once (it hung start-up).
func TestConfigFileChecks(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no FIFOs")
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	r := runBin(t, dir, map[string]string{"GEMINI_API_KEYS": secrets[0]}, "serve", "-config", fifo)
	if r.code != exitBadArgs || !strings.Contains(r.stderr, "not a regular file (a named pipe)") {
		t.Errorf("FIFO config: exit %d, stderr %q", r.code, r.stderr)
	}

}
