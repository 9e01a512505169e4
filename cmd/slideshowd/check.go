package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/internal/redact"
)

// googleBaseURL is the Gemini API's endpoint, checked by check -online when
// base_url is empty.
const googleBaseURL = "https://generativelanguage.googleapis.com/"

// checkTimeout bounds check -online's request to the base URL.
const checkTimeout = 10 * time.Second

func cmdCheck(ctx context.Context, e env, args []string) int {
	fs := newFlagSet("check", e)
	cfgPath := fs.String("config", "", "config file (default: slideshowd.yaml when present)")
	online := fs.Bool("online", false, "also check that the Gemini API base URL answers over the network")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: slideshowd check [-config FILE] [-online]")
		fmt.Fprintln(e.stderr, "Checks the configuration and the environment it names: every field, every key's secret_env set,")
		fmt.Fprintln(e.stderr, "the data directory writable, and with -online the base URL reachable. One line per problem;")
		fmt.Fprintln(e.stderr, "exit status 0 when there is none, 2 otherwise.")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) != 0 {
		fmt.Fprintf(e.stderr, "slideshowd check: unexpected argument %q\n", pos[0])
		return exitBadArgs
	}
	cfg, warnings, errs := config.Check(config.Options{Path: *cfgPath, Getenv: e.getenv, NeedSecrets: true})
	var problems []string
	for _, err := range errs {
		problems = append(problems, err.Error())
	}
	for _, w := range warnings {
		fmt.Fprintln(e.stderr, "slideshowd: warning:", w)
	}
	decoded := cfg.Data != "" // a file that cannot be decoded leaves nothing else to check
	var notes []string
	if decoded {
		note, problem := checkDataDir(cfg.Data)
		if problem != "" {
			problems = append(problems, problem)
		} else {
			notes = append(notes, note)
		}
		base := cfg.BaseURL
		if base == "" {
			base = googleBaseURL
		}
		shown := redact.URL(base, nil) // never the user information nor a query value
		if *online {
			if err := checkReachable(ctx, base); err != nil {
				problems = append(problems, fmt.Sprintf("base_url: %s: not reachable: %v", shown, err))
			} else {
				notes = append(notes, "base URL "+shown+" answers")
			}
		} else {
			notes = append(notes, "base URL "+shown+" (not contacted; -online checks it)")
		}
	}
	red := redactorOf(cfg)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(e.stderr, "slideshowd:", red.String(p))
		}
		s := "s"
		if len(problems) == 1 {
			s = ""
		}
		fmt.Fprintf(e.stderr, "slideshowd check: %d problem%s\n", len(problems), s)
		return exitBadArgs
	}
	file := cfg.File
	if file == "" {
		file = "no config file (defaults and the environment)"
	}
	fmt.Fprintf(e.stdout, "ok: %s\n", file)
	fmt.Fprintf(e.stdout, "  keys: %s\n", strings.Join(keyIDs(cfg), ", "))
	fmt.Fprintf(e.stdout, "  text: %s %d RPM %d/day per project; image: %s %d RPM %d/day per project\n",
		cfg.Classes.Text.Model, cfg.Classes.Text.RPM, cfg.Classes.Text.RPD, cfg.Classes.Image.Model, cfg.Classes.Image.RPM, cfg.Classes.Image.RPD)
	for _, n := range notes {
		fmt.Fprintln(e.stdout, " ", red.String(n))
	}
	if cfg.Token == "" {
		fmt.Fprintf(e.stdout, "  no %s: the HTTP API checks no token (bind it to loopback)\n", config.EnvToken)
	}
	return exitOK
}

// checkDataDir says whether dir can be the data directory: an existing
// directory where a file can be created, or a path whose nearest existing
// parent is such a directory (serve and batch create it).
func checkDataDir(dir string) (note, problem string) {
	exists, problem := dirProblem(dir)
	switch {
	case problem != "":
		return "", "data: " + dir + ": " + problem
	case !exists:
		return "data directory " + dir + " does not exist yet; it will be created", ""
	}
	note = "data directory " + dir + " is writable"
	if _, err := os.Stat(filepath.Join(dir, StoreFile)); err == nil {
		note += " (holds " + StoreFile + ")"
	}
	return note, ""
}

// dirProblem says whether a directory can be dir: an existing directory
// where a file can be created (exists), or a path whose nearest existing
// parent is such a directory, so that dir can be created. problem is empty
// when it can, else why not ("not a directory", "cannot be created: a is
// not a directory", "not writable: permission denied"), without dir. It
// creates nothing but a probe file, removed at once.
func dirProblem(dir string) (exists bool, problem string) {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return true, "not a directory"
	case err == nil:
		if err := probeWrite(dir); err != nil {
			return true, "not writable: " + fileProblem(err)
		}
		return true, ""
	case !missing(err):
		return false, fileProblem(err)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	for {
		fi, err := os.Stat(parent)
		if err == nil && fi.IsDir() {
			break
		}
		if err == nil || !missing(err) || parent == filepath.Dir(parent) {
			return false, fmt.Sprintf("cannot be created: %s is not a directory", parent)
		}
		parent = filepath.Dir(parent)
	}
	if err := probeWrite(parent); err != nil {
		return false, fmt.Sprintf("does not exist and cannot be created in %s: %s", parent, fileProblem(err))
	}
	return false, ""
}

// missing is whether err, from a Stat, says the path does not exist: no
// such file, or a part of it is not a directory (a/b with a a file), which
// the walk up to the nearest existing parent then names.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// probeWrite creates, syncs and removes a file in dir.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".slideshowd-check-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write([]byte("check\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkReachable makes one GET to base: any HTTP answer means reachable.
func checkReachable(ctx context.Context, base string) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	resp.Body.Close()
	return nil
}
