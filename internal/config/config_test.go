package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// env returns a Getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// load writes yaml to a temporary file and loads it with secrets.
func load(t *testing.T, yaml string, vars map[string]string) (Config, []string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "slideshowd.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(Options{Path: path, Getenv: env(vars), NeedSecrets: true})
}

const minimal = `
keys:
  - id: k1
    secret_env: K1
`

func TestDefaults(t *testing.T) {
	c, warn, err := load(t, minimal, map[string]string{"K1": "s3cr3t-one"})
	if err != nil {
		t.Fatal(err)
	}
	if len(warn) != 0 {
		t.Errorf("warnings %q, want none", warn)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, DefaultListen},
		{"data", c.Data, DefaultData},
		{"daily_critical", c.DailyCritical, 0.9},
		{"shutdown_grace", c.Grace(), 30 * time.Second},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, ""},
		{"text.model", c.Classes.Text.Model, "gemini-3-flash-preview"},
		{"text.rpm", c.Classes.Text.RPM, 900},
		{"text.rpd", c.Classes.Text.RPD, 9000},
		{"text.tpm", c.Classes.Text.TPM, 0},
		{"image.model", c.Classes.Image.Model, "gemini-3-pro-image-preview"},
		{"image.rpm", c.Classes.Image.RPM, 18},
		{"image.rpd", c.Classes.Image.RPD, 240},
		{"keys[0].project", c.Keys[0].Project, "k1"},
		{"keys[0].secret", c.Keys[0].Secret, "s3cr3t-one"},
		{"max_active", c.MaxActive, DefaultMaxActive},
		{"retention", c.Retention, Duration(0)},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	sc := c.Scheduler()
	if len(sc.Classes) != 2 || sc.Classes[1].Limits.RPM != 18 || sc.Keys[0].Project != "k1" {
		t.Errorf("scheduler config %+v", sc)
	}
	if err := sc.Validate(); err != nil {
		t.Errorf("scheduler config invalid: %v", err)
	}
	// Absent concurrency and burst reach the scheduler as 0: its defaults
	// (sized from the limits and the observed latency; a whole minute).
	for _, cl := range sc.Classes {
		if cl.Concurrency != 0 || cl.Burst != 0 {
			t.Errorf("class %s: concurrency %d, burst %d; want 0 and 0 (the scheduler's defaults)", cl.Name, cl.Concurrency, cl.Burst)
		}
	}
	withConc := c
	withConc.Classes.Text.Concurrency = 7
	if got := withConc.Scheduler().Classes[0].Concurrency; got != 7 {
		t.Errorf("text concurrency 7 reaches the scheduler as %d", got)
	}
	withBurst := c
	withBurst.Classes.Image.Burst = 5
	if got := withBurst.Scheduler().Classes[1].Burst; got != 5 {
		t.Errorf("image burst 5 reaches the scheduler as %d", got)
	}
	gc := c.Gemini()
	if gc.Keys[0].Secret != "s3cr3t-one" || gc.ImageModel != "gemini-3-pro-image-preview" {
		t.Errorf("gemini config %+v", gc)
	}
}

// TestShutdownGrace: an absent shutdown_grace means the default, an
// explicit 0 means stop at once, and the scheduler gets the same.
func TestShutdownGrace(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       time.Duration
		set        bool // the field is non-nil after Parse
	}{
		{"absent", minimal, DefaultShutdownGrace, false},
		{"null", minimal + "shutdown_grace:\n", DefaultShutdownGrace, false},
		{"zero", minimal + "shutdown_grace: 0\n", 0, true},
		{"zero seconds", minimal + "shutdown_grace: 0s\n", 0, true},
		{"quoted zero", minimal + "shutdown_grace: \"0\"\n", 0, true},
		{"one minute", minimal + "shutdown_grace: 1m\n", time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parsed, err := Parse("f.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := parsed.ShutdownGrace != nil; got != tt.set {
				t.Errorf("after Parse the field is set: %v, want %v", got, tt.set)
			}
			c, _, err := load(t, tt.yaml, map[string]string{"K1": "s3cr3t-one"})
			if err != nil {
				t.Fatal(err)
			}
			if c.ShutdownGrace == nil || time.Duration(*c.ShutdownGrace) != tt.want {
				t.Errorf("ShutdownGrace after Load = %v, want %v", c.ShutdownGrace, tt.want)
			}
			if got := c.Grace(); got != tt.want {
				t.Errorf("Grace() = %v, want %v", got, tt.want)
			}
			if got := c.Scheduler().ShutdownGrace; got != tt.want {
				t.Errorf("scheduler grace %v, want %v", got, tt.want)
			}
		})
	}
	// A Config built in Go: nil is the default, a pointer to 0 stops at once.
	if got := (Config{}).Grace(); got != DefaultShutdownGrace {
		t.Errorf("zero Config: Grace() = %v, want the default", got)
	}
	if got := (Config{ShutdownGrace: new(Duration)}).Grace(); got != 0 {
		t.Errorf("explicit 0: Grace() = %v, want 0", got)
	}
	if d := Default(); d.ShutdownGrace == nil || d.Grace() != DefaultShutdownGrace {
		t.Errorf("Default(): shutdown_grace %v", d.ShutdownGrace)
	}
}

func TestEnvironment(t *testing.T) {
	vars := map[string]string{
		EnvKeys:    " AAA-secret , BBB-secret,CCC-secret",
		EnvBaseURL: "http://127.0.0.1:9999/",
		EnvData:    "/var/lib/slideshowd",
		EnvToken:   "tok-0123456789abcdef",
	}
	c, _, err := load(t, minimal+"data: /elsewhere\nbase_url: https://example.com/\n", vars)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Keys) != 3 {
		t.Fatalf("keys %v, want 3 from %s", c.Keys, EnvKeys)
	}
	for i, k := range c.Keys {
		id := fmt.Sprintf("key%d", i+1)
		if k.ID != id || k.Project != id {
			t.Errorf("keys[%d] = %s/%s, want %s/%s", i, k.ID, k.Project, id, id)
		}
	}
	if c.Keys[0].Secret != "AAA-secret" {
		t.Errorf("secret not trimmed: %q", c.Keys[0].Secret)
	}
	if c.BaseURL != "http://127.0.0.1:9999/" || c.Data != "/var/lib/slideshowd" || c.Token != "tok-0123456789abcdef" {
		t.Errorf("overrides not applied: %q %q %q", c.BaseURL, c.Data, c.Token)
	}
}

// GEMINI_API_KEYS entries may name their project (PROJECT:SECRET): keys
// of one project share its lanes.
func TestEnvironmentProjects(t *testing.T) {
	c, _, err := load(t, minimal, map[string]string{EnvKeys: "team-a:AAA-secret, team-a:BBB-secret,CCC-secret"})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ id, project, secret string }{{"key1", "team-a", "AAA-secret"}, {"key2", "team-a", "BBB-secret"}, {"key3", "key3", "CCC-secret"}}
	if len(c.Keys) != len(want) {
		t.Fatalf("keys %v", c.Keys)
	}
	for i, w := range want {
		if k := c.Keys[i]; k.ID != w.id || k.Project != w.project || k.Secret != w.secret {
			t.Errorf("keys[%d] = %s/%s, want %s/%s", i, k.ID, k.Project, w.id, w.project)
		}
	}
}

func TestNoFile(t *testing.T) {
	t.Chdir(t.TempDir())
	c, _, err := Load(Options{Getenv: env(map[string]string{EnvKeys: "x"})})
	if err != nil {
		t.Fatal(err)
	}
	if c.File != "" || len(c.Keys) != 1 {
		t.Errorf("file %q keys %v", c.File, c.Keys)
	}
	if err := os.WriteFile(DefaultFile, []byte("listen: 127.0.0.1:1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err = Load(Options{Getenv: env(map[string]string{EnvKeys: "x"})})
	if err != nil {
		t.Fatal(err)
	}
	if c.File != DefaultFile || c.Listen != "127.0.0.1:1234" {
		t.Errorf("default file not read: file %q listen %q", c.File, c.Listen)
	}
}

func TestWithoutSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(minimal), 0o600)
	c, _, err := Load(Options{Path: path, Getenv: env(nil)})
	if err != nil {
		t.Fatalf("without NeedSecrets an unset secret_env is fine: %v", err)
	}
	if c.Keys[0].Secret != "" {
		t.Error("secret read without NeedSecrets")
	}
}

func TestLiteralSecretWarns(t *testing.T) {
	c, warn, err := load(t, "keys:\n  - id: k1\n    secret: literal-secret-value\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Keys[0].Secret != "literal-secret-value" {
		t.Errorf("secret %q", c.Keys[0].Secret)
	}
	if len(warn) != 1 || !strings.Contains(warn[0], `keys[0].secret (key "k1")`) {
		t.Errorf("warnings %q", warn)
	}
	for _, w := range warn {
		if strings.Contains(w, "literal-secret-value") {
			t.Errorf("warning shows the secret: %q", w)
		}
	}
	for _, s := range []string{c.Keys[0].String(), fmt.Sprintf("%v %+v %#v", c.Keys[0], c.Keys[0], c.Keys[0])} {
		if strings.Contains(s, "literal-secret-value") && !strings.Contains(s, "Secret:literal") {
			t.Errorf("formatting shows the secret: %q", s)
		}
	}
	if strings.Contains(fmt.Sprintf("%v %#v", c.Keys[0], c.Keys[0]), "literal-secret-value") {
		t.Errorf("%%v or %%#v shows the secret")
	}
}

func TestErrors(t *testing.T) {
	secret := "SUPER-SECRET-VALUE"
	vars := map[string]string{"K1": secret}
	tests := []struct {
		name string
		yaml string
		vars map[string]string
		want string // the whole error
	}{
		{"negative rpm", minimal + "classes:\n  image:\n    rpm: -3\n", vars,
			"config: classes.image.rpm: -3: must be > 0"},
		{"zero-ish rpd", minimal + "classes:\n  text:\n    rpd: -1\n", vars,
			"config: classes.text.rpd: -1: must be > 0"},
		{"zero rpm", minimal + "classes:\n  image:\n    rpm: 0\n", vars,
			"config: FILE: line 7: classes.image.rpm: 0: must be > 0 (leave it out for the default, 18)"},
		{"zero rpd", minimal + "classes:\n  text:\n    rpd: 0\n", vars,
			"config: FILE: line 7: classes.text.rpd: 0: must be > 0 (leave it out for the default, 9000)"},
		{"zero concurrency", minimal + "classes:\n  text:\n    concurrency: 0.0\n", vars,
			"config: FILE: line 7: classes.text.concurrency: 0.0: must be > 0 (leave it out to size it from the limits)"},
		{"zero max_active", minimal + "max_active: 0\n", vars,
			"config: FILE: line 5: max_active: 0: must be > 0 (leave it out for the default, 64)"},
		{"zero max_body_bytes", minimal + "max_body_bytes: 0\n", vars,
			"config: FILE: line 5: max_body_bytes: 0: must be at least 65536 (leave it out for the default, 33554432)"},
		{"zero daily_critical", minimal + "daily_critical: 0\n", vars,
			"config: FILE: line 5: daily_critical: 0: must be in (0, 1] (leave it out for the default, 0.9)"},
		{"tiny max_body_bytes", minimal + "max_body_bytes: 10\n", vars,
			"config: max_body_bytes: 10: must be at least 65536 (64 KiB)"},
		{"negative max_active", minimal + "max_active: -2\n", vars,
			"config: max_active: -2: must be > 0"},
		{"negative tpm", minimal + "classes:\n  text:\n    tpm: -5\n", vars,
			"config: classes.text.tpm: -5: must be >= 0 (0 = not enforced)"},
		{"concurrency", minimal + "classes:\n  image:\n    concurrency: -1\n", vars,
			"config: classes.image.concurrency: -1: must be > 0 (leave it out to size it from the limits)"},
		{"window margin", minimal + "classes:\n  text:\n    window_margin: 2m\n", vars,
			"config: classes.text.window_margin: 2m0s: must be >= 0 and under 1m"},
		{"negative window margin", minimal + "classes:\n  image:\n    window_margin: -1s\n", vars,
			"config: classes.image.window_margin: -1s: must be >= 0 and under 1m"},
		{"aspect ratio", minimal + "images:\n  aspect_ratio: 7:5\n", vars,
			`config: images.aspect_ratio: "7:5": want 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9 or 21:9`},
		{"image size", minimal + "images:\n  size: 8K\n", vars,
			`config: images.size: "8K": want 1K, 2K or 4K`},
		{"burst above rpm", minimal + "classes:\n  image:\n    burst: 19\n", vars,
			"config: classes.image.burst: 19: must be 0 (rpm: the whole minute) to rpm (18)"},
		{"unknown top-level field", minimal + "lissten: x\n", vars,
			"config: FILE: line 5: lissten: unknown field"},
		{"unknown nested field", minimal + "classes:\n  text:\n    rmp: 5\n", vars,
			"config: FILE: line 7: classes.text.rmp: unknown field"},
		{"unknown class", minimal + "classes:\n  video:\n    rpm: 5\n", vars,
			"config: FILE: line 6: classes.video: unknown field"},
		{"unknown key field", "keys:\n  - id: k1\n    secret_env: K1\n    projekt: p\n", vars,
			"config: FILE: line 4: keys[0].projekt: unknown field"},
		{"string for int", minimal + "classes:\n  image:\n    rpm: lots\n", vars,
			`config: FILE: line 7: classes.image.rpm: "lots": want an integer`},
		// Numbers that are not plain integers are refused, never truncated
		// (18.5 was read as 18, 1e2 as 100), as the HTTP API refuses
		// "images": 2.5 and 1e1.
		{"fraction for int", minimal + "classes:\n  image:\n    rpm: 18.5\n", vars,
			"config: FILE: line 7: classes.image.rpm: 18.5: want a whole number"},
		{"exponent for int", minimal + "classes:\n  image:\n    rpd: 1e2\n", vars,
			"config: FILE: line 7: classes.image.rpd: 1e2: want a whole number written in plain digits: 100"},
		{"whole float for int", minimal + "max_active: 64.0\n", vars,
			"config: FILE: line 5: max_active: 64.0: want a whole number written in plain digits: 64"},
		{"negative fraction", minimal + "classes:\n  text:\n    burst: -0.5\n", vars,
			"config: FILE: line 7: classes.text.burst: -0.5: want a whole number"},
		{"infinity for int", minimal + "max_body_bytes: .inf\n", vars,
			`config: FILE: line 5: max_body_bytes: ".inf": want a whole number`},
		{"fraction in a flow mapping", minimal + "backups: {keep: 2.5}\n", vars,
			"config: FILE: line 5: backups.keep: 2.5: want a whole number"},
		{"int past 64 bits", minimal + "classes:\n  image:\n    rpm: 99999999999999999999\n", vars,
			`config: FILE: line 7: classes.image.rpm: "99999999999999999999": out of range`},
		{"negative int past 64 bits", minimal + "max_connections: -99999999999999999999\n", vars,
			"config: FILE: line 5: max_connections: -99999999999999999999: out of range"},
		{"word for bool", minimal + "classes:\n  image:\n    probe: maybe\n", vars,
			`config: FILE: line 7: classes.image.probe: "maybe": want a boolean (true or false)`},
		{"list for classes", minimal + "classes: [1,2]\n", vars,
			"config: FILE: line 5: classes: a list: want a mapping of class names (text, image)"},
		{"block list for classes", minimal + "classes:\n  - 1\n  - 2\n", vars,
			"config: FILE: line 6: classes: a list: want a mapping of class names (text, image)"},
		{"scalar for class", minimal + "classes:\n  image: 5\n", vars,
			`config: FILE: line 6: classes.image: "5": want a mapping (model, rpm, rpd, tpm, concurrency, burst, probe, window_margin)`},
		{"list for log", minimal + "log: [json]\n", vars,
			"config: FILE: line 5: log: a list: want a mapping (format, level)"},
		{"mapping for keys", "keys: {k1: K1}\n", vars,
			"config: FILE: line 1: keys: a mapping: want a list"},
		{"mapping for string", minimal + "listen: {host: x}\n", vars,
			"config: FILE: line 5: listen: a mapping: want a string"},
		{"negative grace", minimal + "shutdown_grace: -1s\n", vars,
			"config: shutdown_grace: -1s: must be >= 0 (0 stops at once)"},
		{"negative retention", minimal + "retention: -24h\n", vars,
			"config: retention: -24h0m0s: must be >= 0 (0 keeps jobs for ever)"},
		{"bad retention", minimal + "retention: forever\n", vars,
			`config: FILE: line 5: retention: "forever": not a duration: want a string like 30s`},
		{"bad duration", minimal + "shutdown_grace: soon\n", vars,
			`config: FILE: line 5: shutdown_grace: "soon": not a duration: want a string like 30s`},
		{"syntax", "keys: [\n", vars,
			"config: FILE: line 1: did not find expected node content"},
		{"tab indentation", "keys:\n\t- id: k1\n", vars,
			"config: FILE: line 2: found character that cannot start any token"},
		{"not a mapping", "- a\n- b\n", vars,
			"config: FILE: line 1: want a mapping of settings (listen, keys, classes, ...)"},
		{"unset secret_env", minimal, nil,
			`config: keys[0].secret_env: K1: not set in the environment (key "k1")`},
		{"no secret at all", "keys:\n  - id: k1\n", vars,
			`config: keys[0].secret_env: empty for key "k1": name the environment variable that holds the key`},
		{"no keys", "listen: 127.0.0.1:8080\n", vars,
			"config: keys: none: set GEMINI_API_KEYS or list keys (id, secret_env) in the config file"},
		{"duplicate id", minimal + "  - id: k1\n    secret_env: K1\n", vars,
			`config: keys[1].id: "k1": duplicate key id`},
		{"bad id", "keys:\n  - id: 'a b'\n    secret_env: K1\n", vars,
			`config: keys[0].id: "a b": want 1 to 64 letters, digits, '.', '_' or '-'`},
		{"bad env name", "keys:\n  - id: k1\n    secret_env: 1X\n", vars,
			`config: keys[0].secret_env: "1X": not an environment variable name`},
		{"critical", minimal + "daily_critical: 1.5\n", vars,
			"config: daily_critical: 1.5: must be in (0, 1]"},
		{"listen", minimal + "listen: nowhere\n", vars,
			`config: listen: "nowhere": want host:port, e.g. 127.0.0.1:8080`},
		{"log format", minimal + "log:\n  format: xml\n", vars,
			`config: log.format: "xml": want "json" or "console" (or nothing: console on a terminal, else json)`},
		{"log level", minimal + "log:\n  level: loud\n", vars,
			`config: log.level: "loud": want trace, debug, info, warn or error`},
		{"base url", minimal + "base_url: ftp://x\n", vars,
			`config: base_url: "ftp://x": want an absolute http or https URL`},
		{"base url credentials", minimal + "base_url: https://u:" + secret + "@x/\n", vars,
			`config: base_url: "https://[REDACTED]@x/": must not carry credentials (user information before '@')`},
		{"base url key in query", minimal + "base_url: https://x/v1?alt=json&key=AIzaSyA1234567890abcdefghijklmnopqrstuv\n", vars,
			`config: base_url: "https://x/v1?alt=[REDACTED]&key=[REDACTED]": must not carry credentials (query parameter "key"; a Gemini API key goes in keys[].secret_env)`},
		{"base url key-shaped query value", minimal + "base_url: https://x/?q=AIzaSyA1234567890abcdefghijklmnopqrstuv\n", vars,
			`config: base_url: "https://x/?q=[REDACTED]": must not carry credentials (query parameter "q"; a Gemini API key goes in keys[].secret_env)`},
		{"base url token in query", minimal + "base_url: https://x/?access_token=" + secret + "\n", vars,
			`config: base_url: "https://x/?access_token=[REDACTED]": must not carry credentials (query parameter "access_token"; a Gemini API key goes in keys[].secret_env)`},
		{"empty env entry", minimal, map[string]string{EnvKeys: "a,,b"},
			"config: GEMINI_API_KEYS: entry 2 of 3 is empty"},
		{"bad env project", minimal, map[string]string{EnvKeys: "a,b c:" + secret},
			"config: GEMINI_API_KEYS: entry 2 of 2: the part before ':' must be a project id (1 to 64 letters, digits, '.', '_' or '-'); the value is not shown"},
		{"env project without key", minimal, map[string]string{EnvKeys: "a,team:"},
			`config: GEMINI_API_KEYS: entry 2 of 2: no key after ':' (want PROJECT:SECRET); the value is not shown`},
		{"env key with a stray colon", minimal, map[string]string{EnvKeys: "a," + secret + ":"},
			`config: GEMINI_API_KEYS: entry 2 of 2: no key after ':' (want PROJECT:SECRET); the value is not shown`},
		{"duplicate env entry across projects", minimal, map[string]string{EnvKeys: "p1:" + secret + ",p2:" + secret},
			"config: GEMINI_API_KEYS: entry 2 is the same key as entry 1"},
		{"duplicate env entry", minimal, map[string]string{EnvKeys: secret + "," + secret},
			"config: GEMINI_API_KEYS: entry 2 is the same key as entry 1"},
		{"short token", minimal, map[string]string{"K1": secret, EnvToken: "short-" + secret[:3]},
			"config: SLIDESHOWD_TOKEN: 9 characters: must be at least 16 (the value is not shown)"},
		{"token with space", minimal, map[string]string{"K1": secret, EnvToken: "a token with spaces inside"},
			"config: SLIDESHOWD_TOKEN: character 2: must be printable ASCII without spaces (the value is not shown)"},
		{"model", minimal + "classes:\n  text:\n    model: 'a/b'\n", vars,
			`config: classes.text.model: "a/b": not a model name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "slideshowd.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(Options{Path: path, Getenv: env(tt.vars), NeedSecrets: true})
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			want := strings.ReplaceAll(tt.want, "FILE", path)
			if err.Error() != want {
				t.Errorf("error\n got %q\nwant %q", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has several lines: %q", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %q", err)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, _, err := Load(Options{Path: filepath.Join(t.TempDir(), "nope.yaml"), Getenv: env(nil)})
	if err == nil || !strings.HasSuffix(err.Error(), "nope.yaml: no such file") {
		t.Errorf("error %v", err)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, body := range []string{"", "\n# only a comment\n", "~\n"} {
		c, err := Parse("x.yaml", []byte(body))
		if err != nil {
			t.Errorf("Parse(%q): %v", body, err)
		}
		if c.Listen != "" {
			t.Errorf("Parse(%q) set fields", body)
		}
	}
}

// TestExampleFile checks that examples/slideshowd.yaml, the documented
// example with every field, loads and is not all defaults.
func TestExampleFile(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "slideshowd.yaml")
	vars := map[string]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range c.Keys {
		if k.SecretEnv != "" {
			vars[k.SecretEnv] = "test-secret-" + k.ID
		}
	}
	full, _, err := Load(Options{Path: path, Getenv: env(vars), NeedSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Keys) < 2 || full.Keys[0].Project == full.Keys[0].ID && full.Keys[1].Project == full.Keys[1].ID {
		t.Errorf("the example should show keys sharing a project: %v", full.Keys)
	}
	// Every field of the example is spelled out: re-encoding the defaults
	// and parsing both shows no field is missing from it.
	for _, field := range []string{"listen:", "data:", "base_url:", "daily_critical:", "shutdown_grace:",
		"retention:", "max_body_bytes:", "max_active:", "log:", "format:", "level:", "keys:", "id:", "secret_env:",
		"project:", "classes:", "text:", "image:", "model:", "rpm:", "rpd:", "tpm:", "concurrency:", "burst:", "probe:", "window_margin:", "images:", "aspect_ratio:", "size:", "backups:", "interval:", "keep:", "max_connections:", "redis_url:", "cluster:"} {
		if !strings.Contains(string(data), field) {
			t.Errorf("example lacks %s", field)
		}
	}
}

// TestRetention: retention is a duration; absent or 0 keeps jobs for ever.
func TestRetention(t *testing.T) {
	vars := map[string]string{"K1": "s3cr3t-one"}
	for _, tt := range []struct {
		name string
		yaml string
		want time.Duration
	}{
		{"absent", minimal, 0},
		{"null", minimal + "retention:\n", 0},
		{"zero", minimal + "retention: 0\n", 0},
		{"thirty days", minimal + "retention: 720h\n", 720 * time.Hour},
		{"minutes", minimal + "retention: 90m\n", 90 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := load(t, tt.yaml, vars)
			if err != nil {
				t.Fatal(err)
			}
			if got := time.Duration(c.Retention); got != tt.want {
				t.Errorf("Retention = %v, want %v", got, tt.want)
			}
		})
	}
}

// Check reports every problem, one line each, in the file's order: explicit
// zeros, unset secrets, then invalid fields; Load reports the first.
func TestCheckEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slideshowd.yaml")
	yaml := `max_active: 0
daily_critical: 2
keys:
  - {id: a, secret_env: KA}
  - {id: b, secret_env: KB}
  - {id: a, secret_env: KC}
classes:
  image:
    rpm: -1
    size: 3
`
	yaml = strings.Replace(yaml, "    size: 3\n", "    tpm: -2\n", 1)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, errs := Check(Options{Path: path, Getenv: env(map[string]string{"KC": "x"}), NeedSecrets: true})
	want := []string{
		"config: " + path + ": line 1: max_active: 0: must be > 0 (leave it out for the default, 64)",
		`config: keys[0].secret_env: KA: not set in the environment (key "a")`,
		`config: keys[1].secret_env: KB: not set in the environment (key "b")`,
		"config: daily_critical: 2: must be in (0, 1]",
		"config: classes.image.rpm: -1: must be > 0",
		"config: classes.image.tpm: -2: must be >= 0 (0 = not enforced)",
		`config: keys[2].id: "a": duplicate key id`,
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, _, err := Load(Options{Path: path, Getenv: env(map[string]string{"KC": "x"}), NeedSecrets: true}); err == nil || err.Error() != want[0] {
		t.Errorf("Load: %v, want the first problem", err)
	}
}

// TestWindowMargin: an absent window_margin means the class's measured
// default, an explicit 0 turns it off, and the scheduler gets the value.
func TestWindowMargin(t *testing.T) {
	tests := []struct {
		name, yaml  string
		text, image time.Duration
	}{
		{"absent", minimal, DefaultTextWindowMargin, DefaultImageWindowMargin},
		{"zero", minimal + "classes:\n  text:\n    window_margin: 0s\n", 0, DefaultImageWindowMargin},
		{"set", minimal + "classes:\n  image:\n    window_margin: 300ms\n", DefaultTextWindowMargin, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := load(t, tt.yaml, map[string]string{"K1": "s3cr3t-one"})
			if err != nil {
				t.Fatal(err)
			}
			sc := c.Scheduler()
			if got := sc.Classes[0].WindowMargin; got != tt.text {
				t.Errorf("text margin %v, want %v", got, tt.text)
			}
			if got := sc.Classes[1].WindowMargin; got != tt.image {
				t.Errorf("image margin %v, want %v", got, tt.image)
			}
		})
	}
}

// TestWholeNumbers: every integer field of the file refuses a fraction and
// an exponent, naming the field and the value (the decoder truncated them:
// rpm 18.5 ran as 18), and takes a plain integer.
func TestWholeNumbers(t *testing.T) {
	want := []string{"backups.keep", "max_active", "max_body_bytes", "max_connections"}
	for _, class := range []string{"text", "image"} {
		for _, f := range []string{"burst", "concurrency", "rpd", "rpm", "tpm"} {
			want = append(want, "classes."+class+"."+f)
		}
	}
	var got []string
	for p := range intFields() {
		got = append(got, p)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("integer fields %q, want %q", got, want)
	}
	// nested writes path: value as nested YAML mappings.
	nested := func(path, value string) string {
		var b strings.Builder
		parts := strings.Split(path, ".")
		for i, p := range parts {
			b.WriteString(strings.Repeat("  ", i) + p + ":")
			if i < len(parts)-1 {
				b.WriteString("\n")
			}
		}
		return b.String() + " " + value + "\n"
	}
	vars := map[string]string{"K1": "s3cr3t-one"}
	for _, path := range want {
		for value, why := range map[string]string{
			"2.5":    "want a whole number",
			"1e2":    "want a whole number written in plain digits: 100",
			"7.0":    "want a whole number written in plain digits: 7",
			"-1.5e1": "want a whole number written in plain digits: -15",
		} {
			_, _, err := load(t, minimal+nested(path, value), vars)
			if err == nil || !strings.HasSuffix(err.Error(), ": "+path+": "+value+": "+why) {
				t.Errorf("%s: %s: error %v, want one ending %q", path, value, err, path+": "+value+": "+why)
			}
		}
		// A plain integer is not refused as a number (it may be out of the
		// field's range: then the error is not about being whole).
		_, _, err := load(t, minimal+nested(path, "70000"), vars)
		if err != nil && strings.Contains(err.Error(), "whole number") {
			t.Errorf("%s: 70000: %v", path, err)
		}
	}
	// Check reports each one, not the first only.
	path := filepath.Join(t.TempDir(), "f.yaml")
	os.WriteFile(path, []byte(minimal+"classes:\n  image:\n    rpm: 18.5\n    rpd: 1e2\n"), 0o600)
	_, _, errs := Check(Options{Path: path, Getenv: env(vars), NeedSecrets: true})
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "rpm: 18.5") || !strings.Contains(errs[1].Error(), "rpd: 1e2") {
		t.Errorf("Check: %q, want rpm's and rpd's", errs)
	}
	// Parse refuses them too.
	if _, err := Parse("f.yaml", []byte("max_active: 3.5\n")); err == nil || err.Error() != "config: f.yaml: line 1: max_active: 3.5: want a whole number" {
		t.Errorf("Parse: %v", err)
	}
	// Float fields and durations are not integer fields.
	if _, _, err := load(t, minimal+"daily_critical: 0.5\nshutdown_grace: 1.5s\n", vars); err != nil {
		t.Errorf("fractions where they belong: %v", err)
	}
}

// TestCheckEnvKeysEachEntry: a bad GEMINI_API_KEYS reports each bad entry
// by position, shows no part of any entry, and adds no "keys: none" line
// (the variable is set; the file's keys are replaced by it, not checked).
func TestCheckEnvKeysEachEntry(t *testing.T) {
	const s1, s2 = "AIzaSyA-first-secret-0123456789abcdef", "second-secret-value"
	path := filepath.Join(t.TempDir(), "f.yaml")
	os.WriteFile(path, []byte("keys:\n  - id: k1\n"), 0o600) // no secret_env: a problem of the file's keys
	vars := map[string]string{EnvKeys: s1 + ",, bad proj:" + s2 + "," + s1 + "," + s2 + ":"}
	for _, client := range []bool{false, true} {
		_, _, errs := Check(Options{Path: path, Getenv: env(vars), NeedSecrets: !client, Client: client})
		want := []string{
			"config: GEMINI_API_KEYS: entry 2 of 5 is empty",
			"config: GEMINI_API_KEYS: entry 3 of 5: the part before ':' must be a project id (1 to 64 letters, digits, '.', '_' or '-'); the value is not shown",
			"config: GEMINI_API_KEYS: entry 4 is the same key as entry 1",
			"config: GEMINI_API_KEYS: entry 5 of 5: no key after ':' (want PROJECT:SECRET); the value is not shown",
		}
		var got []string
		for _, e := range errs {
			got = append(got, e.Error())
			for _, secret := range []string{s1, s2, "bad proj"} {
				if strings.Contains(e.Error(), secret) {
					t.Errorf("shows an entry: %q", e)
				}
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("client %v: problems:\n%s\nwant:\n%s", client, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	// With a file that does not decode, the variable's entries are still
	// each reported after the file's problem.
	os.WriteFile(path, []byte("classes: [1]\n"), 0o600)
	_, _, errs := Check(Options{Path: path, Getenv: env(vars), NeedSecrets: true})
	if len(errs) != 5 {
		t.Errorf("undecodable file: %q, want its problem and the 4 entries'", errs)
	}
	if _, err := ParseEnvKeys("a,,b,"); err == nil || err.Error() != "config: GEMINI_API_KEYS: entry 2 of 4 is empty" {
		t.Errorf("ParseEnvKeys: %v, want the first bad entry", err)
	}
}
