// Package redistest starts Debian's redis-server for tests: on a free
// loopback port, in a temporary directory, stopped when the test ends.
//
// # Basics
//
// Start(t) returns a running Server, or skips the test with a message naming
// the missing program when redis-server is not installed (CI installs it and
// sets SLIDESHOWD_REQUIRE_REDIS, so there a missing server fails the test;
// see .ci/run). Readiness comes from redis-server itself (systemd's notify
// protocol on a unix datagram socket): no polling, no sleeps. Stop and Start
// restart it on the same port; by default it persists nothing, so a restart
// comes back empty, as a Redis without persistence does after a crash;
// Kill stops it at once, as a crash of the Redis machine does.
//
// On Linux the server is started with a parent-death signal (SIGKILL): when
// the test binary dies, even by SIGKILL or a test timeout, its
// redis-servers die with it instead of lingering on their ports.
//
// A Server is safe for use by one test goroutine at a time.
package redistest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/internal/testutil"
)

// Program is the redis-server executable Start looks for in PATH.
const Program = "redis-server"

// RequireEnv, when set in the environment (CI sets it), makes Start fail
// the test instead of skipping it when redis-server is missing.
const RequireEnv = "SLIDESHOWD_REQUIRE_REDIS"

// Options configure a Server. The zero value starts a Redis that persists
// nothing.
type Options struct {
	// AppendOnly turns on the append-only file with appendfsync always, so a
	// restart keeps every write acknowledged before the stop.
	AppendOnly bool
	// Password, when set, is required of clients (requirepass).
	Password string
}

// Server is one redis-server process.
type Server struct {
	t    testing.TB
	opts Options
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
	log  *testutil.Buffer
}

// Start starts redis-server on a free loopback port and stops it when the
// test ends. It skips the test when redis-server is not installed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := exec.LookPath(Program); err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("redistest: %s is not installed and %s is set (CI): install it with apt-get install -y redis-server", Program, RequireEnv)
		}
		t.Skipf("redistest: %s is not installed (apt-get install -y redis-server); skipping a test that needs a real Redis", Program)
	}
	s := &Server{t: t, opts: opts, dir: t.TempDir()}
	var err error
	for range 5 { // another process may take the free port before redis-server binds it
		if s.port, err = freePort(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's redis:// URL, with the password when there is one.
func (s *Server) URL() string {
	if s.opts.Password != "" {
		return "redis://:" + s.opts.Password + "@" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// Running reports whether the server process is up.
func (s *Server) Running() bool { return s.cmd != nil }

// Stop stops the server (SIGTERM, then waits for it to exit). Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	<-s.done
	s.cmd = nil
}

// Kill stops the server at once (SIGKILL): nothing is saved on the way out.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts a stopped server again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatalf("redistest: Restart of a running server")
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// Pid returns the server's process id (0 when it is stopped).
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// RestartEmpty starts a stopped server again on the same port without what
// it persisted (its append-only and RDB files are removed first): a Redis
// that lost its disk, or one without persistence after a crash.
func (s *Server) RestartEmpty() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatalf("redistest: RestartEmpty of a running server")
	}
	for _, name := range []string{"appendonlydir", "appendonly.aof", "dump.rdb"} {
		if err := os.RemoveAll(filepath.Join(s.dir, name)); err != nil {
			s.t.Fatalf("redistest: %v", err)
		}
	}
	s.Restart()
}

// Log returns what redis-server has written so far.
func (s *Server) Log() string { return s.log.String() }

func (s *Server) start() error {
	notify := filepath.Join(s.dir, "notify.sock")
	_ = os.Remove(notify)
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer ln.Close()
	args := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port), "--dir", s.dir,
		"--supervised", "systemd", "--daemonize", "no", "--save", "",
		"--loglevel", "warning", "--logfile", "",
	}
	if s.opts.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	if s.log == nil {
		s.log = &testutil.Buffer{}
	}
	cmd := exec.Command(Program, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = dieWithParent()
	// The parent-death signal follows the thread that forked the server, so
	// one goroutine locked to its thread starts the server and waits for it:
	// the thread lives exactly as long as the server (a locked goroutine's
	// thread ends with it), and no other goroutine can end it earlier.
	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return err
	}
	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				ready <- err
				return
			}
			if bytes.Contains(buf[:n], []byte("READY=1")) {
				ready <- nil
				return
			}
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			_ = cmd.Process.Kill()
			<-done
			return err
		}
	case <-done:
		ln.Close()
		<-ready
		return fmt.Errorf("%s on port %d exited before it was ready: %s", Program, s.port, strings.TrimSpace(s.log.String()))
	case <-time.After(30 * time.Second): // a hung start, not a wait for readiness
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s on port %d: not ready after 30s: %s", Program, s.port, strings.TrimSpace(s.log.String()))
	}
	s.cmd, s.done = cmd, done
	return nil
}

// freePort returns a loopback TCP port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
