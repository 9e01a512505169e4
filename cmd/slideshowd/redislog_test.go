package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/internal/testutil"
)

// TestRedisLog: with useRedisLog, a go-redis client that fails to dial
// writes its message as one JSON line of the process's logger at warn (not
// go-redis's plain-text line on stderr), and the message goes through the
// process's redaction: no Redis password.
func TestRedisLog(t *testing.T) {
	const password = "redis-pa55word-of-the-test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every dial is refused
	cfg := config.Config{RedisURL: config.RedisURL("redis://:" + password + "@" + addr + "/0")}
	var buf testutil.Buffer
	useRedisLog(zerolog.New(&buf).With().Timestamp().Logger(), cfg)
	t.Cleanup(logging.Enable) // go-redis's own logger again for the other tests

	opts, err := cfg.RedisURL.Options()
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1 // one dial sequence: one message
	rc := redis.NewClient(opts)
	defer rc.Close()
	if err := rc.Ping(context.Background()).Err(); err == nil {
		t.Fatal("Ping answered with nothing listening")
	}
	// go-redis writes its line before Ping returns (the dial's own path).
	out := buf.String()
	if out == "" {
		t.Fatal("go-redis's failed dial did not reach the process's logger")
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1:\n%s", len(lines), out)
	}
	var line struct {
		Level, From, Message string
		Time                 string
	}
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatalf("not a JSON line: %v\n%s", err, lines[0])
	}
	if line.Level != "warn" || line.From != "go-redis" || line.Time == "" ||
		!strings.HasPrefix(line.Message, "connection pool: failed to dial after") || !strings.Contains(line.Message, addr) {
		t.Errorf("log line %s; want warn from go-redis: connection pool: failed to dial after ... %s", lines[0], addr)
	}
	// A message that holds the URL (go-redis's own text is not ours to
	// trust): the password never reaches the log.
	redisLog{log: zerolog.New(&buf), red: redactorOf(cfg)}.Printf(context.Background(), "redis: dial %s: %v", string(cfg.RedisURL), "refused")
	if out := buf.String(); strings.Contains(out, password) || !strings.Contains(out, "redis://[REDACTED]@"+addr) {
		t.Errorf("the password in the log, or the URL not redacted:\n%s", out)
	}
}

// TestRedisRefusedStderr: serve and batch started with a Redis that refuses
// connections stop with their one line, and every line before it on
// stderr is a JSON line of the process's log (go-redis's failed dials at
// warn), none of go-redis's plain-text lines ("redis: 2026/12/01 ...
// pool.go:770: ..."), and the password appears nowhere.
func TestRedisRefusedStderr(t *testing.T) {
	const password = "redis-pa55word-of-the-test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, command := range [][]string{{"serve", "-addr", "127.0.0.1:0"}, {"batch", "b.json", "-out", "out"}} {
		t.Run(command[0], func(t *testing.T) {
			dir := t.TempDir()
			smallBatch(t, dir, 1, 1)
			os.Rename(filepath.Join(dir, "batch.json"), filepath.Join(dir, "b.json"))
			r := runBin(t, dir, map[string]string{"GEMINI_API_KEYS": secrets[0],
				"SLIDESHOWD_REDIS_URL": "redis://:" + password + "@" + addr + "/0"}, command...)
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if r.code != 1 || !strings.HasPrefix(last, "slideshowd: redis_url redis://[REDACTED]@"+addr+"/0: ") {
				t.Fatalf("exit %d, last line %q; want 1 and the redis_url line\n%s", r.code, last, r.stderr)
			}
			warned := 0
			for _, l := range lines[:len(lines)-1] {
				var line struct{ Level, From, Message string }
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Errorf("not a JSON line on stderr: %q", l)
					continue
				}
				if line.From == "go-redis" && line.Level == "warn" && strings.Contains(line.Message, "failed to dial") {
					warned++
				}
			}
			if warned == 0 || strings.Contains(r.stderr, password) {
				t.Errorf("%d go-redis warn lines (want some), password shown: %v\n%s", warned, strings.Contains(r.stderr, password), r.stderr)
			}
		})
	}
}
