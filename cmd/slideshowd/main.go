// Command slideshowd turns slideshows into an analysis and new images with
// the Gemini API, through a pool of API keys whose quotas it keeps exactly.
//
//	slideshowd demo                       the sample batch on a built-in emulator; no keys needed
//	slideshowd batch FILE.json -out DIR   run a batch to the end (exit 0 all done, 1 some failed, 2 bad input)
//	slideshowd serve [-addr HOST:PORT]    the HTTP API
//	slideshowd usage                      the usage table (of the running daemon, else of the data directory)
//	slideshowd keys [enable|disable ID]   the API keys; put one back into service or take it out
//	slideshowd jobs [show|cancel ID]      list jobs (-state, -priority, -since), show or cancel one
//	slideshowd check [-online]            check the configuration, keys' variables, data directory, base URL
//	slideshowd store check|backup FILE|restore FILE   check, back up or restore the store
//	slideshowd emulate [-addr HOST:PORT]  the Gemini API emulator as a server
//	slideshowd version | help
//
// Configuration: slideshowd.yaml (or -config FILE) and the environment
// (GEMINI_API_KEYS, GEMINI_BASE_URL, SLIDESHOWD_DATA, SLIDESHOWD_TOKEN); see
// examples/slideshowd.yaml.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // some work failed, or a runtime error
	exitBadArgs = 2 // bad input: arguments, config, batch file
	exitSignal  = 130
)

func main() {
	ctx, stop := handleSignals(os.Stderr, os.Exit)
	code := run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// handleSignals returns a context that ends at the first SIGINT or SIGTERM;
// a second one calls exit(exitSignal) at once. The second signal is handled
// here rather than by restoring the default action: a process started with
// SIGINT ignored (a job in the background of a non-interactive shell) would
// get the ignored disposition back and never stop. Durable state survives
// the exit (every count is written ahead, outputs are renamed into place).
func handleSignals(stderr io.Writer, exit func(int)) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	c := make(chan os.Signal, 2)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-c:
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-c:
			fmt.Fprintf(stderr, "slideshowd: %v again: stopping at once\n", sig)
			exit(exitSignal)
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(c)
			close(done)
			cancel()
		})
	}
}

// env is the outside world of a command.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

type command struct {
	name, args, help string
	run              func(ctx context.Context, e env, args []string) int
}

func commands() []command {
	return []command{
		{"demo", "[-out DIR] [-batch FILE]", "run the sample batch on a built-in Gemini emulator (no keys needed)", cmdDemo},
		{"batch", "FILE.json -out DIR", "run a batch of slideshows to the end; re-running resumes and retries failures", cmdBatch},
		{"serve", "[-addr HOST:PORT]", "serve the HTTP API", cmdServe},
		{"usage", "[-json] [-addr HOST:PORT]", "print the usage table of the running daemon, else of the data directory", cmdUsage},
		{"keys", "[list | enable ID | disable ID]", "show the API keys, or enable or disable one (daemon, else data directory)", cmdKeys},
		{"jobs", "[list | show ID | cancel ID]", "list, show or cancel slideshow jobs (daemon, else data directory)", cmdJobs},
		{"lanes", "[list | resume CLASS PROJECT]", "show the lanes, or resume one stopped for no quota (daemon, else data directory)", cmdLanes},
		{"check", "[-online]", "check the configuration and the environment it names (exit 0 ok, 2 problems)", cmdCheck},
		{"store", "check | backup FILE | restore FILE", "check the store, copy it consistently, or restore a copy", cmdStore},
		{"emulate", "[-addr HOST:PORT] [flags]", "serve the Gemini API emulator (for offline rehearsal)", cmdEmulate},
		{"version", "", "print the version", cmdVersion},
		{"help", "", "print this help", nil},
	}
}

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		usageText(e.stderr)
		return exitBadArgs
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		usageText(e.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name && c.run != nil {
			return c.run(ctx, e, rest)
		}
	}
	fmt.Fprintf(e.stderr, "slideshowd: unknown command %q (see slideshowd help)\n", name)
	return exitBadArgs
}

func usageText(w io.Writer) {
	fmt.Fprintln(w, "slideshowd: slideshow analysis and images with the Gemini API, over a pool of keys.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: slideshowd COMMAND [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %-31s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every command but emulate and version takes -config FILE (default: slideshowd.yaml when present).")
	fmt.Fprintln(w, "Environment: GEMINI_API_KEYS (comma-separated SECRET or PROJECT:SECRET, ids key1..keyN), GEMINI_BASE_URL,")
	fmt.Fprintln(w, "SLIDESHOWD_DATA (data directory, default ./data), SLIDESHOWD_TOKEN (HTTP bearer token),")
	fmt.Fprintln(w, "SLIDESHOWD_REDIS_URL (redis:// or rediss:// URL: share the quota with other processes; see the README).")
	fmt.Fprintln(w, "Run 'slideshowd COMMAND -h' for a command's flags.")
}
