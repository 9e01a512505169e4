package bucket

import (
	"fmt"
	"testing"
)

// BenchmarkSharedDayCritical: daily protection on a shared ledger as the
// scheduler's dispatcher meets it after each record: the record's shared
// day count (SharedDay), then the class's Critical. 100 lanes (as
// scheduler.BenchmarkLedgerHotPath), each with a shared count below 90 %
// of RPD; an iteration is one pair, on the lanes in turn.
func BenchmarkSharedDayCritical(b *testing.B) {
	const lanes, rpd = 100, 10000
	keys := make([]Key, lanes)
	for i := range keys {
		id := fmt.Sprintf("key%d", i+1)
		keys[i] = Key{ID: id, Project: id}
	}
	p := mustPool(b, Config{Classes: []ClassConfig{{Name: "text", Limits: Limits{RPM: 1 << 30, RPD: rpd}}}, Keys: keys})
	c := p.Class("text")
	now := t0
	day := Day(now, Pacific)
	for _, k := range keys {
		c.SharedDay(k.Project, day, rpd/2, now)
	}
	if c.Critical(now) {
		b.Fatal("critical at half the day")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.SharedDay(keys[i%lanes].Project, day, rpd/2+i%7, now)
		if c.Critical(now) {
			b.Fatal("critical at half the day")
		}
	}
}
