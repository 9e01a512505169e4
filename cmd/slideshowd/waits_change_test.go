package main

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/scheduler"
)

// TestWatchWaitsChanges: batch -server prints a wait again when it changes
// other than in kind: its estimated end moved by WaitReportAfter or more (a
// join hold found longer), or another wait of the same kind began between
// two reads (a new since: the daemon restarted), whose start ends the
// printed one; a countdown that only runs down, or an end that moves by a
// read's 5 s, prints nothing. Before, consecutive waits of one kind were
// one: a 91 s hold was announced "next slot in 6s" and never ended
// (newcomer9 N9-2).
func TestWatchWaitsChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		wait := func(reason string, since, until time.Duration) []scheduler.ClassSummary {
			return []scheduler.ClassSummary{{Name: "text"}, {Name: "image", Wait: &scheduler.Wait{Class: "image", Kind: scheduler.WaitCluster, Reason: reason,
				Since: start.Add(since), Until: start.Add(until)}}}
		}
		none := []scheduler.ClassSummary{{Name: "text"}, {Name: "image"}}
		seq := &usageSequence{sums: []scheduler.Summary{
			{Classes: wait("waiting for the cluster's window, next slot in 12s", 0, 12*time.Second)},                // t 0: shown
			{Classes: wait("waiting for the cluster's window, next slot in 7s", 0, 12*time.Second)},                 // t 5: a countdown
			{Classes: wait("waiting for the cluster's window, next slot in 7s", 0, 17*time.Second)},                 // t 10: moved 5 s
			{Classes: wait("joined, waiting for the cluster, next slot in 1m31s", 15*time.Second, 106*time.Second)}, // t 15: another wait (restart)
			{Classes: wait("joined, waiting for the cluster, next slot in 1m26s", 15*time.Second, 106*time.Second)}, // t 20
			{Classes: wait("joined, waiting for the cluster, next slot in 1m41s", 15*time.Second, 126*time.Second)}, // t 25: the hold extended
			{Classes: none}, // t 30
		}}
		out := watchWaitsFor(seq, 7*waitsEvery)
		at := func(d time.Duration) string { return start.Add(d).Local().Format(time.TimeOnly) }
		want := at(0) + " image: waiting: waiting for the cluster's window, next slot in 12s\n" +
			at(15*time.Second) + " image: resumed after 15s\n" +
			at(15*time.Second) + " image: waiting: joined, waiting for the cluster, next slot in 1m31s\n" +
			at(25*time.Second) + " image: waiting: joined, waiting for the cluster, next slot in 1m41s\n" +
			at(30*time.Second) + " image: resumed after 15s\n"
		if out != want {
			t.Errorf("lines:\n%s\nwant:\n%s", out, want)
		}
	})
}

// watchWaitsFor runs watchWaits for d (in a synctest bubble) on the
// daemon's usage answers seq, for a batch whose job makes its image, and
// returns the lines it printed.
func watchWaitsFor(seq *usageSequence, d time.Duration) string {
	var out bytes.Buffer
	tr := generatingTracker(&out)
	c := &daemonClient{base: "http://daemon.test", http: &http.Client{Transport: seq}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.watchWaits(ctx, tr) }()
	time.Sleep(d)
	cancel()
	<-done
	return out.String()
}
