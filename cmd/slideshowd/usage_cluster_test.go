package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/scheduler"
)

// TestREADMEClusterJSON: the README's example of /v1/usage's cluster view
// decodes into the summary with no unknown field, its lanes' totals are the
// sums of the processes' parts, and printUsage shows it as usage does.
func TestREADMEClusterJSON(t *testing.T) {
	dec := json.NewDecoder(strings.NewReader(readmeBlock(t, "json", `"cluster"`)))
	dec.DisallowUnknownFields()
	var sum scheduler.Summary
	if err := dec.Decode(&sum); err != nil {
		t.Fatal(err)
	}
	c := sum.Cluster
	if c == nil || c.Name == "" || c.Process == "" || len(c.Processes) == 0 || len(c.Lanes) == 0 {
		t.Fatalf("README's cluster: %+v", c)
	}
	for _, l := range c.Lanes {
		day, win := 0, 0
		for _, p := range l.Processes {
			day += p.DayUsed
			win += p.WindowUsed
		}
		if day != l.DayUsed || win != l.WindowUsed || l.WindowUsed > l.RPMLimit || l.DayUsed > l.DayLimit {
			t.Errorf("README's lane %s/%s: totals %d, %d; the processes' parts sum to %d, %d", l.Class, l.Project, l.WindowUsed, l.DayUsed, win, day)
		}
	}
	var out bytes.Buffer
	printCluster(&out, c)
	for _, want := range []string{"cluster slideshowd (shared through Redis), day 2026-03-01 (Pacific): 3 processes alive",
		"web-1-3141-9f2c01ab (this one)", "old-3-1414-5e6f7a8b (gone)", "19/20", "212/250"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printCluster without %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "tokens") {
		t.Errorf("printCluster shows tokens for lanes without TPM:\n%s", out.String())
	}
	t.Logf("usage's cluster section:%s", out.String())
	out.Reset()
	printCluster(&out, &scheduler.ClusterSummary{Name: "c", Day: "2026-03-01", Error: "Redis did not answer: x"})
	if want := "\ncluster c (shared through Redis), day 2026-03-01 (Pacific): Redis did not answer: x\n"; out.String() != want {
		t.Errorf("printCluster with an error: %q, want %q", out.String(), want)
	}
}

// TestClusterTokens: usage shows the shared token window of the lanes with
// TPM, with each process's part.
func TestClusterTokens(t *testing.T) {
	var out bytes.Buffer
	printCluster(&out, &scheduler.ClusterSummary{Name: "c", Day: "2026-03-01", Processes: []string{"a", "b"},
		Lanes: []scheduler.ClusterLaneUsage{
			{Class: "image", Project: "p1", WindowUsed: 1, RPMLimit: 20, DayUsed: 1, DayLimit: 250},
			{Class: "text", Project: "p1", WindowUsed: 4, RPMLimit: 900, DayUsed: 4, DayLimit: 9000, TokensUsed: 3500, TPMLimit: 4000,
				Processes: []scheduler.ClusterProcessLane{{Process: "a", Alive: true, TokensUsed: 1200}, {Process: "b", Alive: true, TokensUsed: 2300}}},
		}})
	want := "  tokens (input tokens budgeted by grants in the last 60 s, actual counts above the estimates added):\n" +
		"  text p1: 3,500/4,000 TPM (a 1,200, b 2,300)\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("printCluster:\n%s\nwant it to end with\n%s", out.String(), want)
	}
}

// TestUsageClusterDayOffline: usage reading the data directory with no
// daemon answering takes the cluster's day from Redis's view (clusterDay):
// the class line's used and left and the lanes' TODAY are the cluster's,
// the data directory's own counts labelled as its part, and critical is
// the cluster's. It used to print "today 26 used, 974 left" above a cluster
// section at 190/500 and 198/500. When Redis does not answer, the line says
// the cluster's use is unknown.
func TestUsageClusterDayOffline(t *testing.T) {
	now := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	sum := scheduler.Summary{Time: now, Classes: []scheduler.ClassSummary{{Name: "image", Day: "2026-12-01", Keys: 2, RPMLimit: 40,
		DayUsed: 26, DayLimit: 1000, DayRemaining: 974, Lanes: []scheduler.LaneSummary{
			{Project: "p1", Keys: []string{"key1"}, Enabled: true, RPMLimit: 20, DayUsed: 14, DayLimit: 500},
			{Project: "p2", Keys: []string{"key2"}, Enabled: true, RPMLimit: 20, DayUsed: 12, DayLimit: 500},
		}}},
		Cluster: &scheduler.ClusterSummary{Name: "c", Day: "2026-12-01", Processes: []string{"web-1"}, Lanes: []scheduler.ClusterLaneUsage{
			{Class: "image", Project: "p1", DayUsed: 190, DayLimit: 500}, {Class: "image", Project: "p2", DayUsed: 198, DayLimit: 500}}}}
	clusterDay(&sum, 0.9)
	if c := sum.Classes[0]; c.ClusterDayUsed != 388 || c.DayRemaining != 612 || c.Critical || c.Lanes[0].ClusterDayUsed != 190 || c.Lanes[1].ClusterDayUsed != 198 {
		t.Errorf("clusterDay: %+v", c)
	}
	var out bytes.Buffer
	printUsage(&out, sum, config.Config{})
	for _, want := range []string{"today 388 used by the cluster (26 by this data directory), 612 left",
		"TODAY CLUSTER/LIMIT  BY THIS DATA DIRECTORY", "190/500              14 ", "198/500              12 "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage without %q:\n%s", want, out.String())
		}
	}
	// The cluster's critical share, not the data directory's.
	sum.Cluster.Lanes[0].DayUsed, sum.Cluster.Lanes[1].DayUsed = 450, 450
	clusterDay(&sum, 0.9)
	if c := sum.Classes[0]; c.ClusterDayUsed != 900 || c.DayRemaining != 100 || !c.Critical {
		t.Errorf("clusterDay at 900 of 1000: %+v", c)
	}
	// Redis did not answer: the data directory's own figures, said so.
	sum = scheduler.Summary{Time: now, Classes: []scheduler.ClassSummary{{Name: "image", Day: "2026-12-01", Keys: 2, RPMLimit: 40,
		DayUsed: 26, DayLimit: 1000, DayRemaining: 974}},
		Cluster: &scheduler.ClusterSummary{Name: "c", Day: "2026-12-01", Error: "Redis did not answer: x"}}
	clusterDay(&sum, 0.9)
	out.Reset()
	printUsage(&out, sum, config.Config{})
	if want := "today 26 used by this data directory, the cluster's use unknown (Redis did not answer); at most 974 left"; !strings.Contains(out.String(), want) {
		t.Errorf("usage without %q:\n%s", want, out.String())
	}
}
