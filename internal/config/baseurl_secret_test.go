package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A password or key typed where a URL's port goes is not quoted by the
// error (net/url's "invalid port \":PASSWORD\" after host" is); a key in
// the base URL's path is refused as one in its query is; a ';' in the
// query does not hide a credential parameter from the check.
func TestURLErrorsShowNoSecret(t *testing.T) {
	const key = "AIzaSyD-0123456789abcdefghijklmnopqrstu"
	const password = "s3cretPassw0rd"
	tests := []struct {
		name, yaml string
		vars       map[string]string
		want       string
	}{
		{"redis_url port", "redis_url: redis://redis.internal:" + password + "/0\n", nil,
			"config: redis_url: not a URL: invalid port after the host (want a number after ':') (the value is not shown)"},
		{"SLIDESHOWD_REDIS_URL port", "", map[string]string{EnvRedis: "redis://redis.internal:" + password + "/0"},
			"config: redis_url: not a URL: invalid port after the host"},
		{"redis_url bad escape", "redis_url: redis://redis.internal:6379/%zz" + password + "\n", nil,
			"config: redis_url: not a URL: invalid URL escape"},
		{"base_url port", "base_url: https://generativelanguage.googleapis.com:" + key + "\n", nil,
			"config: base_url: not a URL: invalid port after the host (want a number after ':') (the value is not shown)"},
		{"GEMINI_BASE_URL port", "", map[string]string{EnvBaseURL: "https://generativelanguage.googleapis.com:" + password},
			"config: base_url: not a URL: invalid port after the host"},
		{"base_url IP literal", "base_url: http://[" + password + "]/\n", nil,
			"config: base_url: not a URL: invalid IP literal in the host"},
		{"base_url key in the path", "base_url: http://127.0.0.1:18090/" + key + "/\n", nil,
			`config: base_url: "http://127.0.0.1:18090/[REDACTED]/": must not carry credentials (a part shaped like an API key`},
		{"GEMINI_BASE_URL key in the host", "", map[string]string{EnvBaseURL: "http://" + key + ".example/"},
			`config: base_url: "http://[REDACTED].example/": must not carry credentials (a part shaped like an API key`},
		{"base_url ';' before key", "base_url: http://127.0.0.1:18090/?a=1;key=" + password + "\n", nil,
			`config: base_url: "http://127.0.0.1:18090/?a=[REDACTED]": want a query of name=value pairs separated by '&'`},
		{"GEMINI_BASE_URL ';' after key", "", map[string]string{EnvBaseURL: "http://127.0.0.1:18090/?key=" + password + ";a=1"},
			`want a query of name=value pairs separated by '&'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			vars := map[string]string{EnvKeys: "k1:configured-secret"}
			for k, v := range tt.vars {
				vars[k] = v
			}
			for _, need := range []bool{true, false} {
				_, _, err := Load(Options{Path: path, Getenv: env(vars), NeedSecrets: need})
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Load = %v, want an error with %q", err, tt.want)
				}
				for _, s := range []string{key, "AIza", password} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error shows %q: %v", s, err)
					}
				}
			}
			if _, err := RedisURL(strings.TrimPrefix(strings.TrimSpace(tt.yaml), "redis_url: ")).Options(); strings.HasPrefix(tt.yaml, "redis_url") &&
				(err == nil || strings.Contains(err.Error(), password)) {
				t.Errorf("Options = %v", err)
			}
		})
	}
}
