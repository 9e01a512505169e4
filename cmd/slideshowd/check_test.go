package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

func TestCheck(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	t.Run("ok", func(t *testing.T) {
		dir := t.TempDir()
		writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "base_url: "+base+"\nkeys:\n  - {id: main, secret_env: K1, project: team}\n")
		r := runBin(t, dir, map[string]string{"K1": secrets[0], "SLIDESHOWD_DATA": filepath.Join(dir, "data")}, "check", "-online")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{"ok: slideshowd.yaml\n", "  keys: main@team\n",
			"data directory " + filepath.Join(dir, "data") + " does not exist yet; it will be created",
			"base URL " + base + " answers"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Contains(r.stdout+r.stderr, secrets[0]) {
			t.Error("check shows a secret")
		}
	})
	t.Run("every problem", func(t *testing.T) {
		dir := t.TempDir()
		writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), `base_url: http://127.0.0.1:1/
max_active: 0
keys:
  - {id: main, secret_env: K1}
  - {id: spare, secret_env: K2}
classes:
  image:
    rpm: -4
`)
		file := writeTestFile(t, filepath.Join(dir, "afile"), "x")
		r := runBin(t, dir, map[string]string{"K2": secrets[1], "SLIDESHOWD_DATA": file}, "check", "-online")
		want := []string{
			"slideshowd: config: slideshowd.yaml: line 2: max_active: 0: must be > 0 (leave it out for the default, 64)",
			`slideshowd: config: keys[0].secret_env: K1: not set in the environment (key "main")`,
			"slideshowd: config: classes.image.rpm: -4: must be > 0",
			"slideshowd: data: " + file + ": not a directory",
			"slideshowd: base_url: http://127.0.0.1:1/: not reachable: dial tcp 127.0.0.1:1: connect: connection refused",
			"slideshowd check: 5 problems",
		}
		if r.code != 2 || r.stderr != strings.Join(want, "\n")+"\n" || r.stdout != "" {
			t.Errorf("exit %d\nstderr:\n%s\nwant:\n%s\nstdout:\n%s", r.code, r.stderr, strings.Join(want, "\n"), r.stdout)
		}
	})
	t.Run("undecodable", func(t *testing.T) {
		dir := t.TempDir()
		writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "classes:\n  text:\n    rmp: 5\n")
		r := runBin(t, dir, nil, "check")
		want := "slideshowd: config: slideshowd.yaml: line 3: classes.text.rmp: unknown field\nslideshowd check: 1 problem\n"
		if r.code != 2 || r.stderr != want {
			t.Errorf("exit %d\n%q\nwant\n%q", r.code, r.stderr, want)
		}
	})
	// The environment's problems are found even when the file is not: one
	// line per problem.
	t.Run("undecodable and environment", func(t *testing.T) {
		dir := t.TempDir()
		writeTestFile(t, filepath.Join(dir, "c.yaml"), "listen: 127.0.0.1:18080\nfrobnicate: 1\n")
		vars := map[string]string{"SLIDESHOWD_TOKEN": "short", "GEMINI_BASE_URL": "ftp://example.com/", "GEMINI_API_KEYS": secrets[0] + ",,"}
		for _, args := range [][]string{{"check", "-config", "c.yaml"}, {"check", "-config", "missing.yaml"}} {
			r := runBin(t, dir, vars, args...)
			first := "slideshowd: config: c.yaml: line 2: frobnicate: unknown field"
			if args[2] == "missing.yaml" {
				first = "slideshowd: config: missing.yaml: no such file"
			}
			want := strings.Join([]string{first,
				"slideshowd: config: GEMINI_API_KEYS: entry 2 of 3 is empty",
				"slideshowd: config: GEMINI_API_KEYS: entry 3 of 3 is empty",
				`slideshowd: config: base_url: "ftp://example.com/": want an absolute http or https URL`,
				"slideshowd: config: SLIDESHOWD_TOKEN: 5 characters: must be at least 16 (the value is not shown)",
				"slideshowd check: 5 problems"}, "\n") + "\n"
			if r.code != 2 || r.stderr != want {
				t.Errorf("%v: exit %d\n%s\nwant\n%s", args, r.code, r.stderr, want)
			}
			if strings.Contains(r.stderr, secrets[0]) {
				t.Errorf("%v shows a secret", args)
			}
		}
	})
}

// batch -dry-run checks the batch file and prints the plan, without
// secrets, data directory or network.
func TestBatchDryRun(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), `keys:
  - {id: a, secret_env: KA, project: p1}
  - {id: b, secret_env: KB, project: p1}
  - {id: c, secret_env: KC}
classes:
  image:
    rpd: 4
`)
	batch := smallBatch(t, dir, 2, 5)
	r := runBin(t, dir, nil, "batch", batch, "-dry-run", "-out", "out")
	want := batch + `: 2 slideshows, valid; nothing is sent (dry run)
  [0] "Deck number 1" (normal, 2 slides): 1 analysis + 5 images -> out/01-deck-number-1
  [1] "Deck number 2" (normal, 2 slides): 1 analysis + 5 images -> out/02-deck-number-2
calls: 2 text, 10 image, over 3 keys in 2 projects
  text (gemini-3-flash-preview): 2 calls of 18,000/day (1,800 RPM); at least 1 minute at full RPM
  image (gemini-3-pro-image-preview): 10 calls of 8/day (36 RPM); at least 1 minute at full RPM; more than a day's quota: at least 2 Pacific days
Today's use is not counted here (slideshowd usage shows it); a re-run asks only for what is not stored yet.
`
	if r.code != 0 || r.stdout != want {
		t.Errorf("exit %d\n%s\nwant\n%s\n%s", r.code, r.stdout, want, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("a dry run opened the data directory")
	}
	// One of each: singular nouns.
	one := writeTestFile(t, filepath.Join(dir, "one.json"), `[{"source": "Solo", "slides": [{"text": "t"}], "images": 1}]`)
	r = runBin(t, dir, map[string]string{"GEMINI_API_KEYS": secrets[0]}, "batch", one, "-dry-run")
	want = one + `: 1 slideshow, valid; nothing is sent (dry run)
  [0] "Solo" (normal, 1 slide): 1 analysis + 1 image
calls: 1 text, 1 image, over 1 key in 1 project
  text (gemini-3-flash-preview): 1 call of 9,000/day (900 RPM); at least 1 minute at full RPM
  image (gemini-3-pro-image-preview): 1 call of 4/day (18 RPM); at least 1 minute at full RPM
Today's use is not counted here (slideshowd usage shows it); a re-run asks only for what is not stored yet.
`
	if r.code != 0 || r.stdout != want {
		t.Errorf("one of each: exit %d\n%s\nwant\n%s\n%s", r.code, r.stdout, want, r.stderr)
	}
	// A bad batch file is the same error as without -dry-run.
	bad := writeTestFile(t, filepath.Join(dir, "bad.json"), `[{"source": "s", "slides": [{"text": "t"}], "images": 25}]`)
	r = runBin(t, dir, nil, "batch", bad, "-dry-run")
	if r.code != 2 || r.stderr != "slideshowd: "+bad+": [0].images: 25: must be 1..20\n" {
		t.Errorf("bad batch: exit %d %q", r.code, r.stderr)
	}
}

// TestCheckBaseURLSecrets: a base URL's credentials (user information, a
// key in its query) are refused and shown by no line of check, -online's
// "not reachable" line included, whether the URL comes from the
// environment or the file.
func TestCheckBaseURLSecrets(t *testing.T) {
	const pw = "pw123secret"
	key := "AIzaSyA1234567890abcdefghijklmnopqrstuv"
	for _, tt := range []struct{ name, url, want string }{
		{"userinfo", "http://user:" + pw + "@127.0.0.1:1/", `base_url: "http://[REDACTED]@127.0.0.1:1/": must not carry credentials (user information before '@')`},
		{"key in query", "http://127.0.0.1:1/?key=" + key, `base_url: "http://127.0.0.1:1/?key=[REDACTED]": must not carry credentials (query parameter "key"`},
		{"token in query", "http://127.0.0.1:1/?t=1&token=" + pw, `base_url: "http://127.0.0.1:1/?t=[REDACTED]&token=[REDACTED]": must not carry credentials (query parameter "token"`},
	} {
		for _, from := range []string{"env", "file"} {
			t.Run(tt.name+" "+from, func(t *testing.T) {
				dir := t.TempDir()
				vars := map[string]string{"K1": secrets[0], "SLIDESHOWD_DATA": filepath.Join(dir, "data")}
				yaml := "keys:\n  - {id: main, secret_env: K1}\n"
				if from == "env" {
					vars["GEMINI_BASE_URL"] = tt.url
				} else {
					yaml += "base_url: '" + tt.url + "'\n"
				}
				writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), yaml)
				r := runBin(t, dir, vars, "check", "-online")
				out := r.stdout + r.stderr
				if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
					t.Errorf("exit %d, stderr lacks %q:\n%s", r.code, tt.want, out)
				}
				if !strings.Contains(r.stderr, ": not reachable: ") {
					t.Errorf("no online line:\n%s", out)
				}
				for _, s := range []string{pw, key, "user:", secrets[0]} {
					if strings.Contains(out, s) {
						t.Errorf("check shows %q:\n%s", s, out)
					}
				}
			})
		}
	}
}
