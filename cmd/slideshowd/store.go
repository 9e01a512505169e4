package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/store"
)

// Files of the data directory besides the store.
const (
	// usedMarker is written at the store's first open: a data directory
	// that has it (or job folders) but no store lost its store.
	usedMarker = "slideshowd.db.created"
	// backupDir holds the daemon's rolling backups.
	backupDir = "backups"
	// holderNote says which slideshowd holds the store open (serve and its
	// address, or batch), so that a command refused by the lock can say
	// how to reach it; written after the store opened, removed at close.
	holderNote = "slideshowd.db.holder"
)

// writeHolder writes the holder note of the data directory: what holds its
// store ("serve 127.0.0.1:8080", "batch") and the process id. A failure is
// logged: the note only words the advice of a command refused by the lock.
func (d *daemon) writeHolder(what string) {
	line := fmt.Sprintf("%s pid %d\n", what, os.Getpid())
	if err := os.WriteFile(filepath.Join(d.cfg.Data, holderNote), []byte(line), 0o600); err != nil {
		d.log.Warn().Err(err).Msg("cannot write the data directory's holder note")
		return
	}
	d.holder = true
}

// lockedError words why a client command that found no daemon (at u, when
// known: daemonErr) cannot read the data directory's store at path: it is
// locked. The holder note says by what, and so how to get what the command
// wanted (want: "the usage", "the keys"): a batch serves nothing, so only
// the data directory once it ends (or, with redis_url, a daemon of the
// cluster) has it; a daemon is asked at the address it serves on. Without
// a note (a store held by another command, or by a version that wrote
// none) it gives both ways.
func lockedError(data, path, u string, daemonErr error, want string) error {
	note, _ := os.ReadFile(filepath.Join(data, holderNote))
	f := strings.Fields(string(note))
	at := ""
	if u != "" {
		at = " at " + u
	}
	switch {
	case len(f) == 3 && f[0] == "batch" && f[1] == "pid":
		return fmt.Errorf("%s is locked by a running slideshowd batch (pid %s), which serves no HTTP API (no daemon answered%s: %v): %s can be read from the data directory once the batch ends (with redis_url, a daemon of the cluster shows the cluster's use: give its -addr HOST:PORT)",
			path, f[2], at, daemonErr, want)
	case len(f) == 4 && f[0] == "serve" && f[2] == "pid" && u != "" && strings.Contains(u, "//"+f[1]+"/"):
		return fmt.Errorf("%s is locked by a running slideshowd serve (pid %s) that did not answer at its address %s (%v): it may be stopping or overloaded; try again",
			path, f[3], u, daemonErr)
	case len(f) == 4 && f[0] == "serve" && f[2] == "pid":
		return fmt.Errorf("%s is locked by a running slideshowd serve (pid %s) serving on %s, not asked there (no daemon answered%s: %v): give it with -addr %s",
			path, f[3], f[1], at, daemonErr, f[1])
	}
	return fmt.Errorf("%s is locked by a running slideshowd that did not answer%s (%v): if it is a daemon serving on another address (its serve -addr), give it with -addr HOST:PORT; if it is a batch, which serves nothing, %s can be read from the data directory once it ends",
		path, at, daemonErr, want)
}

// checkStorePresent refuses a missing store in a data directory that shows
// earlier use: that is damage (a lost file), not a new store.
func checkStorePresent(data string) error {
	path := filepath.Join(data, StoreFile)
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var why string
	if _, err := os.Stat(filepath.Join(data, usedMarker)); err == nil {
		why = "the data directory was used before (" + usedMarker + ")"
	} else if ents, err := os.ReadDir(filepath.Join(data, "jobs")); err == nil && len(ents) > 0 {
		why = fmt.Sprintf("the data directory holds %d job folders", len(ents))
	} else {
		return nil
	}
	return &store.DamagedError{Path: path, Problem: "missing, but " + why + ": its jobs and day counts are gone; restore a backup (slideshowd store restore FILE) or move the data directory aside to start anew"}
}

// markUsed writes the marker of a used data directory once.
func markUsed(data string) error {
	p := filepath.Join(data, usedMarker)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return os.WriteFile(p, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600)
}

func cmdStore(ctx context.Context, e env, args []string) int {
	fs := newFlagSet("store", e)
	cfgPath := fs.String("config", "", "config file (default: slideshowd.yaml when present)")
	addr := fs.String("addr", "", "address of the running daemon, for backup (default: the config's listen)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: slideshowd store check | backup FILE | restore FILE [-addr HOST:PORT] [-config FILE]")
		fmt.Fprintln(e.stderr, "  check          check the store file (read-only; the daemon must not be running): exit 0 ok, 2 damaged, 1 in use")
		fmt.Fprintln(e.stderr, "  backup FILE    write a consistent copy (through the running daemon at -addr or listen, else read-only)")
		fmt.Fprintln(e.stderr, "  restore FILE   replace the store with a backup (the daemon must be stopped)")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) == 0 {
		fs.Usage()
		return exitBadArgs
	}
	cfg, _, ok := loadConfig(e, *cfgPath, forClient)
	if !ok {
		return exitBadArgs
	}
	if !addrOK(e, cfg, "store", *addr) {
		return exitBadArgs
	}
	if *addr != "" {
		cfg.Listen = *addr
	}
	path := filepath.Join(cfg.Data, StoreFile)
	sub, rest := pos[0], pos[1:]
	want := 1
	if sub == "check" {
		want = 0
	}
	if len(rest) != want {
		fs.Usage()
		return exitBadArgs
	}
	switch sub {
	case "check":
		if err := checkStorePresent(cfg.Data); err != nil {
			fmt.Fprintln(e.stderr, "slideshowd:", redactError(cfg, err))
			return exitBadArgs
		}
		if err := store.Verify(path, store.Options{Timeout: 500 * time.Millisecond}); err != nil {
			if errors.Is(err, store.ErrLocked) {
				fmt.Fprintf(e.stderr, "slideshowd: %s is in use by a running slideshowd: store check cannot check a store in use (exit 1); stop the daemon, or check a copy (store backup checks each copy it writes)\n", path)
				return exitFailed
			}
			if errors.Is(err, store.ErrDamaged) {
				fmt.Fprintln(e.stderr, "slideshowd:", damagedLine(cfg, err))
				return exitBadArgs
			}
			fmt.Fprintln(e.stderr, "slideshowd:", redactError(cfg, err))
			return exitFailed
		}
		fmt.Fprintf(e.stdout, "%s: ok\n", path)
		return exitOK
	case "backup":
		if problem := backupDestProblem(rest[0]); problem != "" {
			fmt.Fprintln(e.stderr, redactorOf(cfg).String(fmt.Sprintf("slideshowd store backup: %s: %s", rest[0], problem)))
			return exitBadArgs
		}
		n, of, via, err := backupStore(ctx, cfg, rest[0])
		if err != nil {
			fmt.Fprintln(e.stderr, "slideshowd:", redactError(cfg, err))
			return exitFailed
		}
		fmt.Fprintf(e.stdout, "%s: %d bytes, a consistent copy of %s (%s)\n", rest[0], n, of, via)
		return exitOK
	case "restore":
		msg, code := restoreStore(cfg, rest[0], time.Now())
		if code != exitOK {
			fmt.Fprintln(e.stderr, "slideshowd:", redactError(cfg, errors.New(msg)))
			return code
		}
		fmt.Fprintln(e.stdout, msg)
		return exitOK
	}
	fmt.Fprintf(e.stderr, "slideshowd store: unknown subcommand %q (check, backup or restore)\n", sub)
	return exitBadArgs
}

// backupDestProblem says why dest cannot take a backup ("" when it can):
// a directory, or a file in a directory that does not exist or where no
// file can be created. Found before the copy is made (exit 2), not when
// its temporary file is opened or renamed (exit 1, "rename d.tmp d: file
// exists").
func backupDestProblem(dest string) string {
	if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
		return "a directory: want the copy's file name"
	}
	dir := filepath.Dir(dest)
	exists, problem := dirProblem(dir)
	switch {
	case problem != "":
		return "cannot be written in " + dir + ": " + problem
	case !exists:
		return "cannot be written: " + dir + " does not exist"
	}
	return ""
}

// backupStore writes a consistent copy of the store to dest: through the
// running daemon's API (GET /v1/store/backup, which streams one read
// transaction: the daemon holds the file's lock), else by opening the file
// read-only. It returns the bytes copied, what was copied ("the daemon's
// store": its data directory may not be this one's; else the file's
// path) and how.
func backupStore(ctx context.Context, cfg config.Config, dest string) (int64, string, string, error) {
	path := filepath.Join(cfg.Data, StoreFile)
	tmp := dest + ".tmp"
	at := time.Now() // before the copy's transaction: the safe side for restore
	n, err := fetchBackup(ctx, cfg, tmp)
	of, via := "the daemon's store", "through the running daemon at "+backupURL(cfg.Listen)
	var he *httpStatusError
	if errors.As(err, &he) {
		_ = os.Remove(tmp)
		return 0, "", "", err
	}
	if err != nil {
		// No daemon answered: copy the file read-only.
		of, via = path, "read-only, no daemon answered"
		if verr := store.Verify(path, store.Options{Timeout: 500 * time.Millisecond}); verr != nil {
			if errors.Is(verr, store.ErrLocked) {
				// Held, most likely by a daemon serving elsewhere: say
				// where we asked and how to ask the right one.
				return 0, "", "", fmt.Errorf("no daemon answered at %s (%v), and %s is held by another process (for example a running slideshowd): "+
					"if a daemon serves on another address (its serve -addr), give it with -addr HOST:PORT or listen: in the config", backupURL(cfg.Listen), err, path)
			}
			return 0, "", "", verr
		}
		if n, err = copyFile(path, tmp); err != nil {
			_ = os.Remove(tmp)
			return 0, "", "", err
		}
	}
	if err := store.FinishBackup(tmp, dest, at); err != nil {
		_ = os.Remove(tmp)
		return 0, "", "", err
	}
	return n, of, via, nil
}

// backupURL is the daemon's GET /v1/store/backup at listen.
func backupURL(listen string) string {
	return strings.TrimSuffix(usageURL(listen), "/v1/usage") + "/v1/store/backup"
}

func fetchBackup(ctx context.Context, cfg config.Config, tmp string) (int64, error) {
	u := backupURL(cfg.Listen)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	c := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 5 * time.Second}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, &httpStatusError{url: u, status: resp.StatusCode, body: strings.TrimSpace(string(b))}
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, &httpStatusError{url: u, status: 0, body: err.Error()}
	}
	n, err := io.Copy(f, resp.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, &httpStatusError{url: u, status: resp.StatusCode, body: "copy interrupted: " + err.Error()}
	}
	return n, nil
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// restoreStore replaces the store with the backup at src. The daemon must
// be stopped (the store's lock is free). The backup is checked first; the
// current file, if any, is kept as slideshowd.db.replaced-<time>. Then the
// day counts are raised by the allowance (see restoreAllowance) for what
// may have been sent after the backup was taken.
func restoreStore(cfg config.Config, src string, now time.Time) (string, int) {
	path := filepath.Join(cfg.Data, StoreFile)
	if len(cfg.Keys) == 0 {
		return fmt.Sprintf("restore raises today's count of every configured lane for what may have been sent since the backup, so it needs the keys by id and project (no secret is read), and none is configured: set %s or list keys (id, project, secret_env) in the config file", config.EnvKeys), exitBadArgs
	}
	if err := store.Verify(src, store.Options{}); err != nil {
		return "the backup cannot be restored: " + err.Error(), exitBadArgs
	}
	at, ok, err := store.BackupTime(src)
	if err != nil {
		return err.Error(), exitBadArgs
	}
	if !ok {
		fi, err := os.Stat(src)
		if err != nil {
			return err.Error(), exitFailed
		}
		at = fi.ModTime() // not a stamped backup: its last change
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return "data directory: " + err.Error(), exitFailed
	}
	// The lock proves no daemon runs; a damaged current file is replaced.
	// A missing one is not opened: Open would create it, and an empty
	// store would then be kept as the "previous file".
	if _, err := os.Stat(path); err == nil {
		if cur, err := store.Open(path, store.Options{Timeout: 500 * time.Millisecond}); err == nil {
			_ = cur.Close()
		} else if errors.Is(err, store.ErrLocked) {
			return path + " is in use by a running slideshowd: stop it before restoring", exitFailed
		}
	}
	tmp := path + ".restore"
	if _, err := copyFile(src, tmp); err != nil {
		_ = os.Remove(tmp)
		return err.Error(), exitFailed
	}
	added, err := restoreAllowance(cfg, tmp, at, now)
	if err != nil {
		_ = os.Remove(tmp)
		return err.Error(), exitFailed
	}
	kept := ""
	if _, err := os.Stat(path); err == nil {
		kept = path + ".replaced-" + now.UTC().Format("20060102T150405Z")
		if err := os.Rename(path, kept); err != nil {
			_ = os.Remove(tmp)
			return err.Error(), exitFailed
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return err.Error(), exitFailed
	}
	if err := markUsed(cfg.Data); err != nil {
		return err.Error(), exitFailed
	}
	msg := fmt.Sprintf("%s restored from %s (taken %s); %s", path, src, at.UTC().Format(time.RFC3339), added)
	if kept != "" {
		msg += "; the previous file is kept as " + kept
	}
	return msg, exitOK
}

// restoreAllowance raises today's count (Pacific day) of every configured
// lane in the store file at path for what may have been sent between at
// (the backup's time) and now: each lane's RPM for every started minute
// since at (or since today's Pacific midnight, when at is an earlier day),
// capped at the lane's RPD. Days before today need nothing: their quota is
// over. The rule is the fastest the lane could have gone, so the restored
// count is never below the real one; its cost is at most a day of a lane's
// quota held back after a restore. It also forgets the file's life records
// (store.Bolt.ForgetSharedLives): a backup's record is stale, and a start on
// it would replace the charge of a life presumed dead after an outage by the
// units it had pending when the backup was taken, not what it took after.
func restoreAllowance(cfg config.Config, path string, at, now time.Time) (string, error) {
	st, err := store.Open(path, store.Options{})
	if err != nil {
		return "", err
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.ForgetSharedLives(ctx); err != nil {
		return "", err
	}
	today := bucket.Day(now, bucket.Pacific)
	since := at
	if midnight := bucket.NextMidnight(now.AddDate(0, 0, -1), bucket.Pacific); bucket.Day(at, bucket.Pacific) != today || at.Before(midnight) {
		since = midnight
	}
	minutes := int(now.Sub(since).Minutes()) + 1
	if now.Before(since) {
		minutes = 1
	}
	counts, err := st.Daily(ctx, today)
	if err != nil {
		return "", err
	}
	have := map[store.LaneID]int{}
	for _, c := range counts {
		have[c.Lane] = c.Count
	}
	var projects []string
	for _, k := range cfg.Keys {
		if !slices.Contains(projects, k.Project) {
			projects = append(projects, k.Project)
		}
	}
	total := 0
	classes := []struct {
		name string
		cl   config.Class
	}{{"text", cfg.Classes.Text}, {"image", cfg.Classes.Image}}
	for _, p := range projects {
		for _, c := range classes {
			lane := store.LaneID{Project: p, Class: c.name}
			add := min(c.cl.RPM*minutes, c.cl.RPD-have[lane])
			if add <= 0 {
				continue
			}
			if _, err := st.AddDaily(ctx, today, lane, add); err != nil {
				return "", err
			}
			total += add
		}
	}
	return fmt.Sprintf("today's (%s) counts raised by %s in all for up to %s of sending since the backup (RPM per minute, capped at RPD)", today, plural(total, "unit", "units"), plural(minutes, "minute", "minutes")), nil
}

// runBackups keeps rolling backups in data/backups until ctx ends: one
// every interval, the newest keep kept.
func (d *daemon) runBackups(ctx context.Context, interval time.Duration, keep int, log zerolog.Logger) {
	dir := filepath.Join(d.cfg.Data, backupDir)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			log.Error().Err(err).Msg("backup: cannot make the backup directory")
			continue
		}
		name := filepath.Join(dir, "slideshowd-"+time.Now().UTC().Format("20060102T150405Z")+".db")
		n, err := d.store.BackupFile(ctx, name)
		if err != nil {
			log.Error().Err(err).Msg("backup failed")
			continue
		}
		log.Info().Str("file", name).Int64("bytes", n).Msg("backup written")
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		var names []string
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "slideshowd-") && strings.HasSuffix(e.Name(), ".db") {
				names = append(names, e.Name())
			}
		}
		slices.Sort(names) // by time
		for len(names) > keep {
			if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
				log.Warn().Err(err).Msg("backup: cannot remove an old backup")
			}
			names = names[1:]
		}
	}
}
