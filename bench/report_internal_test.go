package bench

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"
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
