package config

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"go.yaml.in/yaml/v3"
)

// leafPaths returns the YAML path of every leaf field of t (a struct), with
// index 0 for lists: generated from the type, so a new field is swept too.
func leafPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" {
			continue
		}
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			out = append(out, leafPaths(ft, p)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, leafPaths(ft.Elem(), p+"[0]")...)
		default:
			out = append(out, p)
		}
	}
	return out
}

// set puts v at path (dotted, with [0] for the first list item) in m.
func set(m map[string]any, path string, v any) {
	head, rest, nested := strings.Cut(path, ".")
	if name, ok := strings.CutSuffix(head, "[0]"); ok {
		list, _ := m[name].([]any)
		if len(list) == 0 {
			list = []any{map[string]any{}}
			m[name] = list
		}
		item := list[0].(map[string]any)
		if nested {
			set(item, rest, v)
		}
		return
	}
	if !nested {
		m[head] = v
		return
	}
	sub, _ := m[head].(map[string]any)
	if sub == nil {
		sub = map[string]any{}
		m[head] = sub
	}
	set(sub, rest, v)
}

// TestNoSecretInErrors plants a secret in every field of the config (and in
// the environment variables Load reads) and checks that no error of Load,
// Parse or Validate shows it. The secret is an API-key-shaped string, a
// literal secret of another key, the value of a key's secret_env variable,
// an entry of GEMINI_API_KEYS and the token.
func TestNoSecretInErrors(t *testing.T) {
	const shaped = "AIzaSyPLANTEDplantedPLANTEDplanted12345"
	const literal = "literal-secret-of-k2"
	const fromEnv = "secret-of-k1-from-env"
	variants := []struct {
		name, secret string
		base         func() map[string]any
		vars         map[string]string
	}{
		{"key-shaped", shaped, func() map[string]any {
			return map[string]any{"keys": []any{map[string]any{"id": "k1", "secret_env": "K1"}}}
		}, map[string]string{"K1": "other"}},
		{"literal secret", literal, func() map[string]any {
			return map[string]any{"keys": []any{map[string]any{"id": "k1", "secret_env": "K1"}, map[string]any{"id": "k2", "secret": literal}}}
		}, map[string]string{"K1": "other"}},
		{"secret_env value", fromEnv, func() map[string]any {
			return map[string]any{"keys": []any{map[string]any{"id": "k1", "secret_env": "K1"}, map[string]any{"id": "k2", "secret_env": "K2"}}}
		}, map[string]string{"K1": "other", "K2": fromEnv}},
		{"GEMINI_API_KEYS entry", fromEnv, func() map[string]any { return map[string]any{} },
			map[string]string{EnvKeys: "a," + fromEnv + "," + fromEnv}},
		{"token", fromEnv + "-token", func() map[string]any {
			return map[string]any{"keys": []any{map[string]any{"id": "k1", "secret_env": "K1"}}}
		}, map[string]string{"K1": "other", EnvToken: fromEnv + "-token"}},
	}
	paths := leafPaths(reflect.TypeFor[Config](), "")
	if len(paths) < 20 {
		t.Fatalf("only %d config fields found: %q", len(paths), paths)
	}
	errorsSeen := 0
	check := func(t *testing.T, what, secret string, err error) {
		t.Helper()
		if err == nil {
			return
		}
		errorsSeen++
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the secret: %v", what, err)
		}
		if strings.Contains(err.Error(), "AIza") {
			t.Errorf("%s: error shows a key-shaped string: %v", what, err)
		}
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			values := []any{v.secret, " " + v.secret, []any{v.secret}, map[string]any{v.secret: v.secret},
				"http://" + v.secret + "@127.0.0.1:1/", "http://u:" + v.secret + "@127.0.0.1:1/", "x" + v.secret}
			var cases []map[string]any
			for _, p := range paths {
				for _, val := range values {
					m := v.base()
					set(m, p, val)
					cases = append(cases, m)
				}
			}
			// An unknown field named by the secret, and one holding it.
			for _, p := range []string{v.secret, "log." + v.secret, "keys[0]." + v.secret} {
				m := v.base()
				set(m, p, 1)
				cases = append(cases, m)
			}
			for i, m := range cases {
				b, err := yaml.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, "c.yaml")
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				for _, need := range []bool{true, false} {
					_, _, err := Load(Options{Path: path, Getenv: env(v.vars), NeedSecrets: need})
					check(t, "Load of case "+string(rune('0'+i%10))+":\n"+string(b), v.secret, err)
				}
				// Broken YAML around the secret.
				broken := append(append([]byte(nil), b...), []byte("\n  bad: [\n"+v.secret)...)
				_, err = Parse("c.yaml", broken)
				check(t, "Parse", v.secret, err)
			}
			// Environment overrides.
			for _, e := range []map[string]string{
				{EnvBaseURL: "http://" + v.secret + "@127.0.0.1:18090/"},
				{EnvBaseURL: "http://u:" + v.secret + "@127.0.0.1:18090/"},
				{EnvBaseURL: "ftp://" + v.secret},
				{EnvBaseURL: "http://[" + v.secret},
				{EnvKeys: v.secret + ", ," + v.secret},
				{EnvToken: v.secret[:10]},
			} {
				vars := map[string]string{}
				for k, x := range v.vars {
					vars[k] = x
				}
				for k, x := range e {
					vars[k] = x
				}
				b, _ := yaml.Marshal(v.base())
				path := filepath.Join(dir, "c.yaml")
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				_, _, err := Load(Options{Path: path, Getenv: env(vars), NeedSecrets: true})
				check(t, "Load with environment", v.secret, err)
			}
		})
	}
	if errorsSeen < len(paths)*len(variants) {
		t.Errorf("only %d errors for %d fields: the sweep does not reach the error paths", errorsSeen, len(paths))
	}
}

func TestConfigFileKinds(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Load(Options{Path: dir, Getenv: env(nil)}); err == nil || !strings.Contains(err.Error(), "not a regular file (a directory)") {
		t.Errorf("directory: %v", err)
	}
	if runtime.GOOS == "windows" {
		return
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// Without O_NONBLOCK this open blocks for ever (no writer).
	if _, _, err := Load(Options{Path: fifo, Getenv: env(nil)}); err == nil || !strings.Contains(err.Error(), "not a regular file (a named pipe)") {
		t.Errorf("FIFO: %v", err)
	}
}

func TestLiteralSecretReadableWarning(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o640, true}, {0o604, true}, {0o644, true}} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte("keys:\n  - id: k1\n    secret: s3cr3t-literal\n"), tt.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tt.mode); err != nil { // umask
			t.Fatal(err)
		}
		_, warnings, err := Load(Options{Path: path, Getenv: env(nil), NeedSecrets: true})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Contains(strings.Join(warnings, "\n"), "readable by others")
		if got != tt.warn {
			t.Errorf("mode %04o: warnings %q, want the readable warning: %v", tt.mode, warnings, tt.warn)
		}
		for _, w := range warnings {
			if strings.Contains(w, "s3cr3t-literal") {
				t.Errorf("warning shows the secret: %q", w)
			}
		}
	}
}
