package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/config"
)

// StatsPath is where `slideshowd emulate` serves the emulator's counters.
const StatsPath = "/_emulator/stats"

// emulateFlags are the emulator's settings on the command line.
type emulateFlags struct {
	addr                            string
	keys, projects                  int
	leaked, expired                 string
	outOfCredit, billing, noQuota   string
	fenced, numbers, mislabeled     float64
	textModel, imageModel           string
	textRPM, textRPD, textTPM       int
	imageRPM, imageRPD, imageTPM    int
	layout                          string
	freeTier, truncate              bool
	rate503, rate500, rate504       float64
	noImage, malformedJSON, blocked float64
	textLatency, imageLatency       string
	seed                            int64
}

func (f *emulateFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8090", "listen address")
	fs.IntVar(&f.keys, "keys", 3, "number of keys to generate (key1..keyN), unless GEMINI_API_KEYS is set")
	fs.IntVar(&f.projects, "projects", 0, "number of projects the keys are spread over, round-robin, named project1..N (at most -keys; default: one per key, named as the key: key1..)")
	fs.StringVar(&f.leaked, "leaked", "", "comma-separated key ids answered 403 'reported as leaked'")
	fs.StringVar(&f.expired, "expired", "", "comma-separated key ids answered 400 'API key expired' (ErrorInfo API_KEY_INVALID)")
	fs.StringVar(&f.outOfCredit, "out-of-credit", "", "comma-separated projects whose every request answers 429 'Your prepayment credits are depleted' (no details)")
	fs.StringVar(&f.billing, "billing-required", "", "comma-separated projects whose every request answers 400 FAILED_PRECONDITION '... without a billing account linked'")
	fs.StringVar(&f.noQuota, "no-quota", "", "comma-separated PROJECT:MODEL (MODEL: text, image or a model name) with a limit of 0: 429 naming the quota with limit 0")
	fs.StringVar(&f.textModel, "text-model", emulator.DefaultTextModel, "text model served")
	fs.StringVar(&f.imageModel, "image-model", emulator.DefaultImageModel, "image model served")
	fs.IntVar(&f.textRPM, "text-rpm", 1000, "text model: requests per minute per project (0: unlimited)")
	fs.IntVar(&f.textRPD, "text-rpd", 10000, "text model: requests per Pacific day per project (0: unlimited)")
	fs.IntVar(&f.textTPM, "text-tpm", 0, "text model: input tokens per minute per project (0: unlimited)")
	fs.IntVar(&f.imageRPM, "image-rpm", 20, "image model: requests per minute per project (0: unlimited)")
	fs.IntVar(&f.imageRPD, "image-rpd", 250, "image model: requests per Pacific day per project (0: unlimited)")
	fs.IntVar(&f.imageTPM, "image-tpm", 0, "image model: input tokens per minute per project (0: unlimited)")
	fs.StringVar(&f.layout, "layout", "2025", "429 body layout: 2025, 2026, bare, help-only or errorinfo")
	fs.BoolVar(&f.freeTier, "free-tier", false, "free-tier quota ids (-FreeTier suffix)")
	fs.BoolVar(&f.truncate, "truncate-retry-delay", false, "whole-second retryDelay, as the real API sends")
	fs.Float64Var(&f.rate503, "rate503", 0, "fraction of requests answered 503 UNAVAILABLE")
	fs.Float64Var(&f.rate500, "rate500", 0, "fraction of requests answered 500 INTERNAL")
	fs.Float64Var(&f.rate504, "rate504", 0, "fraction of requests answered 504 DEADLINE_EXCEEDED")
	fs.Float64Var(&f.noImage, "no-image", 0, "fraction of image answers without an image (IMAGE_SAFETY)")
	fs.Float64Var(&f.malformedJSON, "malformed-json", 0, "fraction of JSON answers cut short")
	fs.Float64Var(&f.blocked, "blocked", 0, "fraction of answers blocked (PROHIBITED_CONTENT)")
	fs.Float64Var(&f.fenced, "fenced-json", 0, "fraction of JSON answers wrapped in a ```json fence with a sentence around")
	fs.Float64Var(&f.numbers, "wrong-numbers", 0, "fraction of JSON answers whose array objects carry an 'index' not asked for, from 5")
	fs.Float64Var(&f.mislabeled, "mislabeled-image", 0, "fraction of image answers whose bytes are JPEG while labeled image/png")
	fs.StringVar(&f.textLatency, "text-latency", "0", "text answer latency: a duration or a range MIN-MAX (e.g. 200ms-2s)")
	fs.StringVar(&f.imageLatency, "image-latency", "0", "image answer latency: a duration or a range MIN-MAX (e.g. 5s-20s)")
	fs.Int64Var(&f.seed, "seed", 0, "seed of faults, latency and outputs (0: random)")
}

// latencyRange parses "D" or "MIN-MAX".
func latencyRange(s string) (lo, hi time.Duration, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = time.ParseDuration(a); err != nil {
		return 0, 0, fmt.Errorf("%q: not a duration or MIN-MAX range", s)
	}
	hi = lo
	if isRange {
		if hi, err = time.ParseDuration(b); err != nil || hi < lo {
			return 0, 0, fmt.Errorf("%q: want MIN-MAX with MIN <= MAX", s)
		}
	}
	if lo < 0 {
		return 0, 0, fmt.Errorf("%q: must be >= 0", s)
	}
	return lo, hi, nil
}

// emulatorConfig builds the emulator's configuration; keys are generated
// (secret random, spread over -projects) unless given (from
// GEMINI_API_KEYS, with their projects).
func (f *emulateFlags) emulatorConfig(given []config.Key) (emulator.Config, error) {
	cfg := emulator.Config{
		Models: map[string]emulator.Limits{
			f.textModel:  {RPM: f.textRPM, RPD: f.textRPD, TPM: f.textTPM},
			f.imageModel: {RPM: f.imageRPM, RPD: f.imageRPD, TPM: f.imageTPM},
		},
		FreeTier:           f.freeTier,
		TruncateRetryDelay: f.truncate,
		Seed:               f.seed,
		Faults: emulator.Faults{Rate503: f.rate503, Rate500: f.rate500, Rate504: f.rate504,
			NoImage: f.noImage, MalformedJSON: f.malformedJSON, Blocked: f.blocked,
			FencedJSON: f.fenced, WrongNumbers: f.numbers, MislabeledImage: f.mislabeled},
	}
	if cfg.Seed == 0 {
		cfg.Seed = mrand.Int64()
	}
	switch f.layout {
	case "2025":
		cfg.Layout = emulator.Layout2025
	case "2026":
		cfg.Layout = emulator.Layout2026
	case "bare":
		cfg.Layout = emulator.LayoutBare
	case "help-only":
		cfg.Layout = emulator.LayoutHelpOnly
	case "errorinfo":
		cfg.Layout = emulator.LayoutErrorInfo
	default:
		return cfg, fmt.Errorf("-layout: %q: want 2025, 2026, bare, help-only or errorinfo", f.layout)
	}
	tlo, thi, err := latencyRange(f.textLatency)
	if err != nil {
		return cfg, fmt.Errorf("-text-latency: %v", err)
	}
	ilo, ihi, err := latencyRange(f.imageLatency)
	if err != nil {
		return cfg, fmt.Errorf("-image-latency: %v", err)
	}
	if thi > 0 || ihi > 0 {
		text, image := emulator.UniformLatency(tlo, thi), emulator.UniformLatency(ilo, ihi)
		imageModel := f.imageModel
		cfg.Faults.Latency = func(model string, r *mrand.Rand) time.Duration {
			if model == imageModel {
				return image(model, r)
			}
			return text(model, r)
		}
	}
	n := f.keys
	if len(given) > 0 {
		n = len(given)
	}
	if n < 1 {
		return cfg, fmt.Errorf("-keys: %d: must be > 0", n)
	}
	projects := f.projects
	if projects <= 0 || projects > n {
		projects = n
	}
	leaked, expired := idSet(f.leaked), idSet(f.expired)
	for i := range n {
		name := fmt.Sprintf("key%d", i+1)
		secret := demoSecret()
		project := fmt.Sprintf("project%d", i%projects+1)
		if f.projects <= 0 {
			project = name // one per key, named as the key
		}
		if len(given) > 0 {
			secret, project = given[i].Secret, given[i].Project
		}
		cfg.Keys = append(cfg.Keys, emulator.Key{Name: name, Secret: secret, Project: project, Leaked: leaked[name], Expired: expired[name]})
		delete(leaked, name)
		delete(expired, name)
	}
	for id := range leaked {
		return cfg, fmt.Errorf("-leaked: %q: no such key (key1..key%d)", id, n)
	}
	for id := range expired {
		return cfg, fmt.Errorf("-expired: %q: no such key (key1..key%d)", id, n)
	}
	if err := f.projectStates(&cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// idSet reads a comma-separated list.
func idSet(list string) map[string]bool {
	out := map[string]bool{}
	for _, id := range strings.Split(list, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out[id] = true
		}
	}
	return out
}

// projectStates reads -out-of-credit, -billing-required and -no-quota into
// cfg.Projects; every project named must be one of cfg.Keys'.
func (f *emulateFlags) projectStates(cfg *emulator.Config) error {
	known := map[string]bool{}
	var names []string
	for _, k := range cfg.Keys {
		if !known[k.Project] {
			names = append(names, k.Project)
		}
		known[k.Project] = true
	}
	get := func(flagName, project string) (emulator.Project, error) {
		if !known[project] {
			return emulator.Project{}, fmt.Errorf("-%s: %q: no such project (%s)", flagName, project, strings.Join(names, ", "))
		}
		if cfg.Projects == nil {
			cfg.Projects = map[string]emulator.Project{}
		}
		return cfg.Projects[project], nil
	}
	for project := range idSet(f.outOfCredit) {
		p, err := get("out-of-credit", project)
		if err != nil {
			return err
		}
		p.OutOfCredit = true
		cfg.Projects[project] = p
	}
	for project := range idSet(f.billing) {
		p, err := get("billing-required", project)
		if err != nil {
			return err
		}
		p.BillingRequired = true
		cfg.Projects[project] = p
	}
	for entry := range idSet(f.noQuota) {
		project, model, ok := strings.Cut(entry, ":")
		switch model = strings.TrimSpace(model); model {
		case "text":
			model = f.textModel
		case "image":
			model = f.imageModel
		}
		if !ok || model == "" {
			return fmt.Errorf("-no-quota: %q: want PROJECT:MODEL (MODEL: text, image or a model name)", entry)
		}
		if model != f.textModel && model != f.imageModel {
			return fmt.Errorf("-no-quota: %q: model %q not served (%s, %s)", entry, model, f.textModel, f.imageModel)
		}
		p, err := get("no-quota", strings.TrimSpace(project))
		if err != nil {
			return err
		}
		p.NoQuota = append(p.NoQuota, model)
		cfg.Projects[strings.TrimSpace(project)] = p
	}
	return nil
}

// demoSecret returns a random emulator key, shaped like a Gemini key.
func demoSecret() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := []byte("AIzaEMU-")
	for len(b) < 39 {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b = append(b, alphabet[n.Int64()])
	}
	return string(b)
}

func cmdEmulate(ctx context.Context, e env, args []string) int {
	fs := newFlagSet("emulate", e)
	var f emulateFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: slideshowd emulate [-addr HOST:PORT] [flags]")
		fmt.Fprintln(e.stderr, "Serves an emulator of the Gemini API (quotas, 429 bodies, faults, deterministic outputs).")
		fmt.Fprintln(e.stderr, "Its keys are its own: generated and printed, or taken from GEMINI_API_KEYS when set (not printed).")
		fmt.Fprintf(e.stderr, "GET %s shows what it served.\n", StatsPath)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) != 0 {
		fmt.Fprintf(e.stderr, "slideshowd emulate: unexpected argument %q\n", pos[0])
		return exitBadArgs
	}
	var given []config.Key
	fromEnv := false
	if v := strings.TrimSpace(e.getenv(config.EnvKeys)); v != "" {
		if given, err = config.ParseEnvKeys(v); err != nil {
			fmt.Fprintln(e.stderr, "slideshowd emulate:", err)
			return exitBadArgs
		}
		fromEnv = true
	}
	ecfg, err := f.emulatorConfig(given)
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd emulate:", err)
		return exitBadArgs
	}
	em, err := emulator.New(ecfg)
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd emulate:", err)
		return exitBadArgs
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd emulate:", err)
		return exitFailed
	}
	base := "http://" + ln.Addr().String() + "/"
	fmt.Fprintf(e.stdout, "Gemini API emulator on %s (models %s, %s)\n", base, f.textModel, f.imageModel)
	if fromEnv {
		fmt.Fprintf(e.stdout, "keys: %d from %s (not shown)\n", len(ecfg.Keys), config.EnvKeys)
	} else {
		fmt.Fprintln(e.stdout, "These keys are the emulator's own, generated now; they are not Gemini keys and work nowhere else:")
		// The export line keeps the grouping: PROJECT:SECRET entries for
		// -projects' project1..N (a key alone is a project of its own,
		// named as the key).
		var all []string
		for _, k := range ecfg.Keys {
			fmt.Fprintf(e.stdout, "  %s (project %s): %s\n", k.Name, k.Project, k.Secret)
			if k.Project != k.Name {
				all = append(all, k.Project+":"+k.Secret)
			} else {
				all = append(all, k.Secret)
			}
		}
		fmt.Fprintln(e.stdout, "Point slideshowd at it (GEMINI_API_KEYS entries are SECRET or PROJECT:SECRET):")
		fmt.Fprintf(e.stdout, "  export GEMINI_BASE_URL=%s GEMINI_API_KEYS=%s\n", base, strings.Join(all, ","))
	}
	srv, ln := emulatorServer(emulatorHandler(em), ln)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintln(e.stderr, "slideshowd emulate:", err)
		return exitFailed
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintln(e.stderr, "slideshowd emulate:", err)
	}
	<-errc
	return exitOK
}

// emulatorHandler serves em, and its stats as JSON on GET StatsPath: the
// handler of `slideshowd emulate` and of the demo's emulator.
func emulatorHandler(em *emulator.Emulator) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+StatsPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(statsJSON(em.Stats()))
	})
	mux.Handle("/", em)
	return mux
}

// emulatorServer returns the server of `slideshowd emulate` and the
// listener to serve it on: ln, through emulator.RecordReceiveTimes, so the
// emulator counts a request when its bytes reached this machine (the
// kernel's receive time), as a remote API would, not when this process got
// the CPU to read them.
func emulatorServer(h http.Handler, ln net.Listener) (*http.Server, net.Listener) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	return srv, emulator.RecordReceiveTimes(srv, ln)
}

// emulatorStats is the JSON form of emulator.Stats.
type emulatorStats struct {
	Requests    []requestCount `json:"requests"`
	RateLimited map[string]int `json:"rate_limited"`
	Day         []laneCount    `json:"day"`
	MaxWindow   []laneCount    `json:"max_window"`
	// What the API saw per lane, admitted or not: arrival times, the most
	// in any 60 s window, and the 429s for a per-minute quota.
	Sent                 []laneTimes `json:"sent"`
	MaxSentWindow        []laneCount `json:"max_sent_window"`
	RateLimitedPerMinute []laneCount `json:"rate_limited_per_minute"`
}

type laneTimes struct {
	Project string      `json:"project"`
	Model   string      `json:"model"`
	Times   []time.Time `json:"times"`
}

type requestCount struct {
	Key    string `json:"key"`
	Model  string `json:"model"`
	Status int    `json:"status"`
	Count  int    `json:"count"`
}

type laneCount struct {
	Project string `json:"project"`
	Model   string `json:"model"`
	Count   int    `json:"count"`
}

func statsJSON(s emulator.Stats) emulatorStats {
	out := emulatorStats{RateLimited: s.RateLimited}
	if out.RateLimited == nil {
		out.RateLimited = map[string]int{}
	}
	for k, n := range s.Requests {
		out.Requests = append(out.Requests, requestCount{Key: k.Key, Model: k.Model, Status: k.Status, Count: n})
	}
	sort.Slice(out.Requests, func(i, j int) bool {
		a, b := out.Requests[i], out.Requests[j]
		if a.Model != b.Model {
			return a.Model < b.Model
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Status < b.Status
	})
	lanes := func(m map[emulator.LaneKey]int) []laneCount {
		var l []laneCount
		for k, n := range m {
			l = append(l, laneCount{Project: k.Project, Model: k.Model, Count: n})
		}
		sort.Slice(l, func(i, j int) bool {
			if l[i].Model != l[j].Model {
				return l[i].Model < l[j].Model
			}
			return l[i].Project < l[j].Project
		})
		return l
	}
	out.Day, out.MaxWindow = lanes(s.Day), lanes(s.MaxWindow)
	out.MaxSentWindow, out.RateLimitedPerMinute = lanes(s.MaxSentWindow), lanes(s.RateLimitedPerMinute)
	for k, ts := range s.Sent {
		out.Sent = append(out.Sent, laneTimes{Project: k.Project, Model: k.Model, Times: ts})
	}
	sort.Slice(out.Sent, func(i, j int) bool {
		if out.Sent[i].Model != out.Sent[j].Model {
			return out.Sent[i].Model < out.Sent[j].Model
		}
		return out.Sent[i].Project < out.Sent[j].Project
	})
	return out
}
