package main

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/slideshowd/slideshowd/examples"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/config"
)

// demoKeys is the number of emulated keys (each its own project) of the demo.
const demoKeys = 5

func cmdDemo(ctx context.Context, e env, args []string) int {
	fs := newFlagSet("demo", e)
	cfgPath := fs.String("config", "", "config file for the limits, images and log settings (default: slideshowd.yaml when present); its keys, base_url and data are replaced by the demo's own, and its redis_url is ignored")
	out := fs.String("out", "out", "output directory")
	batchFile := fs.String("batch", "", "batch file to run (default: the built-in examples/batch.json)")
	progress := fs.String("progress", "auto", "progress display: auto, bar, lines or none")
	verbose := fs.Bool("v", false, "log at info level")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) != 0 {
		fmt.Fprintf(e.stderr, "slideshowd demo: unexpected argument %q\n", pos[0])
		return exitBadArgs
	}
	mode, ok := progressMode(*progress, e.stdout)
	if !ok {
		fmt.Fprintf(e.stderr, "slideshowd: -progress: %q: want auto, bar, lines or none\n", *progress)
		return exitBadArgs
	}
	if !outDirOK(e, "demo", *out) {
		return exitBadArgs
	}

	// The batch: built in, or a file.
	name, data, readImage := examples.BatchFile, []byte(nil), func(p string) ([]byte, error) {
		return fsReadFile(examples.Batch, p)
	}
	if *batchFile != "" {
		name = *batchFile
		base := filepath.Dir(name)
		readImage = func(p string) ([]byte, error) {
			if !filepath.IsAbs(p) {
				p = filepath.Join(base, p)
			}
			return os.ReadFile(p)
		}
		data, err = os.ReadFile(name)
	} else {
		data, err = fsReadFile(examples.Batch, examples.BatchFile)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "slideshowd: %s: %s\n", name, fileProblem(err))
		return exitBadArgs
	}
	entries, err := parseBatch(name, data, readImage)
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd:", err)
		return exitBadArgs
	}

	// The emulator, on a loopback socket: the calls go through the
	// scheduler, the genai SDK and HTTP, as they would to Google.
	ecfg := emulator.Config{
		Seed: 1,
		Faults: emulator.Faults{Latency: func(model string, r *rand.Rand) time.Duration {
			if model == emulator.DefaultImageModel {
				return 200*time.Millisecond + time.Duration(r.Int64N(int64(400*time.Millisecond)))
			}
			return 100*time.Millisecond + time.Duration(r.Int64N(int64(200*time.Millisecond)))
		}},
	}
	var demoSecrets []string
	for i := range demoKeys {
		id := fmt.Sprintf("key%d", i+1)
		secret := demoSecret()
		ecfg.Keys = append(ecfg.Keys, emulator.Key{Name: id, Secret: secret})
		demoSecrets = append(demoSecrets, secret)
	}
	em, err := emulator.New(ecfg)
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd demo:", err)
		return exitFailed
	}
	emAddr, stopEmulator, err := startDemoEmulator(emulatorHandler(em))
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd demo:", err)
		return exitFailed
	}
	defer stopEmulator()

	dataDir, err := os.MkdirTemp("", "slideshowd-demo-")
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd demo:", err)
		return exitFailed
	}
	defer os.RemoveAll(dataDir)
	// The configuration (limits, images, log, grace) with the demo's keys,
	// emulator and temporary data directory in place of the environment.
	demoEnv := map[string]string{
		config.EnvKeys:    strings.Join(demoSecrets, ","),
		config.EnvBaseURL: "http://" + emAddr + "/",
		config.EnvData:    dataDir,
	}
	cfg, warnings, ok := loadConfig(env{stderr: e.stderr, getenv: func(k string) string { return demoEnv[k] }}, *cfgPath, forCalls)
	if !ok {
		return exitBadArgs
	}
	// The demo's emulated keys are the demo's own: it shares no quota
	// through the file's Redis (it would take grants on the cluster's lanes
	// key1..key5 and register the demo's limits there).
	cfg.RedisURL = ""
	log := newLogger(e, cfg.Log, quietLevel(*verbose))
	for _, w := range warnings {
		log.Warn().Msg(w)
	}

	images := 0
	for _, en := range entries {
		images += en.req.Images
	}
	fmt.Fprintf(e.stdout, "slideshowd demo: %d slideshows, %d images, on a Gemini API emulator at %s\n", len(entries), images, cfg.BaseURL)
	fmt.Fprintf(e.stdout, "%d emulated keys (key1..key%d, each its own project), limits text %s RPM %s/day, image %s RPM %s/day per project\n\n",
		demoKeys, demoKeys, thousands(cfg.Classes.Text.RPM), thousands(cfg.Classes.Text.RPD),
		thousands(cfg.Classes.Image.RPM), thousands(cfg.Classes.Image.RPD))

	code := runBatch(ctx, e, cfg, log, entries, *out, mode, daemonOptions{atEnd: func(d *daemon) {
		printUsage(e.stdout, d.sched.Summary(), cfg)
	}})
	st := em.Stats()
	fmt.Fprintf(e.stdout, "\nemulator: %s (%d text, %d image), %d answered 429\n",
		plural(st.Total(), "request", "requests"), modelRequests(st, emulator.DefaultTextModel), modelRequests(st, emulator.DefaultImageModel), st.Status(http.StatusTooManyRequests))
	return code
}

func modelRequests(s emulator.Stats, model string) int {
	n := 0
	for k, c := range s.Requests {
		if k.Model == model {
			n += c
		}
	}
	return n
}

// fsReadFile reads a slash-separated path relative to the root of fsys.
func fsReadFile(fsys fs.FS, p string) ([]byte, error) {
	return fs.ReadFile(fsys, path.Clean(p))
}

// startDemoEmulator serves h (the demo's emulator) on a loopback port, as
// `slideshowd emulate` serves its own (emulatorServer: requests count at
// the kernel's receive time, not when the emulator got the CPU to read
// them). It returns the address (host:port) and a stop that closes the
// server and waits for it.
func startDemoEmulator(h http.Handler) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv, ln := emulatorServer(h, ln)
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	return ln.Addr().String(), func() {
		srv.Close()
		<-served
	}, nil
}
