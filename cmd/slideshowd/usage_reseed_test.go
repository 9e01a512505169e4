package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/scheduler"
)

// TestClusterReseeding: while the cluster re-seeds after Redis lost its
// state, usage says so, names the processes waited for, and shows what
// Redis holds next to each lane's day count; otherwise neither.
func TestClusterReseeding(t *testing.T) {
	zero := 0
	c := &scheduler.ClusterSummary{Name: "c", Process: "a", Day: "2026-03-01", Reseeding: true, ReseedWaiting: []string{"a", "b"},
		Lanes: []scheduler.ClusterLaneUsage{{Class: "text", Project: "p1", RPMLimit: 20, DayUsed: 8, DayLimit: 100, RedisDayUsed: &zero}}}
	var out bytes.Buffer
	printCluster(&out, c)
	for _, want := range []string{"0 processes alive\n",
		"  re-seeding: Redis lost the cluster's state (restarted empty) and not every process has put its counts back (waiting for a, b);\n",
		"today's counts are at least this process's own and the last it saw, what Redis holds in parentheses\n",
		"8/100 (Redis 0)\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printCluster without %q:\n%s", want, out.String())
		}
	}
	c.Reseeding, c.ReseedWaiting, c.Lanes[0].RedisDayUsed = false, nil, nil
	out.Reset()
	printCluster(&out, c)
	if s := out.String(); strings.Contains(s, "re-seeding") || strings.Contains(s, "Redis 0") {
		t.Errorf("printCluster not re-seeding:\n%s", s)
	}
}
