package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/slideshowd/slideshowd/internal/httpapi"
	"github.com/slideshowd/slideshowd/scheduler"
)

// HTTP server timeouts of serve. Writes allow for the longest long poll
// (GET /v1/slideshows/{id}?wait=60s) and for a 4K image to a slow client.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 2 * time.Minute
	writeTimeout      = httpapi.MaxWait + time.Minute
	idleTimeout       = 2 * time.Minute
)

func cmdServe(ctx context.Context, e env, args []string) int {
	fs := newFlagSet("serve", e)
	cfgPath := fs.String("config", "", "config file (default: slideshowd.yaml when present)")
	addr := fs.String("addr", "", "listen address (default: the config's listen, 127.0.0.1:8080)")
	drainFlag := fs.Duration("drain", defaultDrain, "after SIGTERM or SIGINT, how long the listener stays open with /readyz 503 even when nothing runs, so load balancers see the 503 and stop sending (bounded by shutdown_grace); 0: close once running calls end")
	refresh := fs.Duration("page-refresh", httpapi.DefaultPageRefresh, "how often the status page (GET /) reloads itself, in whole seconds; 0: never")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) != 0 {
		fmt.Fprintf(e.stderr, "slideshowd serve: unexpected argument %q\n", pos[0])
		return exitBadArgs
	}
	// The page reloads in whole seconds (its refresh header): a negative
	// value read as never and 1500ms as 1s, without a word.
	switch {
	case *refresh < 0:
		fmt.Fprintf(e.stderr, "slideshowd serve: -page-refresh %s: must not be negative (0: never)\n", *refresh)
		return exitBadArgs
	case *refresh%time.Second != 0:
		fmt.Fprintf(e.stderr, "slideshowd serve: -page-refresh %s: want whole seconds (1s, 5s, 1m; 0: never): the page reloads in seconds\n", *refresh)
		return exitBadArgs
	}
	if *drainFlag < 0 {
		fmt.Fprintf(e.stderr, "slideshowd serve: -drain %s: must not be negative (0: no drain period)\n", *drainFlag)
		return exitBadArgs
	}
	cfg, warnings, ok := loadConfig(e, *cfgPath, forCalls)
	if !ok {
		return exitBadArgs
	}
	if *addr != "" {
		cfg.Listen = *addr
		if err := cfg.Validate(); err != nil {
			fmt.Fprintln(e.stderr, "slideshowd: -addr:", err)
			return exitBadArgs
		}
	}
	if cfg.Token == "" && !loopbackAddr(cfg.Listen) {
		fmt.Fprintln(e.stderr, openAPIRefusal(cfg.Listen))
		return exitBadArgs
	}
	log := newLogger(e, cfg.Log, 0)
	for _, w := range warnings {
		log.Warn().Msg(w)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := httpapi.NewMetrics(reg)
	d, err := openDaemon(ctx, cfg, log, daemonOptions{observer: metrics})
	if err != nil {
		return openError(e, cfg, err)
	}
	defer d.close()
	// The scheduler's summary with the waits of the jobs parked for the
	// next day (their calls are out of the scheduler's queues).
	summary := func() scheduler.Summary { return d.pipe.WithParked(d.sched.Summary()) }
	metrics.Attach(summary)
	if d.shared != nil {
		registerSharedMetrics(reg, d.shared)
	}

	// Closed at the signal: new work answers 503, long polls answer.
	stopping := make(chan struct{})
	hcfg := httpapi.Config{
		Service: d.pipe, Summary: summary, Keys: d.sched, Lanes: d.sched, Token: cfg.Token, MaxBodyBytes: cfg.MaxBodyBytes,
		Secrets: configSecrets(cfg), Logger: log, Metrics: metrics,
		Stopping: stopping, Backup: d.store.Backup, PageRefresh: *refresh,
	}
	if d.shared != nil {
		hcfg.Shared = d.shared.Health
	}
	if *refresh <= 0 {
		hcfg.PageRefresh = -1
	}
	if err := hcfg.Validate(); err != nil {
		fmt.Fprintf(e.stderr, "slideshowd: %s: %s\n", "SLIDESHOWD_TOKEN", redactError(cfg, err))
		return exitBadArgs
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintln(e.stderr, "slideshowd:", redactError(cfg, err))
		return exitFailed
	}
	// The name was checked above; what was bound decides (a name may have
	// resolved differently since).
	if tcp, ok := ln.Addr().(*net.TCPAddr); cfg.Token == "" && (!ok || !tcp.IP.IsLoopback()) {
		ln.Close()
		fmt.Fprintln(e.stderr, openAPIRefusal(ln.Addr().String()))
		return exitBadArgs
	}
	srv := &http.Server{
		Handler:           limitReserved(httpapi.New(hcfg)),
		ConnContext:       connContext,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
	}
	ln = newConnLimit(ln, cfg.MaxConnections, srv)

	// The core runs until the stop signal, then gets the shutdown grace
	// while the server keeps answering (see below); what is left stays
	// stored for the next start.
	coreCtx, stopCore := context.WithCancel(context.WithoutCancel(ctx))
	wait := d.run(coreCtx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Bool("auth", cfg.Token != "").Msg("serving the HTTP API")
	d.writeHolder("serve " + ln.Addr().String())

	code := exitOK
	serverDone := false
	select {
	case err := <-errc:
		log.Error().Err(err).Msg("HTTP server failed")
		code = exitFailed
		serverDone = true
	case <-ctx.Done():
	}
	// The whole stop takes one grace. The server keeps its listener while
	// the core stops, and for the drain period at least (bounded by the
	// grace) even when nothing runs, so clients and load balancers get
	// answers, not refused connections, and a load balancer polling
	// /readyz sees its 503 before the listener closes: requests other than
	// GET and HEAD answer 503 with Retry-After, /readyz 503, long polls
	// answer at once, and connections are not kept alive. The scheduler and
	// pipeline start nothing new and running calls get the grace; then the
	// listener closes and requests still running get what is left of the
	// grace plus a second. A second signal ends the process at once.
	start := time.Now()
	deadline := start.Add(cfg.Grace() + time.Second)
	drain := min(*drainFlag, cfg.Grace())
	close(stopping)
	srv.SetKeepAlivesEnabled(false)
	// Logged once it is true: a client that reads this line and then
	// submits gets the 503.
	if !serverDone {
		log.Info().Dur("grace", cfg.Grace()).Dur("drain", drain).Msg("stopping: new work answers 503 (Retry-After), /readyz 503; running calls may finish; the listener stays open meanwhile, for the drain period at least")
	}
	stopCore()
	wait()
	if left := time.Until(start.Add(drain)); left > 0 && !serverDone {
		select {
		case <-time.After(left):
		case err := <-errc:
			errc <- err // the server failed: no one to drain for
		}
	}
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn().Err(err).Msg("HTTP shutdown")
	}
	cancel()
	if !serverDone {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn().Err(err).Msg("HTTP server")
		}
	}
	log.Info().Msg("stopped; unfinished jobs resume at the next start")
	return code
}

// defaultDrain is serve -drain's default: how long the listener stays open
// with /readyz 503 after the stop signal, at least, so that a load balancer
// polling /readyz every few seconds takes the process out before its
// connections are refused.
const defaultDrain = 5 * time.Second

// loopbackAddr reports whether the listen address host:port can only be
// reached from this machine: a loopback IP, "localhost", or a name every
// address of which is loopback. An empty host (every interface), an
// unspecified IP or a name that does not resolve is not loopback.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// openAPIRefusal is the one line serve exits with when it would serve the
// API without a token on an address other machines can reach.
func openAPIRefusal(addr string) string {
	return fmt.Sprintf("slideshowd serve: listen address %s is not loopback and SLIDESHOWD_TOKEN is not set, "+
		"so anyone who reaches it could disable keys and download the store; "+
		"set SLIDESHOWD_TOKEN (at least 16 printable characters) or listen on 127.0.0.1", addr)
}
