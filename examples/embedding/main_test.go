package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

func TestMain(m *testing.M) {
	// go.opencensus.io, imported by the SDK's dependencies, starts a worker
	// in an init function.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

// TestRun runs the README's program against the in-process emulator.
func TestRun(t *testing.T) {
	emu, err := emulator.New(emulator.Config{
		Keys: []emulator.Key{{Name: "key-1", Secret: emulatorSecret, Project: "project-a"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), &out, t.TempDir(), emulatorSecret, "http://emulator", &http.Client{Transport: emu.Transport()}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "4 image prompts; image 1: image/png, ") {
		t.Errorf("output %q", out.String())
	}
	// A wrong key is an error returned, not an index into an empty result.
	err = run(context.Background(), &out, t.TempDir(), "AIza-not-a-key-of-the-emulator", "http://emulator", &http.Client{Transport: emu.Transport()})
	if err == nil {
		t.Error("run with an unknown key returned no error")
	}
}

// readme returns the repository's README.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the README's text from the heading to the next "## ".
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q section", heading)
	}
	s := doc[i+len(heading)+2:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// TestREADMESnippet checks that the Go code the README shows under
// "Embedding the library" is, word for word, the body of run between its
// markers (de-indented one tab): the code this package compiles and
// TestRun runs.
func TestREADMESnippet(t *testing.T) {
	sec := section(t, readme(t), "## Embedding the library")
	m := regexp.MustCompile("(?s)```go\n(.*?)```").FindStringSubmatch(sec)
	if m == nil {
		t.Fatal("no ```go block under \"Embedding the library\"")
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	r := regexp.MustCompile("(?s)\n\t// README begin\n(.*?)\t// README end\n").FindSubmatch(src)
	if r == nil {
		t.Fatal("main.go has no README begin/end markers")
	}
	var want strings.Builder
	for _, line := range strings.SplitAfter(string(r[1]), "\n") {
		want.WriteString(strings.TrimPrefix(line, "\t"))
	}
	if m[1] != want.String() {
		t.Errorf("the README's embedding snippet differs from examples/embedding/main.go; README:\n%s\nmain.go:\n%s", m[1], want.String())
	}
}

// TestREADMEExamples checks that every example the README names exists as
// an Example function in its package's tests.
func TestREADMEExamples(t *testing.T) {
	sec := section(t, readme(t), "## Embedding the library")
	names := regexp.MustCompile("`((bucket|store|scheduler|gemini|emulator)\\.Example[A-Za-z_]*\\*?)`").FindAllStringSubmatch(sec, -1)
	if len(names) < 5 {
		t.Fatalf("found only %d example names in the README", len(names))
	}
	dirs := map[string]string{"bucket": "bucket", "store": "store", "scheduler": "scheduler", "gemini": "gemini", "emulator": "gemini/emulator"}
	for _, n := range names {
		pkg, name := n[2], strings.TrimPrefix(n[1], n[2]+".")
		pattern := "func " + regexp.QuoteMeta(strings.TrimSuffix(name, "*"))
		if strings.HasSuffix(name, "*") {
			pattern += `[A-Za-z_]*\(\)`
		} else {
			pattern += `\(\)`
		}
		re := regexp.MustCompile(pattern)
		files, _ := filepath.Glob(filepath.Join("..", "..", dirs[pkg], "*_test.go"))
		found := false
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err == nil && re.Match(b) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("the README names %s, but %s has no such example", n[1], dirs[pkg])
		}
	}
}
