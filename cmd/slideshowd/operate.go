package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// daemonBase is the base URL of the daemon the config's listen names.
func daemonBase(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// addrOK checks command's -addr (the running daemon's address; "" is not
// given): HOST:PORT, the host possibly empty (this machine), the port a
// number in 1..65535; else it prints one line naming the flag and the
// value and returns false (exit 2). A URL given there (http://host:port)
// was asked as http://http://host:port, answered nothing, and the command
// went on to the data directory. The line holds no secret of cfg (nor
// anything shaped like a key).
func addrOK(e env, cfg config.Config, command, addr string) bool {
	if addr == "" {
		return true
	}
	_, port, err := net.SplitHostPort(addr)
	if p, perr := strconv.Atoi(port); err == nil && perr == nil && p >= 1 && p <= 65535 {
		return true
	}
	fmt.Fprintln(e.stderr, redactorOf(cfg).String(fmt.Sprintf("slideshowd %s: -addr %q: want the running daemon's HOST:PORT, like 127.0.0.1:8080", command, addr)))
	return false
}

// errNoDaemon wraps the failure to reach a daemon: the command then works
// on the data directory.
var errNoDaemon = errors.New("no daemon answered")

// daemonCall makes one request to the running daemon and decodes its JSON
// answer into out. It wraps errNoDaemon when nothing answered; an answer
// other than 200 is an *httpStatusError.
func daemonCall(ctx context.Context, cfg config.Config, method, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u := daemonBase(cfg.Listen) + path
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %v", errNoDaemon, daemonBase(cfg.Listen), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error struct{ Message string } `json:"error"`
		}
		msg := excerpt(string(body))
		if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
			msg = eb.Error.Message
		}
		return &httpStatusError{url: u, status: resp.StatusCode, body: msg}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("the daemon at %s answered something unexpected: %v", u, err)
	}
	return nil
}

// openDataStore opens the data directory's store for a command that found
// no daemon. A missing store is an error: there is nothing to show or change.
func openDataStore(cfg config.Config, daemonErr error) (*store.Bolt, error) {
	path := filepath.Join(cfg.Data, StoreFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist and %v: check -config, SLIDESHOWD_DATA and that the daemon runs", path, daemonErr)
	}
	b, err := store.Open(path, store.Options{Timeout: 500 * time.Millisecond})
	if errors.Is(err, store.ErrLocked) {
		return nil, lockedError(cfg.Data, path, "", daemonErr, "what you asked for")
	}
	return b, err
}

// clientCmd is what every client command (keys, jobs, lanes) starts with:
// its flag set with the flags they all take, and the sub-commands it knows.
type clientCmd struct {
	name    string
	fs      *flag.FlagSet
	cfgPath *string
	asJSON  *bool
	addr    *string
	// subs gives each sub-command the number of arguments it takes; "list"
	// (taken when none is given) must be one.
	subs map[string]int
	// want names the sub-commands in an error: "list, enable ID or disable ID".
	want string
}

// newClientCmd returns command name's flag set with the flags every client
// command takes; its help prints usage, one line each, then says where the
// command works, then the flags.
func newClientCmd(name string, e env, jsonHelp string, subs map[string]int, want string, usage ...string) *clientCmd {
	fs := newFlagSet(name, e)
	fs.Usage = func() {
		for i, u := range usage {
			if i == 0 {
				fmt.Fprintln(e.stderr, "Usage: "+u)
			} else {
				fmt.Fprintln(e.stderr, "       "+u)
			}
		}
		fmt.Fprintln(e.stderr, "Asks the running daemon (SLIDESHOWD_TOKEN), else works on the data directory.")
		fs.PrintDefaults()
	}
	return &clientCmd{
		name:    name,
		fs:      fs,
		cfgPath: fs.String("config", "", "config file (default: slideshowd.yaml when present)"),
		asJSON:  fs.Bool("json", false, jsonHelp),
		addr:    fs.String("addr", "", "address of the running daemon (default: the config's listen)"),
		subs:    subs,
		want:    want,
	}
}

// given returns the -config and -addr flags as they were given (name,
// value pairs; the ones not given are left out), for a command line that
// must reach the same daemon with the same config.
func (c *clientCmd) given() []string {
	var out []string
	c.fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" || f.Name == "addr" {
			out = append(out, "-"+f.Name, f.Value.String())
		}
	})
	return out
}

// start parses args, takes the sub-command (list when none is given) and
// checks its number of arguments, then loads the config and applies -addr.
// When ok is false the command ends with code.
func (c *clientCmd) start(e env, args []string) (sub string, pos []string, cfg config.Config, code int, ok bool) {
	pos, err := parseFlags(c.fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", nil, cfg, exitOK, false
		}
		return "", nil, cfg, exitBadArgs, false
	}
	sub = "list"
	if len(pos) > 0 {
		sub, pos = pos[0], pos[1:]
	}
	n, known := c.subs[sub]
	if !known || len(pos) != n {
		if !known {
			fmt.Fprintf(e.stderr, "slideshowd %s: unknown sub-command %q: want %s\n", c.name, sub, c.want)
		} else {
			fmt.Fprintf(e.stderr, "slideshowd %s %s: want %d argument(s), got %d\n", c.name, sub, n, len(pos))
		}
		return "", nil, cfg, exitBadArgs, false
	}
	cfg, _, ok = loadConfig(e, *c.cfgPath, forClient)
	if !ok {
		return "", nil, cfg, exitBadArgs, false
	}
	if !addrOK(e, cfg, c.name, *c.addr) {
		return "", nil, cfg, exitBadArgs, false
	}
	if *c.addr != "" {
		cfg.Listen = *c.addr
	}
	if cfg.RedisURL != "" {
		// A change sent to the cluster's Redis with no daemon answering:
		// go-redis's own messages in the log's format, not as plain text.
		useRedisLog(newLogger(e, cfg.Log, zerolog.WarnLevel), cfg)
	}
	return sub, pos, cfg, exitOK, true
}

// cmdKeys is `slideshowd keys [list|enable|disable] [ID]`.
func cmdKeys(ctx context.Context, e env, args []string) int {
	c := newClientCmd("keys", e, "print the keys as JSON", map[string]int{"list": 0, "enable": 1, "disable": 1}, "list, enable ID or disable ID",
		"slideshowd keys [list]        the keys: project, state per class, why and since when disabled",
		"slideshowd keys enable ID     put a disabled key back into service",
		"slideshowd keys disable ID    take a key out of service until enabled")
	asJSON := c.asJSON
	sub, pos, cfg, code, ok := c.start(e, args)
	if !ok {
		return code
	}
	var err error
	var keys []scheduler.KeyStatus
	var changed scheduler.KeyStatus
	source := "the running daemon at " + daemonBase(cfg.Listen)
	switch sub {
	case "list":
		var kl struct{ Keys []scheduler.KeyStatus }
		err = daemonCall(ctx, cfg, http.MethodGet, "/v1/keys", &kl)
		keys = kl.Keys
	default:
		err = daemonCall(ctx, cfg, http.MethodPost, "/v1/keys/"+url.PathEscape(pos[0])+"/"+sub, &changed)
	}
	if errors.Is(err, errNoDaemon) {
		source = "the data directory " + cfg.Data
		keys, changed, err = keysOffline(ctx, cfg, sub, pos, err)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd:", err)
		return exitFailed
	}
	if sub != "list" {
		if *asJSON {
			printJSON(e.stdout, changed)
			return exitOK
		}
		fmt.Fprintf(e.stdout, "key %s %sd (%s)\n", changed.ID, sub, source)
		var shared error
		offline := source != "the running daemon at "+daemonBase(cfg.Listen)
		if offline && cfg.RedisURL != "" {
			d := store.DisabledKey{KeyID: changed.ID, Reason: changed.Disabled, At: changed.DisabledSince}
			shared = shareOffline(ctx, cfg, func(ctx context.Context, o store.ShareOptions) error {
				return store.ShareKeyChange(ctx, o, d, sub == "disable", time.Now())
			})
		}
		clusterNote(e, cfg, changed.ClusterPending, offline, shared)
		return exitOK
	}
	if *asJSON {
		printJSON(e.stdout, struct {
			Keys []scheduler.KeyStatus `json:"keys"`
		}{keys})
		return exitOK
	}
	fmt.Fprintf(e.stdout, "keys from %s\n", source)
	printKeys(e.stdout, keys, time.Now())
	return exitOK
}

// clusterNote says, after a change of a key or lane with redis_url set, when
// the other processes of the cluster do not learn it at once: the daemon's
// Redis is unreachable (pending), or the change went to the data directory
// (offline: no daemon answered) and shared is the error of sending it to
// Redis.
func clusterNote(e env, cfg config.Config, pending, offline bool, shared error) {
	switch {
	case cfg.RedisURL == "":
	case offline && shared != nil:
		fmt.Fprintf(e.stdout, "note: made in the data directory only: the cluster's Redis did not take it (%v): the other processes learn it when a daemon on this data directory joins the cluster (the later change of the key or lane wins)\n", shared)
	case offline:
		fmt.Fprintln(e.stdout, "note: made in the data directory and sent to the cluster through Redis: the running processes apply it")
	case pending:
		fmt.Fprintln(e.stdout, "note: Redis is unreachable: the daemon applies the change; the other processes of the cluster learn it when Redis answers again")
	}
}

// shareOffline sends a change made on the data directory (no daemon
// answered) to the cluster's Redis, without joining the cluster; it waits
// at most 5 s for Redis.
func shareOffline(ctx context.Context, cfg config.Config, share func(context.Context, store.ShareOptions) error) error {
	opts, err := cfg.RedisURL.Options()
	if err != nil {
		return err
	}
	opts.ContextTimeoutEnabled = true
	rc := redis.NewClient(opts)
	defer rc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	host, _ := os.Hostname()
	return share(ctx, store.ShareOptions{Client: rc, Cluster: cfg.Cluster, Process: "slideshowd CLI on " + host})
}

// offlineScheduler opens the data directory's store and a scheduler on it
// (not running: it restores the lanes' and keys' states) for a client
// command that found no daemon; what names what it reads, for the error
// when no keys are configured. Call closeStore when done.
func offlineScheduler(cfg config.Config, what string, daemonErr error) (s *scheduler.Scheduler, closeStore func(), err error) {
	if err := needKeys(cfg, what, daemonErr); err != nil {
		return nil, nil, err
	}
	st, err := openDataStore(cfg, daemonErr)
	if err != nil {
		return nil, nil, err
	}
	sc := cfg.Scheduler()
	sc.Store = st
	if s, err = scheduler.New(sc); err != nil {
		st.Close()
		return nil, nil, err
	}
	return s, func() { st.Close() }, nil
}

// keysOffline does a keys sub-command on the data directory.
func keysOffline(ctx context.Context, cfg config.Config, sub string, pos []string, daemonErr error) ([]scheduler.KeyStatus, scheduler.KeyStatus, error) {
	s, closeStore, err := offlineScheduler(cfg, "the keys' states", daemonErr)
	if err != nil {
		return nil, scheduler.KeyStatus{}, err
	}
	defer closeStore()
	switch sub {
	case "enable":
		err = s.EnableKey(ctx, pos[0])
	case "disable":
		err = s.DisableKey(ctx, pos[0], "")
	}
	if err != nil {
		return nil, scheduler.KeyStatus{}, err
	}
	keys := s.Keys()
	for _, k := range keys {
		if len(pos) > 0 && k.ID == pos[0] {
			return keys, k, nil
		}
	}
	return keys, scheduler.KeyStatus{}, nil
}

// printKeys writes one line per key: its project, its state on each class
// and, when disabled, why and since when.
func printKeys(w io.Writer, keys []scheduler.KeyStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var classes []string
	if len(keys) > 0 {
		for _, c := range keys[0].Classes {
			classes = append(classes, strings.ToUpper(c.Class))
		}
	}
	fmt.Fprintf(tw, "KEY\tPROJECT\t%s\tDISABLED\n", strings.Join(classes, "\t"))
	for _, k := range keys {
		var states []string
		for _, c := range k.Classes {
			states = append(states, keyClassState(c, now))
		}
		disabled := "-"
		if k.Disabled != "" {
			disabled = k.Disabled
			if !k.DisabledSince.IsZero() {
				disabled += " (since " + k.DisabledSince.In(bucket.Pacific).Format("Jan 2 15:04 MST") + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Project, strings.Join(states, "\t"), disabled)
	}
	tw.Flush()
}

func keyClassState(c scheduler.KeyClassState, now time.Time) string {
	switch c.State {
	case "cooling":
		return "cooling " + scheduler.ShortDuration(c.Until.Sub(now))
	case "held":
		return scheduler.HoldWords(c.Reason, c.Until, now)
	case "exhausted", "day_used":
		return "out until " + c.Until.In(bucket.Pacific).Format("Jan 2 15:04 MST")
	case "stopped":
		return "stopped: " + c.Reason
	}
	return c.State
}

// laneRow is one lane of `slideshowd lanes -json`: a project on a class.
type laneRow struct {
	Class string `json:"class"`
	scheduler.LaneSummary
}

// laneAnswer is the answer of POST /v1/lanes/{class}/{project}/resume.
type laneAnswer struct {
	Class   string                 `json:"class"`
	Project string                 `json:"project"`
	Lane    *scheduler.LaneSummary `json:"lane,omitempty"`
}

// cmdLanes is `slideshowd lanes [list] | resume CLASS PROJECT`.
func cmdLanes(ctx context.Context, e env, args []string) int {
	c := newClientCmd("lanes", e, "print JSON", map[string]int{"list": 0, "resume": 2}, "list or resume CLASS PROJECT",
		"slideshowd lanes [list]                the lanes (a project on a class): keys and state, why stopped",
		"slideshowd lanes resume CLASS PROJECT  put a lane stopped for no quota (limit 0) back into service")
	sub, pos, cfg, code, ok := c.start(e, args)
	if !ok {
		return code
	}
	var (
		sum     scheduler.Summary
		resumed laneAnswer
		err     error
	)
	source := "the running daemon at " + daemonBase(cfg.Listen)
	switch sub {
	case "list":
		err = daemonCall(ctx, cfg, http.MethodGet, "/v1/usage", &sum)
	case "resume":
		err = daemonCall(ctx, cfg, http.MethodPost, "/v1/lanes/"+url.PathEscape(pos[0])+"/"+url.PathEscape(pos[1])+"/resume", &resumed)
	}
	if errors.Is(err, errNoDaemon) {
		source = "the data directory " + cfg.Data
		sum, resumed, err = lanesOffline(ctx, cfg, sub, pos, err)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd:", err)
		return exitFailed
	}
	if sub == "resume" {
		if *c.asJSON {
			printJSON(e.stdout, resumed)
			return exitOK
		}
		fmt.Fprintf(e.stdout, "lane %s of %s resumed (%s)\n", resumed.Project, resumed.Class, source)
		var shared error
		offline := source != "the running daemon at "+daemonBase(cfg.Listen)
		if offline && cfg.RedisURL != "" {
			l := store.LaneID{Project: resumed.Project, Class: resumed.Class}
			shared = shareOffline(ctx, cfg, func(ctx context.Context, o store.ShareOptions) error {
				return store.ShareLaneResume(ctx, o, l, time.Now())
			})
		}
		clusterNote(e, cfg, resumed.Lane != nil && resumed.Lane.ClusterPending, offline, shared)
		return exitOK
	}
	rows := []laneRow{}
	for _, cs := range sum.Classes {
		for _, l := range cs.Lanes {
			rows = append(rows, laneRow{Class: cs.Name, LaneSummary: l})
		}
	}
	if *c.asJSON {
		printJSON(e.stdout, struct {
			Lanes []laneRow `json:"lanes"`
		}{rows})
		return exitOK
	}
	fmt.Fprintf(e.stdout, "lanes from %s\n", source)
	printLanes(e.stdout, sum, time.Now())
	return exitOK
}

// lanesOffline does a lanes sub-command on the data directory.
func lanesOffline(ctx context.Context, cfg config.Config, sub string, pos []string, daemonErr error) (scheduler.Summary, laneAnswer, error) {
	s, closeStore, err := offlineScheduler(cfg, "the lanes", daemonErr)
	if err != nil {
		return scheduler.Summary{}, laneAnswer{}, err
	}
	defer closeStore()
	if sub != "resume" {
		return s.Summary(), laneAnswer{}, nil
	}
	if err := s.ResumeLane(ctx, pos[0], pos[1]); err != nil {
		return scheduler.Summary{}, laneAnswer{}, err
	}
	ans := laneAnswer{Class: pos[0], Project: pos[1]}
	for _, cs := range s.Summary().Classes {
		for _, l := range cs.Lanes {
			if cs.Name == pos[0] && l.Project == pos[1] {
				ans.Lane = &l
			}
		}
	}
	return scheduler.Summary{}, ans, nil
}

// printLanes writes one line per lane: its class, project, keys and state
// (why it serves nothing, when it does not), then how to resume a stopped
// one.
func printLanes(w io.Writer, sum scheduler.Summary, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tPROJECT\tKEYS\tSTATE")
	stopped := false
	for _, cs := range sum.Classes {
		for _, l := range cs.Lanes {
			keys := strings.Join(l.Keys, ",")
			if keys == "" {
				keys = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cs.Name, l.Project, keys, laneState(l, now, cs.DayResetsAt))
			stopped = stopped || l.Stopped != ""
		}
	}
	tw.Flush()
	if stopped {
		fmt.Fprintln(w, "resume a stopped lane: slideshowd lanes resume CLASS PROJECT")
	}
}

// cmdJobs is `slideshowd jobs [list|show ID|cancel ID]`.
func cmdJobs(ctx context.Context, e env, args []string) int {
	c := newClientCmd("jobs", e, "print JSON", map[string]int{"list": 0, "show": 1, "cancel": 1}, "list, show ID or cancel ID",
		"slideshowd jobs [list] [-state S] [-priority P] [-since T] [-limit N] [-cursor C]",
		"slideshowd jobs show ID      one job as JSON",
		"slideshowd jobs cancel ID    cancel a queued or running job")
	asJSON, fs := c.asJSON, c.fs
	state := fs.String("state", "", "list: only these states, comma-separated (queued, analyzing, generating, done, failed, canceled)")
	priority := fs.String("priority", "", "list: only this priority (high, normal, low)")
	since := fs.String("since", "", "list: only jobs created since this RFC 3339 time or this long ago (24h)")
	limit := fs.Int("limit", 0, fmt.Sprintf("list: jobs per page, 1..%d (default %d)", pipeline.MaxPageSize, pipeline.DefaultPageSize))
	cursor := fs.String("cursor", "", "list: continue after the page that printed this cursor")
	sub, pos, cfg, code, ok := c.start(e, args)
	if !ok {
		return code
	}
	// -limit takes what the API's limit takes: 0 is refused (it listed
	// a default page), not read as "no limit".
	limitSet := false
	fs.Visit(func(f *flag.Flag) { limitSet = limitSet || f.Name == "limit" })
	if limitSet && (*limit < 1 || *limit > pipeline.MaxPageSize) {
		fmt.Fprintf(e.stderr, "slideshowd jobs: -limit %d: want 1..%d (leave it out for %d)\n", *limit, pipeline.MaxPageSize, pipeline.DefaultPageSize)
		return exitBadArgs
	}
	// Every filter the daemon (or the data directory) would refuse is
	// refused here, naming the flag, whatever answers (exit 2): -since
	// yesterday was the daemon's 400 (exit 1), and "pipeline: since: ..."
	// from the data directory (exit 2).
	if err := checkJobFilters(*state, *priority, *since, *cursor); err != nil {
		fmt.Fprintln(e.stderr, redactorOf(cfg).String(fmt.Sprintf("slideshowd jobs: -%s %s: %s", err.Field, err.Value, err.Reason)))
		return exitBadArgs
	}
	var err error
	q := url.Values{}
	for k, v := range map[string]string{"state": *state, "priority": *priority, "since": *since, "cursor": *cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if limitSet {
		q.Set("limit", fmt.Sprint(*limit))
	}
	var (
		page pipeline.Page
		st   pipeline.Status
	)
	switch sub {
	case "list":
		path := "/v1/slideshows"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		err = daemonCall(ctx, cfg, http.MethodGet, path, &page)
	case "show":
		err = daemonCall(ctx, cfg, http.MethodGet, "/v1/slideshows/"+url.PathEscape(pos[0]), &st)
	case "cancel":
		err = daemonCall(ctx, cfg, http.MethodDelete, "/v1/slideshows/"+url.PathEscape(pos[0]), &st)
	}
	if errors.Is(err, errNoDaemon) {
		page, st, err = jobsOffline(ctx, cfg, sub, pos, q, err)
		// The data directory's refusals in words, as the daemon's 404
		// and 409 say them, not the pipeline's ("pipeline: not found:
		// job ...").
		switch {
		case errors.Is(err, pipeline.ErrNotFound):
			err = fmt.Errorf("job %q: not found in the data directory %s", pos[0], cfg.Data)
		case errors.Is(err, pipeline.ErrFinal) && st.State != "":
			err = fmt.Errorf("job %s is %s: only a queued or running slideshow can be canceled", pos[0], st.State)
		}
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd:", err)
		var ie *pipeline.InputError
		if errors.As(err, &ie) {
			return exitBadArgs
		}
		var he *httpStatusError
		if errors.As(err, &he) && he.status == http.StatusBadRequest {
			return exitBadArgs
		}
		return exitFailed
	}
	switch {
	case sub == "list" && !*asJSON:
		printJobs(e.stdout, page, c.given(), q)
	case sub == "list":
		printJSON(e.stdout, page)
	case sub == "cancel" && !*asJSON:
		fmt.Fprintf(e.stdout, "job %s canceled\n", st.ID)
	default:
		printJSON(e.stdout, st)
	}
	return exitOK
}

// checkJobFilters checks the list filters of jobs (as given; "" is not
// given) as GET /v1/slideshows and the data directory check them, with
// the pipeline's own checks: the first bad one is an *pipeline.InputError
// naming the query field (the flag's name) and the value.
func checkJobFilters(state, priority, since, cursor string) *pipeline.InputError {
	f := pipeline.Filter{Priority: priority, Cursor: cursor, States: jobStates(state)}
	err := f.Check()
	if err == nil && since != "" {
		_, err = pipeline.ParseSince(since, time.Now())
	}
	var ie *pipeline.InputError
	if errors.As(err, &ie) {
		return ie
	}
	return nil
}

// jobStates splits -state (comma-separated, as ?state= takes it); "" is
// every state.
func jobStates(s string) []pipeline.JobState {
	var states []pipeline.JobState
	if s != "" {
		for v := range strings.SplitSeq(s, ",") {
			states = append(states, pipeline.JobState(v))
		}
	}
	return states
}

// jobsOffline does a jobs sub-command on the data directory; the filters
// are the query GET /v1/slideshows would get.
func jobsOffline(ctx context.Context, cfg config.Config, sub string, pos []string, q url.Values, daemonErr error) (pipeline.Page, pipeline.Status, error) {
	bs, err := openDataStore(cfg, daemonErr)
	if err != nil {
		return pipeline.Page{}, pipeline.Status{}, err
	}
	defer bs.Close()
	switch sub {
	case "show":
		st, err := pipeline.StoredStatus(ctx, bs, pos[0])
		return pipeline.Page{}, st, err
	case "cancel":
		st, err := pipeline.CancelStored(ctx, bs, pos[0])
		return pipeline.Page{}, st, err
	}
	f := pipeline.Filter{Priority: q.Get("priority"), Cursor: q.Get("cursor"), States: jobStates(q.Get("state"))}
	if v := q.Get("limit"); v != "" {
		fmt.Sscan(v, &f.Limit)
	}
	if v := q.Get("since"); v != "" {
		t, err := pipeline.ParseSince(v, time.Now()) // checked by cmdJobs
		if err != nil {
			return pipeline.Page{}, pipeline.Status{}, err
		}
		f.Since = t
	}
	pg, err := pipeline.StoredJobs(ctx, bs, f)
	return pg, pipeline.Status{}, err
}

// printJobs writes a page of jobs as a table, then the command for the
// next page: the filters of q (the query of this page) and the next cursor,
// so that the next page continues the same listing. Times are Pacific with
// their zone, as keys and the status page show them. A job waiting for
// quota is "STATE (waiting)" in the table and its reason, which can be long,
// is on a line of its own under the table, so that it does not stretch the
// table's columns (-json has every field).
//
// given are the words of the flags that chose the config and the daemon
// (-config FILE, -addr HOST:PORT, as given): the next page's command
// repeats them, so that it asks the same daemon.
func printJobs(w io.Writer, pg pipeline.Page, given []string, q url.Values) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPRIORITY\tIMAGES\tCREATED\tSOURCE")
	var waits []string
	for _, st := range pg.Jobs {
		done := 0
		for _, is := range st.Images {
			if is.State == pipeline.ImageDone {
				done++
			}
		}
		state := string(st.State)
		if st.Wait != nil {
			state += " (waiting)"
			waits = append(waits, "  "+st.ID+": "+st.Wait.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", st.ID, state, st.Priority, done, len(st.Images),
			st.CreatedAt.In(bucket.Pacific).Format(jobTime), excerpt(st.Source))
	}
	tw.Flush()
	if len(waits) > 0 {
		fmt.Fprintln(w, "waiting for quota:")
		for _, l := range waits {
			fmt.Fprintln(w, l)
		}
	}
	if pg.Next != "" {
		var b strings.Builder
		b.WriteString("more: slideshowd jobs list")
		for i := 0; i+1 < len(given); i += 2 {
			fmt.Fprintf(&b, " %s %s", given[i], shellWord(given[i+1]))
		}
		for _, k := range []string{"state", "priority", "since", "limit"} {
			if v := q.Get(k); v != "" {
				fmt.Fprintf(&b, " -%s %s", k, shellWord(v))
			}
		}
		fmt.Fprintf(w, "%s -cursor %s\n", b.String(), shellWord(pg.Next))
	}
}

// jobTime is the layout of a job's times in the jobs table: Pacific, with
// the zone (PST or PDT), as the status page's job rows.
const jobTime = "Jan 2 15:04:05 MST"

// shellWord returns v as one word of a POSIX shell command line: as is when
// it holds only characters no shell treats specially, else single-quoted.
func shellWord(v string) string {
	if v != "" && strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.:+-_/") == "" {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
