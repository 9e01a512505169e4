package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

func cmdUsage(ctx context.Context, e env, args []string) int {
	fs := newFlagSet("usage", e)
	cfgPath := fs.String("config", "", "config file (default: slideshowd.yaml when present)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	addr := fs.String("addr", "", "address of the running daemon (default: the config's listen)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) != 0 {
		fmt.Fprintf(e.stderr, "slideshowd usage: unexpected argument %q\n", pos[0])
		return exitBadArgs
	}
	cfg, _, ok := loadConfig(e, *cfgPath, forClient)
	if !ok {
		return exitBadArgs
	}
	if !addrOK(e, cfg, "usage", *addr) {
		return exitBadArgs
	}
	if *addr != "" {
		cfg.Listen = *addr
	}
	if cfg.RedisURL != "" {
		// Reading the cluster's view with no daemon answering: go-redis's
		// own messages in the log's format, not as plain text.
		useRedisLog(newLogger(e, cfg.Log, zerolog.WarnLevel), cfg)
	}
	sum, source, err := usageSummary(ctx, cfg)
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd:", redactError(cfg, err))
		return exitFailed
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(sum)
		return exitOK
	}
	fmt.Fprintf(e.stdout, "usage from %s\n", source)
	printUsage(e.stdout, sum, cfg)
	if strings.HasPrefix(source, "the data directory") {
		fmt.Fprintln(e.stdout, "\nnote: after a clean stop today's counts from the data directory are the requests sent; after a crash")
		fmt.Fprintln(e.stdout, "they may include daily units reserved ahead of use (at most one chunk per lane: 1 % of RPD, or up to 10 units and 4 % of it when RPD is under 1,000).")
	}
	return exitOK
}

// usageSummary asks the running daemon, else reads the data directory.
func usageSummary(ctx context.Context, cfg config.Config) (scheduler.Summary, string, error) {
	u := usageURL(cfg.Listen)
	sum, err := fetchUsage(ctx, u, cfg.Token)
	if err == nil {
		return sum, "the running daemon at " + u, nil
	}
	var he *httpStatusError
	if errors.As(err, &he) {
		return scheduler.Summary{}, "", err
	}
	path := filepath.Join(cfg.Data, StoreFile)
	if fi, serr := os.Stat(cfg.Data); serr != nil || !fi.IsDir() {
		why := "not a directory"
		if errors.Is(serr, fs.ErrNotExist) {
			why = "no such directory"
		} else if serr != nil {
			why = fileProblem(serr)
		}
		return scheduler.Summary{}, "", fmt.Errorf("no daemon answered at %s, and the data directory %s cannot be read: %s (set SLIDESHOWD_DATA or data: in the config)", u, cfg.Data, why)
	}
	if kerr := needKeys(cfg, "the usage table", fmt.Errorf("no daemon answered at %s", u)); kerr != nil {
		return scheduler.Summary{}, "", kerr
	}
	var st store.Store
	if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
		st = store.NewMemory() // nothing recorded yet
	} else {
		b, oerr := store.Open(path, store.Options{Timeout: 500 * time.Millisecond})
		if errors.Is(oerr, store.ErrLocked) {
			return scheduler.Summary{}, "", lockedError(cfg.Data, path, u, err, "the usage")
		}
		if oerr != nil {
			return scheduler.Summary{}, "", oerr
		}
		defer b.Close()
		st = b
	}
	sc := cfg.Scheduler()
	sc.Store = st
	s, err := scheduler.New(sc)
	if err != nil {
		return scheduler.Summary{}, "", err
	}
	local := s.Summary()
	if cfg.RedisURL != "" {
		local.Cluster = readCluster(ctx, cfg, sc, local.Time)
		clusterDay(&local, cfg.DailyCritical)
	}
	return local, "the data directory " + cfg.Data + " (no daemon answered at " + u + ")", nil
}

// clusterDay gives a summary read from the data directory the cluster's
// day, as a daemon's scheduler counts it from its heartbeats: per lane
// (ClusterDayUsed) the larger of the data directory's count and the lane's
// shared day count in sum.Cluster; per class their sum over the enabled
// lanes, the day left (DayRemaining) over the enabled lanes not out for the
// day, and Critical at the fraction critical of DayLimit. Without the
// cluster's view of the class's day (Redis did not answer) it leaves the
// summary as it is: ClusterDayUsed stays 0.
func clusterDay(sum *scheduler.Summary, critical float64) {
	c := sum.Cluster
	if c == nil || c.Error != "" {
		return
	}
	shared := make(map[[2]string]int, len(c.Lanes))
	for _, l := range c.Lanes {
		shared[[2]string{l.Class, l.Project}] = l.DayUsed
	}
	for i := range sum.Classes {
		cs := &sum.Classes[i]
		if cs.Day != c.Day {
			continue // read across Pacific midnight: the counts are not of one day
		}
		cs.ClusterDayUsed, cs.DayRemaining = 0, 0
		for j := range cs.Lanes {
			l := &cs.Lanes[j]
			l.ClusterDayUsed = max(l.DayUsed, shared[[2]string{cs.Name, l.Project}])
			if !l.Enabled {
				continue
			}
			cs.ClusterDayUsed += l.ClusterDayUsed
			if !l.ExhaustedUntil.After(sum.Time) {
				cs.DayRemaining += max(0, l.DayLimit-l.ClusterDayUsed)
			}
		}
		cs.Critical = cs.DayLimit > 0 && float64(cs.ClusterDayUsed) >= critical*float64(cs.DayLimit)
	}
}

// readCluster reads the cluster's view from Redis without joining it (no
// heartbeat: this command is not a process of the cluster).
func readCluster(ctx context.Context, cfg config.Config, sc scheduler.Config, now time.Time) *scheduler.ClusterSummary {
	loc := sc.Location
	if loc == nil {
		loc = bucket.Pacific
	}
	day := bucket.Day(now, loc)
	rc, err := viewClient(cfg) // a refused connection is said at once
	if err != nil {
		return scheduler.ClusterView(store.ClusterUsage{Cluster: cfg.Cluster, Process: dataDirPart}, day, err)
	}
	defer rc.Close()
	classes := make([]store.RedisClass, len(sc.Classes))
	for i, c := range sc.Classes {
		classes[i] = store.RedisClass{Name: c.Name, RPM: c.Limits.RPM, RPD: c.Limits.RPD, TPM: c.Limits.TPM, Margin: c.WindowMargin}
	}
	o := store.ClusterUsageOptions{Client: rc, Cluster: cfg.Cluster, Classes: classes, Projects: projectsOf(cfg)}
	if b, ok := sc.Store.(*store.Bolt); ok {
		// The data directory's counts: when Redis lost the state they
		// were added to, the view says re-seeding, never below them.
		o.Epoch, _ = b.SharedEpoch(ctx, cfg.Cluster)
		o.Own, _ = b.Daily(ctx, day)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*scheduler.ClusterTimeout)
	defer cancel()
	u, err := store.ReadClusterUsage(ctx, day, o)
	if u.Cluster == "" {
		u.Cluster = cfg.Cluster
	}
	if u.Process == "" {
		// No process of the cluster reads it: the data directory's own
		// part (while re-seeding) is labelled as such, not a nameless
		// process.
		u.Process = dataDirPart
	}
	return scheduler.ClusterView(u, day, err)
}

// dataDirPart is the cluster view's name of the data directory read with
// no daemon answering (its "process", and its part of a lane while the
// cluster re-seeds): it has no name in the cluster.
const dataDirPart = "this data directory"

// printCluster writes the cluster's view: the processes alive, then per lane
// the shared window and day with each process's part.
func printCluster(w io.Writer, c *scheduler.ClusterSummary) {
	fmt.Fprintf(w, "\ncluster %s (shared through Redis), day %s (Pacific)", c.Name, c.Day)
	if c.Error != "" {
		fmt.Fprintf(w, ": %s\n", c.Error)
		return
	}
	fmt.Fprintf(w, ": %s alive\n", plural(len(c.Processes), "process", "processes"))
	for _, p := range c.Processes {
		mark := ""
		if p == c.Process {
			mark = " (this one)"
		}
		fmt.Fprintf(w, "  %s%s\n", p, mark)
	}
	if c.Reseeding {
		waiting := ""
		if len(c.ReseedWaiting) > 0 {
			waiting = " (waiting for " + strings.Join(c.ReseedWaiting, ", ") + ")"
		}
		fmt.Fprintf(w, "  re-seeding: Redis lost the cluster's state (restarted empty) and not every process has put its counts back%s;\n"+
			"  today's counts are at least this process's own and the last it saw, what Redis holds in parentheses\n", waiting)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  CLASS\tPROJECT\tPROCESS\tWINDOW USED/RPM\tTODAY USED/RPD")
	for _, l := range c.Lanes {
		redis := ""
		if l.RedisDayUsed != nil {
			redis = " (Redis " + thousands(*l.RedisDayUsed) + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t(all)\t%s/%s\t%s/%s%s\n", l.Class, l.Project,
			thousands(l.WindowUsed), thousands(l.RPMLimit), thousands(l.DayUsed), thousands(l.DayLimit), redis)
		for _, p := range l.Processes {
			name := p.Process
			if !p.Alive && p.Process != dataDirPart {
				name += " (gone)"
			}
			fmt.Fprintf(tw, "  \t\t%s\t%s\t%s\n", name, thousands(p.WindowUsed), thousands(p.DayUsed))
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "  (window: slots granted in the last 60 s, sent or not; today: day units granted, less those given back)")
	printClusterTokens(w, c)
}

// printClusterTokens writes, for the lanes with TPM, the shared token
// window with each process's part.
func printClusterTokens(w io.Writer, c *scheduler.ClusterSummary) {
	found := false
	for _, l := range c.Lanes {
		if l.TPMLimit <= 0 {
			continue
		}
		if !found {
			fmt.Fprintln(w, "  tokens (input tokens budgeted by grants in the last 60 s, actual counts above the estimates added):")
			found = true
		}
		var parts []string
		for _, p := range l.Processes {
			if p.TokensUsed > 0 {
				parts = append(parts, p.Process+" "+thousands(int(p.TokensUsed)))
			}
		}
		fmt.Fprintf(w, "  %s %s: %s/%s TPM", l.Class, l.Project, thousands(int(l.TokensUsed)), thousands(l.TPMLimit))
		if len(parts) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
		}
		fmt.Fprintln(w)
	}
}

func usageURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen + "/v1/usage"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/v1/usage"
}

type httpStatusError struct {
	url    string
	status int
	body   string
}

func (e *httpStatusError) Error() string {
	if e.status == http.StatusUnauthorized {
		return fmt.Sprintf("the daemon at %s refused the request (401): set SLIDESHOWD_TOKEN to its token", e.url)
	}
	return fmt.Sprintf("the daemon at %s answered %d: %s", e.url, e.status, e.body)
}

func fetchUsage(ctx context.Context, u, token string) (scheduler.Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return scheduler.Summary{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return scheduler.Summary{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		return scheduler.Summary{}, &httpStatusError{url: u, status: resp.StatusCode, body: excerpt(string(body))}
	}
	var s scheduler.Summary
	if err := json.Unmarshal(body, &s); err != nil {
		return scheduler.Summary{}, fmt.Errorf("the daemon at %s answered something that is not a usage summary: %v", u, err)
	}
	return s, nil
}

// printUsage writes the usage table: per class, its capacity, then a line
// per lane (project) with its keys, RPM and day use and state. With a
// cluster (redis_url) the day shown first, used and left, is the
// cluster's, and the own use (of the daemon that answered, or of the data
// directory read) is labelled as such.
func printUsage(w io.Writer, s scheduler.Summary, cfg config.Config) {
	models := map[string]string{"text": cfg.Classes.Text.Model, "image": cfg.Classes.Image.Model}
	shared := s.Cluster != nil
	// A cluster's view read without joining (Process dataDirPart, or ""
	// from an older reader) is the data directory's reading: no daemon
	// answered.
	offline := shared && (s.Cluster.Process == "" || s.Cluster.Process == dataDirPart)
	own := "this process"
	if offline {
		own = "this data directory"
	}
	for _, c := range s.Classes {
		// With the cluster's view, its day is known when a daemon
		// answered (its scheduler counts it) or Redis answered (clusterDay).
		clusterKnown := shared && (!offline || s.Cluster.Error == "") || c.ClusterDayUsed > 0
		fmt.Fprintf(w, "\n%s (%s): %s, %s RPM, %s/day; ",
			c.Name, models[c.Name], plural(c.Keys, "key", "keys"), thousands(c.RPMLimit), thousands(c.DayLimit))
		switch {
		case clusterKnown:
			// day_remaining is the cluster's: say whose use is whose.
			fmt.Fprintf(w, "today %s used by the cluster (%s by %s), %s left",
				thousands(max(c.ClusterDayUsed, c.DayUsed)), thousands(c.DayUsed), own, thousands(c.DayRemaining))
		case shared:
			fmt.Fprintf(w, "today %s used by %s, the cluster's use unknown (Redis did not answer); at most %s left",
				thousands(c.DayUsed), own, thousands(c.DayRemaining))
		default:
			fmt.Fprintf(w, "today %s used, %s left", thousands(c.DayUsed), thousands(c.DayRemaining))
		}
		// The class's day counts its enabled lanes only (they are what
		// its limit and daily protection compare): the use of a lane out of
		// service (stopped, or every key disabled) is said apart, so the
		// requests sent today do not vanish from the line.
		out := 0
		for _, l := range c.Lanes {
			if !l.Enabled {
				out += l.DayUsed
			}
		}
		if out > 0 {
			fmt.Fprintf(w, " (plus %s used today by %s on lanes out of service)", thousands(out), own)
		}
		if c.Critical {
			fmt.Fprint(w, " (CRITICAL: only high priority starts)")
		}
		fmt.Fprintf(w, "\n  day %s (Pacific); running %d/%d; queued high %d, normal %d, low %d; retrying %d\n",
			c.Day, c.Running, c.Concurrency, c.QueuedHigh, c.QueuedNormal, c.QueuedLow, c.Delayed)
		if c.Wait != nil {
			fmt.Fprintf(w, "  waiting: %s (since %s)\n", c.Wait.Reason, c.Wait.Since.In(bucket.Pacific).Format("Jan 2 15:04:05 MST"))
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		if clusterKnown {
			fmt.Fprintf(tw, "  PROJECT\tKEYS\tRPM USED/LIMIT\tTODAY CLUSTER/LIMIT\tBY %s\tSTATE\n", strings.ToUpper(own))
		} else {
			fmt.Fprintln(tw, "  PROJECT\tKEYS\tRPM USED/LIMIT\tTODAY USED/LIMIT\tSTATE")
		}
		for _, l := range c.Lanes {
			keys := strings.Join(l.Keys, ",")
			if len(l.DisabledKeys) > 0 {
				// Without a space before it when every key of the lane is
				// disabled: the column stays aligned.
				keys = strings.TrimSpace(keys + " (disabled: " + strings.Join(l.DisabledKeys, ",") + ")")
			}
			if clusterKnown {
				l.ClusterDayUsed = max(l.ClusterDayUsed, l.DayUsed)
				fmt.Fprintf(tw, "  %s\t%s\t%s/%s\t%s/%s\t%s\t%s\n", l.Project, keys,
					thousands(l.RPMUsed), thousands(l.RPMLimit), thousands(l.ClusterDayUsed), thousands(l.DayLimit), thousands(l.DayUsed),
					laneState(l, s.Time, c.DayResetsAt))
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s/%s\t%s/%s\t%s\n", l.Project, keys,
				thousands(l.RPMUsed), thousands(l.RPMLimit), thousands(l.DayUsed), thousands(l.DayLimit), laneState(l, s.Time, c.DayResetsAt))
		}
		tw.Flush()
	}
	if s.Cluster != nil {
		printCluster(w, s.Cluster)
	}
	if len(s.DisabledKeys) > 0 {
		fmt.Fprintln(w, "\ndisabled keys (enable once fixed):")
		for _, k := range s.DisabledKeys {
			since := ""
			if !k.Since.IsZero() {
				since = " (since " + k.Since.In(bucket.Pacific).Format("Jan 2 15:04 MST") + ")"
			}
			fmt.Fprintf(w, "  %s (project %s): %s%s\n", k.ID, k.Project, k.Reason, since)
		}
	}
}

func laneState(l scheduler.LaneSummary, now, resets time.Time) string {
	switch {
	case l.Stopped != "":
		return "stopped: " + l.Stopped
	case !l.Enabled && l.Reason != "":
		return "disabled: " + l.Reason
	case !l.Enabled:
		return "disabled"
	case l.ExhaustedUntil.After(now):
		return "out for the day until " + l.ExhaustedUntil.In(bucket.Pacific).Format("Jan 2 15:04 MST")
	case l.HeldUntil.After(now) && !l.CoolUntil.After(l.HeldUntil):
		return scheduler.HoldWords(l.Held, l.HeldUntil, now)
	case l.CoolUntil.After(now):
		return "cooling down for " + scheduler.ShortDuration(l.CoolUntil.Sub(now))
	case max(l.DayUsed, l.ClusterDayUsed) >= l.DayLimit && !resets.IsZero():
		return "day used up until " + resets.In(bucket.Pacific).Format("Jan 2 15:04 MST")
	case max(l.DayUsed, l.ClusterDayUsed) >= l.DayLimit:
		return "day used up"
	}
	return "ok"
}

// thousands formats n with comma separators: 45000 -> "45,000".
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
