package bench

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/scheduler"
)

func TestChartSVG(t *testing.T) {
	tests := []struct {
		name   string
		series []series
		lines  int
	}{
		{"empty", nil, 0},
		{"one flat", []series{{name: "p1", ys: []float64{0, 0, 0}}}, 1},
		{"two with escaping", []series{{name: "a<b", ys: []float64{1, 5, 3}}, {name: "c&d", ys: []float64{2}, dash: true}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := chart{title: "t <1>", xLabel: "x", yLabel: "y", dx: 1, series: tt.series}.svg()
			dec := xml.NewDecoder(strings.NewReader(doc))
			lines := 0
			for {
				tok, err := dec.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("not well-formed XML: %v\n%s", err, doc)
				}
				if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
					lines++
				}
			}
			if lines != tt.lines {
				t.Errorf("%d polylines, want %d", lines, tt.lines)
			}
		})
	}
}

func TestMaxWindow(t *testing.T) {
	at := func(s float64) request {
		return request{at: benchStart.Add(time.Duration(s * float64(time.Second))), class: "text", project: "p1"}
	}
	tests := []struct {
		name string
		secs []float64
		want int
	}{
		{"one", []float64{0}, 1},
		{"60 s apart do not overlap", []float64{0, 60, 120}, 1},
		{"just inside", []float64{0, 59.999, 60}, 2},
		{"burst", []float64{0, 0, 0, 30, 61}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rs []request
			for _, s := range tt.secs {
				rs = append(rs, at(s))
			}
			if got := maxWindow(rs)[laneID{"text", "p1"}]; got != tt.want {
				t.Errorf("maxWindow = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {99, 10}, {10, 1}, {100, 10}} {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing")
	}
}

func TestCapacityWaits(t *testing.T) {
	// RPM 2 with a burst of 1: one pacing token every 30 s, two requests
	// per 60 s window.
	limits := bucket.Limits{RPM: 2, RPD: 100}
	at := func(s int) time.Time { return benchStart.Add(time.Duration(s) * time.Second) }
	dispatch := func(s, waited int) recEvent {
		return recEvent{Event: scheduler.Event{Kind: scheduler.EventDispatched, Class: "image", Project: "p1", KeyID: "k1",
			Time: at(s), Waited: time.Duration(waited) * time.Second}}
	}
	evs := []recEvent{
		dispatch(0, 0),   // free at the start: 0
		dispatch(35, 35), // queued since 0, pacing frees the lane at 30: 5 s
		{Event: scheduler.Event{Kind: scheduler.EventLaneCooled, Class: "image", Project: "p1", Time: at(40), Until: at(100)}},
		dispatch(100, 60), // the cooldown ends at 100: 0
		dispatch(101, 1),  // pacing allows the next at 130: early
		dispatch(200, 10), // queued at 190, the lane free since 130: 10 s
		{Event: scheduler.Event{Kind: scheduler.EventKeyDisabled, KeyID: "k1", Project: "p1", Time: at(300)}},
		dispatch(400, 0), // the project's only key is disabled: early
	}
	cw, err := capacityWaits(evs, "image", limits, 1, map[string]string{"k1": "p1"}, benchStart)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{0, 5 * time.Second, 0, 0, 10 * time.Second, 0}
	if len(cw.waits) != len(want) || cw.early != 2 {
		t.Fatalf("waits %v, early %d; want %v, early 2", cw.waits, cw.early, want)
	}
	for i := range want {
		if cw.waits[i] != want[i] {
			t.Errorf("dispatch %d waited %v, want %v", i, cw.waits[i], want[i])
		}
	}
}
