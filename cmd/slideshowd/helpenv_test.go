package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestHelpNamesEveryEnvironmentVariable: `slideshowd help` names every
// variable of the README's environment table (it left out
// SLIDESHOWD_REDIS_URL).
func TestHelpNamesEveryEnvironmentVariable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	vars := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\|").FindAllStringSubmatch(string(b), -1)
	if len(vars) < 5 {
		t.Fatalf("README's environment table: %d variables found, want at least 5", len(vars))
	}
	var help strings.Builder
	usageText(&help)
	for _, v := range vars {
		if !strings.Contains(help.String(), v[1]) {
			t.Errorf("help does not name %s:\n%s", v[1], help.String())
		}
	}
}
