package bench

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// table is a report table, printed as Markdown.
type table struct {
	title  string
	header []string
	rows   [][]string
}

func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = fmt.Sprint(c)
	}
	t.rows = append(t.rows, row)
}

func (t table) String() string {
	var b strings.Builder
	if t.title != "" {
		fmt.Fprintf(&b, "%s\n\n", t.title)
	}
	b.WriteString("| " + strings.Join(t.header, " | ") + " |\n|")
	for range t.header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// printReport prints the tables to stdout when -report is given (run with
// -v to see them: `go test` shows a passing test's output only then).
func printReport(t *testing.T, heading string, tables ...table) {
	t.Helper()
	if !*report {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n#### %s (%s)\n\n", heading, dayScale().name)
	for _, tb := range tables {
		b.WriteString(tb.String())
		b.WriteString("\n")
	}
	fmt.Print(b.String())
}

// series is one line of a chart: ys at x0, x0+dx, ...
type series struct {
	name string
	ys   []float64
	dash bool
}

type chart struct {
	title, xLabel, yLabel string
	x0, dx                float64
	series                []series
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// svg renders the chart as a standalone SVG document.
func (c chart) svg() string {
	const (
		w, h                     = 860.0, 420.0
		left, right, top, bottom = 70.0, 190.0, 40.0, 55.0
	)
	pw, ph := w-left-right, h-top-bottom
	n := 0
	ymax := 0.0
	for _, s := range c.series {
		n = max(n, len(s.ys))
		for _, y := range s.ys {
			ymax = max(ymax, y)
		}
	}
	ymax = niceCeil(ymax)
	xmax := c.x0 + c.dx*float64(max(n-1, 1))
	xs := func(x float64) float64 { return left + (x-c.x0)/(xmax-c.x0)*pw }
	ys := func(y float64) float64 { return top + ph - y/ymax*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(c.title))
	// Grid and y ticks.
	for i := 0; i <= 5; i++ {
		y := ymax * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, ys(y), left+pw, ys(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, ys(y)+4, tick(y))
	}
	// x ticks.
	step := niceCeil((xmax - c.x0) / 8)
	for x := math.Ceil(c.x0/step) * step; x <= xmax+1e-9; x += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`+"\n", xs(x), top+ph, xs(x), top+ph+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xs(x), top+ph+18, tick(x))
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, h-12, html.EscapeString(c.xLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+ph/2, html.EscapeString(c.yLabel))
	for i, s := range c.series {
		col := palette[i%len(palette)]
		var pts []string
		for j, y := range s.ys {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xs(c.x0+c.dx*float64(j)), ys(y)))
		}
		dash := ""
		if s.dash {
			dash = ` stroke-dasharray="6 3"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6"%s points="%s"/>`+"\n", col, dash, strings.Join(pts, " "))
		ly := top + 10 + float64(i)*18
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", left+pw+12, ly, left+pw+36, ly, col, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+pw+42, ly+4, html.EscapeString(s.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func tick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

// writePlot writes the chart to -plots/name when -report is given.
func writePlot(t *testing.T, name string, c chart) {
	t.Helper()
	if !*report {
		return
	}
	if err := os.MkdirAll(*plotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(*plotDir, name)
	if err := os.WriteFile(path, []byte(c.svg()), 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("wrote %s\n", path)
}
