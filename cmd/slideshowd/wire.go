package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/internal/redact"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// StoreFile is the bbolt file's name in the data directory.
const StoreFile = "slideshowd.db"

// parseFlags parses args with flags and positional arguments in any order
// ("batch FILE -out DIR" as well as "batch -out DIR FILE").
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// flagExit is the exit status after a flag error: 0 for -h (the usage
// was asked for and printed), 2 otherwise.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitBadArgs
}

func newFlagSet(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet("slideshowd "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// loadMode says what a command needs of the configuration's keys.
type loadMode int

const (
	// forCalls: the command makes Gemini calls itself (serve, batch, demo):
	// at least one key, each with its secret.
	forCalls loadMode = iota
	// forClient: the command talks to a running daemon, only plans, or only
	// handles the store file (usage, keys, jobs, store, batch -dry-run): no
	// key is required and no secret is read. Where it falls back to the
	// data directory's lanes it needs the keys by id and project, and says
	// so (needKeys).
	forClient
)

// loadConfig loads the configuration and prints its error on one line.
func loadConfig(e env, path string, mode loadMode) (config.Config, []string, bool) {
	c, warnings, err := config.Load(config.Options{Path: path, Getenv: e.getenv, NeedSecrets: mode == forCalls, Client: mode == forClient})
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd:", err)
		return config.Config{}, nil, false
	}
	return c, warnings, true
}

// needKeys is the error of a client command that found no daemon and
// needs the keys (by id and project; no secret is read) to read the data
// directory's lanes, when none is configured.
func needKeys(cfg config.Config, what string, daemonErr error) error {
	if len(cfg.Keys) > 0 {
		return nil
	}
	return fmt.Errorf("%v; %s from the data directory needs the keys by id and project (their lanes; no secret is read), and none is configured: set %s or list keys (id, project, secret_env) in the config file, or start the daemon", daemonErr, what, config.EnvKeys)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// newLogger builds the logger of cfg.Log on e.stderr: JSON, or console
// output when asked or, by default, when stderr is a terminal. minLevel
// raises the level (batch and demo keep info lines off a progress bar).
// Durations in log lines are Go duration strings ("cooldown":"20s",
// "duration":"1.2ms"): zerolog's default, float milliseconds under field
// names without a unit, read like seconds. Set once, before any logging.
func init() { zerolog.DurationFieldFormat = zerolog.DurationFormatString }

func newLogger(e env, lc config.Log, minLevel zerolog.Level) zerolog.Logger {
	level, err := zerolog.ParseLevel(lc.Level)
	if err != nil || lc.Level == "" {
		level = zerolog.InfoLevel
	}
	level = max(level, minLevel)
	var w io.Writer = e.stderr
	if lc.Format == "console" || (lc.Format == "" && isTerminal(e.stderr)) {
		w = zerolog.ConsoleWriter{Out: e.stderr, TimeFormat: time.TimeOnly, NoColor: !isTerminal(e.stderr)}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// logObserver logs the failed calls at debug level. Rate limits, lanes
// out for the day and disabled keys are logged once, by the scheduler.
// Keys appear by id.
type logObserver struct{ log zerolog.Logger }

func (o logObserver) Observe(ev scheduler.Event) {
	switch ev.Kind {
	case scheduler.EventFinished:
		if ev.Err != nil && ev.Outcome != "canceled" {
			o.log.Debug().Str("class", ev.Class).Str("key", ev.KeyID).Str("outcome", ev.Outcome).Bool("final", ev.Final).Err(ev.Err).Msg("call failed")
		}
	}
}

// observers fans events out.
type observers []scheduler.Observer

func (os observers) Observe(ev scheduler.Event) {
	for _, o := range os {
		o.Observe(ev)
	}
}

// daemon is the wired core: store, scheduler, Gemini client and pipeline.
type daemon struct {
	cfg    config.Config
	log    zerolog.Logger
	store  *store.Bolt
	shared *store.Redis    // nil without redis_url
	redis  []*redis.Client // the ledger's and the view's; none without redis_url
	sched  *scheduler.Scheduler
	gem    *gemini.Client
	pipe   *pipeline.Pipeline
	ran    bool // run was called: the scheduler leaves the cluster as it stops
	holder bool // the holder note was written (writeHolder): removed at close
}

type daemonOptions struct {
	httpClient *http.Client // default: gemini's
	observer   scheduler.Observer
	onChange   func(pipeline.Status)
	atEnd      func(*daemon) // batch: called after the summary, before closing
}

// openDaemon opens the data directory and wires the core. The caller
// closes it after run's wait.
func openDaemon(ctx context.Context, cfg config.Config, log zerolog.Logger, o daemonOptions) (*daemon, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := checkStorePresent(cfg.Data); err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(cfg.Data, StoreFile), store.Options{})
	if err != nil {
		return nil, err
	}
	if err := markUsed(cfg.Data); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("data directory: %w", err)
	}
	d := &daemon{cfg: cfg, log: log, store: st}
	ok := false
	defer func() {
		if !ok {
			d.close()
		}
	}()
	obs := observers{logObserver{log.With().Str("component", "scheduler").Logger()}}
	if o.observer != nil {
		obs = append(obs, o.observer)
	}
	sc := cfg.Scheduler()
	sc.Store, sc.Logger, sc.Observer = st, log, obs
	if cfg.RedisURL != "" {
		rs, rc, err := openShared(ctx, cfg, sc, st, log)
		if err != nil {
			return nil, err
		}
		d.shared, d.redis, sc.Store = rs, rc, rs
	}
	if d.sched, err = scheduler.New(sc); err != nil {
		return nil, err
	}
	gc := cfg.Gemini()
	gc.Scheduler, gc.HTTPClient = d.sched, o.httpClient
	gc.Logger = log.With().Str("component", "gemini").Logger()
	if d.gem, err = gemini.New(ctx, gc); err != nil {
		return nil, err
	}
	d.pipe, err = pipeline.New(pipeline.Config{
		Store: st, Gemini: d.gem, DataDir: cfg.Data, Logger: log, Secrets: configSecrets(cfg), MaxActive: cfg.MaxActive,
		ShutdownGrace: cfg.Grace(), Retention: time.Duration(cfg.Retention), OnChange: o.onChange,
		AspectRatio: cfg.Images.AspectRatio, ImageSize: cfg.Images.Size,
	})
	if err != nil {
		return nil, err
	}
	ok = true
	log.Info().Str("data", cfg.Data).Strs("keys", keyIDs(cfg)).
		Str("text", fmt.Sprintf("%s %d RPM %d/day", cfg.Classes.Text.Model, cfg.Classes.Text.RPM, cfg.Classes.Text.RPD)).
		Str("image", fmt.Sprintf("%s %d RPM %d/day", cfg.Classes.Image.Model, cfg.Classes.Image.RPM, cfg.Classes.Image.RPD)).
		Msg("slideshowd ready")
	return d, nil
}

// registerSharedMetrics exports the shared quota's health: whether Redis is
// unreachable now (the process sends on its safe share) and how many times
// it became so.
func registerSharedMetrics(reg prometheus.Registerer, rs *store.Redis) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "slideshowd_redis_unreachable",
			Help: "1 while Redis (redis_url) is unreachable and this process sends on its safe share of each lane, else 0.",
		}, func() float64 {
			if rs.Unreachable() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "slideshowd_redis_outages_total",
			Help: "Times Redis (redis_url) became unreachable for this process since it started.",
		}, func() float64 { return float64(rs.Outages()) }),
	)
}

// openShared joins the cluster's shared quota on Redis (redis_url, cluster):
// the scheduler's store becomes the Redis ledger over the bbolt file (jobs
// stay in the bbolt file).
func openShared(ctx context.Context, cfg config.Config, sc scheduler.Config, local *store.Bolt, log zerolog.Logger) (*store.Redis, []*redis.Client, error) {
	opts, err := cfg.RedisURL.Options()
	if err != nil {
		return nil, nil, err
	}
	// The ledger bounds its calls with contexts (a heartbeat 5 s, a change
	// of a key or lane 5 s, the cluster view ClusterTimeout): go-redis
	// ignores their deadlines on the socket unless told.
	opts.ContextTimeoutEnabled = true
	useRedisLog(log, cfg)
	rc := redis.NewClient(opts)
	// The cluster's view (/v1/usage, /metrics, the status page) is read
	// through a client that does not retry, so a Redis refusing connections
	// is said at once, not after ClusterTimeout (see viewClient).
	view, err := viewClient(cfg)
	if err != nil {
		rc.Close()
		return nil, nil, err
	}
	projects := projectsOf(cfg)
	classes := make([]store.RedisClass, len(sc.Classes))
	for i, c := range sc.Classes {
		classes[i] = store.RedisClass{Name: c.Name, RPM: c.Limits.RPM, RPD: c.Limits.RPD, TPM: c.Limits.TPM, Margin: c.WindowMargin}
	}
	rs, err := store.OpenRedis(ctx, local, store.RedisOptions{Client: rc, ViewClient: view, Cluster: cfg.Cluster, Classes: classes, Projects: projects})
	if err != nil {
		rc.Close()
		view.Close()
		return nil, nil, fmt.Errorf("redis_url %s: %w", cfg.RedisURL, err)
	}
	log.Info().Str("redis", cfg.RedisURL.String()).Str("cluster", cfg.Cluster).Str("process", rs.Process()).
		Int("processes", rs.Live()).Msg("sharing quota through Redis")
	return rs, []*redis.Client{rc, view}, nil
}

// viewClient returns a client of redis_url for reading the cluster's view
// (store.RedisOptions.ViewClient): no retry of a command (MaxRetries -1) and
// one dial of a connection (DialerRetries 1), where go-redis's defaults (4
// tries of 5 dials 100 ms apart: about 1.6 s) outlast the view's bound; the
// context's deadline applies to the socket, so a Redis that hangs still
// costs the bound.
func viewClient(cfg config.Config) (*redis.Client, error) {
	opts, err := cfg.RedisURL.Options()
	if err != nil {
		return nil, err
	}
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries, opts.DialerRetries = -1, 1
	return redis.NewClient(opts), nil
}

// redisLog writes go-redis's own messages (a connection pool that failed to
// dial, a connection with unread data, ...) through the process's logger, at
// warn, with the configured secrets, API-key shapes and URL user information
// redacted as in every error the process prints, instead of go-redis's
// plain-text lines on standard error.
type redisLog struct {
	log zerolog.Logger
	red redact.Redactor
}

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	msg := strings.TrimPrefix(l.red.String(fmt.Sprintf(format, v...)), "redis: ")
	l.log.Warn().Str("from", "go-redis").Msg(msg)
}

// useRedisLog makes every go-redis client of the process log through log
// (redisLog). go-redis has one logger per process: the last call wins.
func useRedisLog(log zerolog.Logger, cfg config.Config) {
	redis.SetLogger(redisLog{log: log, red: redactorOf(cfg)})
}

// redactorOf is the redaction of everything the process prints: the
// configured secrets (keys, token, Redis password), API-key shapes, URL
// user information.
func redactorOf(cfg config.Config) redact.Redactor { return redact.New(configSecrets(cfg)...) }

// projectsOf returns the configured keys' projects, in order, once each.
func projectsOf(cfg config.Config) []string {
	var projects []string
	for _, k := range cfg.Keys {
		if !slices.Contains(projects, k.Project) {
			projects = append(projects, k.Project)
		}
	}
	return projects
}

func keyIDs(cfg config.Config) []string {
	ids := make([]string, len(cfg.Keys))
	for i, k := range cfg.Keys {
		ids[i] = k.ID + "@" + k.Project
	}
	return ids
}

// run starts the scheduler, the pipeline and the rolling backups; wait
// blocks until all have returned after ctx ended.
func (d *daemon) run(ctx context.Context) (wait func()) {
	d.ran = true
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		d.runBackups(ctx, time.Duration(d.cfg.Backups.Interval), d.cfg.Backups.Keep, d.log.With().Str("component", "store").Logger())
	}()
	go func() {
		defer wg.Done()
		if err := d.sched.Run(ctx); err != nil {
			d.log.Error().Err(err).Msg("scheduler stopped")
		}
	}()
	go func() {
		defer wg.Done()
		if err := d.pipe.Run(ctx); err != nil {
			d.log.Error().Err(err).Msg("pipeline stopped")
		}
	}()
	return wg.Wait
}

func (d *daemon) close() {
	if d.shared != nil && !d.ran {
		// A start that failed after joining the cluster (the HTTP
		// listener not bound, a batch entry not submitted, ...) took no
		// grant: it leaves nothing counted alive (bounded to a second).
		if err := d.shared.Abandon(context.Background()); err != nil {
			d.log.Warn().Err(err).Msg("leaving the cluster after a failed start: its heartbeat expires in 15 s")
		}
	}
	if d.holder {
		if err := os.Remove(filepath.Join(d.cfg.Data, holderNote)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn().Err(err).Msg("cannot remove the data directory's holder note")
		}
	}
	if err := d.store.Close(); err != nil {
		d.log.Error().Err(err).Msg("closing the store")
	}
	for _, c := range d.redis {
		c.Close()
	}
}

// damagedLine is the one line of a damaged store (start-up and store
// check): the file, what is wrong and, unless the problem says it already,
// the way back. Nothing was changed.
func damagedLine(cfg config.Config, err error) string {
	msg := redactError(cfg, err)
	if !strings.Contains(msg, "store restore") {
		msg += "; see slideshowd store restore"
	}
	return msg
}

// openError prints why the daemon could not start, saying so plainly when
// the data directory is held by another process.
func openError(e env, cfg config.Config, err error) int {
	if errors.Is(err, store.ErrDamaged) {
		fmt.Fprintln(e.stderr, "slideshowd:", damagedLine(cfg, err))
		return exitBadArgs
	}
	if errors.Is(err, store.ErrLocked) {
		fmt.Fprintf(e.stderr, "slideshowd: %s is in use by another slideshowd (serve or batch); stop it or use another data directory (SLIDESHOWD_DATA)\n",
			filepath.Join(cfg.Data, StoreFile))
		return exitFailed
	}
	fmt.Fprintln(e.stderr, "slideshowd:", strings.TrimPrefix(redactError(cfg, err), "slideshowd: "))
	return exitFailed
}

// configSecrets returns the configured secrets: the keys' and the token.
func configSecrets(cfg config.Config) []string {
	out := []string{cfg.Token}
	for _, k := range cfg.Keys {
		out = append(out, k.Secret)
	}
	if o, err := cfg.RedisURL.Options(); cfg.RedisURL != "" && err == nil {
		out = append(out, o.Password)
	}
	return out
}

// redactError returns err's text without the configured secrets, API-key-
// shaped strings or URL user information: every error a command prints
// goes through it.
func redactError(cfg config.Config, err error) string {
	return redactorOf(cfg).String(err.Error())
}
