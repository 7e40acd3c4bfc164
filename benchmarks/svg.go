package benchmarks

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Plot is a line chart drawn as standalone inline SVG: no script, no
// external font or style, so a report stays one self-contained file.
type Plot struct {
	Class    string // class of the <svg>, for tests and styling
	Title    string
	Subtitle string
	XLabel   string
	YLabel   string
	Width    int
	Height   int // of the plotting area; the legend adds below
	X        Axis
	Y        Axis
	Series   []Series
	Targets  []Target
	Bands    []Band
	Note     string // a line under the legend
}

// Axis is one axis in plot coordinates. With Log the values are drawn on a
// log10 scale; ticks are chosen automatically when Ticks is empty.
type Axis struct {
	Min, Max float64
	Log      bool
	Ticks    []Tick
}

// Tick is a labelled grid line.
type Tick struct {
	V     float64
	Label string
}

// Series is one line. A NaN Y breaks it into separate pieces.
type Series struct {
	Name    string
	Color   string
	Dash    string  // SVG stroke-dasharray, "" for solid
	Width   float64 // stroke width, default 2
	Points  []XY
	Markers bool // draw a cross at each point instead of a line
}

// XY is a point in plot coordinates.
type XY struct{ X, Y float64 }

// Target is a horizontal target line with its label.
type Target struct {
	Y     float64
	Label string
}

// Band is a labelled stretch of the x axis (a step of a timeline).
type Band struct {
	X0, X1 float64
	Label  string
}

// Palette is colour-blind-safe (Okabe–Ito, yellow replaced).
var Palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#666666", "#8C564B"}

// Dashes tell runs apart within one colour.
var Dashes = []string{"", "7 4", "2 3", "10 3 2 3"}

const (
	targetColor = "#B00020"
	padLeft     = 72
	padRight    = 24
	padTop      = 58
	padBottom   = 48
	legendRow   = 20
)

// SVG renders p.
func (p Plot) SVG() string {
	if p.Width == 0 {
		p.Width = 760
	}
	if p.Height == 0 {
		p.Height = 340
	}
	p.fitY()
	if len(p.X.Ticks) == 0 {
		p.X.Ticks = niceTicks(p.X.Min, p.X.Max, 8)
	}
	innerW := float64(p.Width - padLeft - padRight)
	innerH := float64(p.Height - padTop - padBottom)
	entries := p.legendEntries()
	longest := 0
	for _, e := range entries {
		longest = max(longest, len([]rune(e.name)))
	}
	perRow := max(1, (p.Width-padLeft)/max(160, longest*6+40))
	legendRows := (len(entries) + perRow - 1) / perRow
	total := p.Height + legendRows*legendRow + 8
	if p.Note != "" {
		total += legendRow
	}
	x := func(v float64) float64 { return padLeft + innerW*(v-p.X.Min)/(p.X.Max-p.X.Min) }
	y := func(v float64) float64 {
		lo, hi, w := p.Y.Min, p.Y.Max, v
		if p.Y.Log {
			lo, hi, w = math.Log10(lo), math.Log10(hi), math.Log10(math.Max(v, p.Y.Min))
		}
		return padTop + innerH*(1-(w-lo)/(hi-lo))
	}
	clip := fmt.Sprintf("clip-%x", hashString(p.Class+p.Title+p.Subtitle))

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="%s" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">`,
		esc(p.Class), p.Width, total, p.Width, total, esc(p.Title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(p.Title))
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`, p.Width, total)
	fmt.Fprintf(&b, `<defs><clipPath id="%s"><rect x="%d" y="%d" width="%.1f" height="%.1f"/></clipPath></defs>`, clip, padLeft, padTop, innerW, innerH)
	fmt.Fprintf(&b, `<text class="plot-title" x="%d" y="20" font-size="15" font-weight="600" fill="#111">%s</text>`, padLeft, esc(p.Title))
	if p.Subtitle != "" {
		fmt.Fprintf(&b, `<text class="plot-subtitle" x="%d" y="38" font-size="11.5" fill="#555">%s</text>`, padLeft, esc(p.Subtitle))
	}

	// Bands behind everything.
	for i, band := range p.Bands {
		x0, x1 := x(band.X0), x(band.X1)
		if i%2 == 0 {
			fmt.Fprintf(&b, `<rect class="band" x="%.1f" y="%d" width="%.1f" height="%.1f" fill="#f3f5f8"/>`, x0, padTop, x1-x0, innerH)
		}
		if x1-x0 >= 28 {
			fmt.Fprintf(&b, `<text class="band-label" x="%.1f" y="%d" font-size="10" fill="#555" text-anchor="middle">%s</text>`, (x0+x1)/2, padTop+12, esc(fitText(band.Label, x1-x0)))
		}
	}

	// Grid and ticks.
	for _, t := range p.Y.Ticks {
		if t.V < p.Y.Min || t.V > p.Y.Max {
			continue
		}
		yy := y(t.V)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e3e3e3" stroke-width="1"/>`, padLeft, yy, padLeft+innerW, yy)
		fmt.Fprintf(&b, `<text class="tick" x="%d" y="%.1f" font-size="11" fill="#333" text-anchor="end" dominant-baseline="middle">%s</text>`, padLeft-6, yy, esc(t.Label))
	}
	for _, t := range p.X.Ticks {
		if t.V < p.X.Min-1e-9 || t.V > p.X.Max+1e-9 {
			continue
		}
		xx := x(t.V)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#e3e3e3" stroke-width="1"/>`, xx, padTop, xx, padTop+innerH)
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%.1f" font-size="11" fill="#333" text-anchor="middle">%s</text>`, xx, padTop+innerH+15, esc(t.Label))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#999" stroke-width="1"/>`, padLeft, padTop, innerW, innerH)
	fmt.Fprintf(&b, `<text class="axis-label" x="%.1f" y="%.1f" font-size="12" fill="#222" text-anchor="middle">%s</text>`, padLeft+innerW/2, padTop+innerH+34, esc(p.XLabel))
	fmt.Fprintf(&b, `<text class="axis-label" transform="translate(16 %.1f) rotate(-90)" font-size="12" fill="#222" text-anchor="middle">%s</text>`, padTop+innerH/2, esc(p.YLabel))

	// Series.
	for _, s := range p.Series {
		width := s.Width
		if width == 0 {
			width = 2
		}
		if s.Markers {
			fmt.Fprintf(&b, `<g class="series markers" clip-path="url(#%s)" stroke="%s" stroke-width="1.6">`, clip, esc(s.Color))
			for _, pt := range s.Points {
				if math.IsNaN(pt.Y) {
					continue
				}
				cx, cy := x(pt.X), y(pt.Y)
				fmt.Fprintf(&b, `<path d="M%.1f %.1fl6 6m0 -6l-6 6"/>`, cx-3, cy-3)
			}
			b.WriteString(`</g>`)
			continue
		}
		for _, piece := range pieces(s.Points) {
			var d strings.Builder
			for i, pt := range piece {
				cmd := "L"
				if i == 0 {
					cmd = "M"
				}
				fmt.Fprintf(&d, "%s%.1f %.1f", cmd, x(pt.X), y(pt.Y))
			}
			dash := ""
			if s.Dash != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, esc(s.Dash))
			}
			fmt.Fprintf(&b, `<path class="series" clip-path="url(#%s)" d="%s" fill="none" stroke="%s" stroke-width="%.1f"%s stroke-linejoin="round"><title>%s</title></path>`,
				clip, d.String(), esc(s.Color), width, dash, esc(s.Name))
		}
	}

	// Target lines over the series, each labelled at its right end.
	lastLabelY := math.Inf(-1)
	for _, t := range p.Targets {
		if t.Y < p.Y.Min || t.Y > p.Y.Max {
			continue
		}
		yy := y(t.Y)
		fmt.Fprintf(&b, `<line class="target" x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.8" stroke-dasharray="9 4"><title>%s</title></line>`,
			padLeft, yy, padLeft+innerW, yy, targetColor, esc(t.Label))
		ly := yy - 5
		if math.Abs(ly-lastLabelY) < 13 {
			ly = yy + 14
		}
		lastLabelY = ly
		fmt.Fprintf(&b, `<text class="target-label" x="%.1f" y="%.1f" font-size="11" font-weight="600" fill="%s" text-anchor="end" stroke="#fff" stroke-width="3" paint-order="stroke">%s</text>`,
			padLeft+innerW-6, ly, targetColor, esc(t.Label))
	}

	// Legend under the plot.
	ly := float64(p.Height) + 6
	colW := float64(p.Width-padLeft) / float64(perRow)
	for i, e := range entries {
		lx := float64(padLeft) + float64(i%perRow)*colW
		yy := ly + float64(i/perRow)*legendRow
		if e.markers {
			fmt.Fprintf(&b, `<path d="M%.1f %.1fl6 6m0 -6l-6 6" stroke="%s" stroke-width="1.6"/>`, lx+9, yy-3, esc(e.color))
		} else {
			dash := ""
			if e.dash != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, esc(e.dash))
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2.2"%s/>`, lx, yy, lx+24, yy, esc(e.color), dash)
		}
		fmt.Fprintf(&b, `<text class="legend" x="%.1f" y="%.1f" font-size="11.5" fill="#222" dominant-baseline="middle">%s</text>`, lx+30, yy, esc(e.name))
	}
	if p.Note != "" {
		fmt.Fprintf(&b, `<text class="plot-note" x="%d" y="%.1f" font-size="11" fill="#555">%s</text>`, padLeft, ly+float64(legendRows)*legendRow+4, esc(p.Note))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

type legendEntry struct {
	name, color, dash string
	markers           bool
}

func (p Plot) legendEntries() []legendEntry {
	var out []legendEntry
	seen := map[string]bool{}
	for _, s := range p.Series {
		if s.Name == "" || seen[s.Name] {
			continue
		}
		seen[s.Name] = true
		out = append(out, legendEntry{name: s.Name, color: s.Color, dash: s.Dash, markers: s.Markers})
	}
	for _, t := range p.Targets {
		out = append(out, legendEntry{name: t.Label, color: targetColor, dash: "9 4"})
	}
	return out
}

// fitY sets a log axis to whole decades around the data and targets, or a
// linear one from zero, and its ticks.
func (p *Plot) fitY() {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, pt := range s.Points {
			if math.IsNaN(pt.Y) || p.Y.Log && pt.Y <= 0 {
				continue
			}
			lo, hi = math.Min(lo, pt.Y), math.Max(hi, pt.Y)
		}
	}
	for _, t := range p.Targets {
		lo, hi = math.Min(lo, t.Y), math.Max(hi, t.Y)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	if p.Y.Min == 0 && p.Y.Max == 0 {
		if p.Y.Log {
			p.Y.Min = math.Pow(10, math.Floor(math.Log10(lo)))
			p.Y.Max = math.Pow(10, math.Ceil(math.Log10(hi*1.05)))
			if p.Y.Max <= p.Y.Min {
				p.Y.Max = p.Y.Min * 10
			}
		} else {
			p.Y.Min, p.Y.Max = 0, hi*1.1
			if p.Y.Max <= 0 {
				p.Y.Max = 1
			}
		}
	}
	if len(p.Y.Ticks) == 0 {
		if p.Y.Log {
			p.Y.Ticks = logTicks(p.Y.Min, p.Y.Max)
		} else {
			p.Y.Ticks = niceTicks(p.Y.Min, p.Y.Max, 6)
		}
	}
}

// logTicks labels 1, 2 and 5 of each decade (only the decades when there
// are many).
func logTicks(lo, hi float64) []Tick {
	decades := math.Log10(hi / lo)
	steps := []float64{1, 2, 5}
	if decades > 4 {
		steps = []float64{1}
	}
	var out []Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range steps {
			v := m * math.Pow(10, e)
			if v >= lo*0.999 && v <= hi*1.001 {
				out = append(out, Tick{V: v, Label: numLabel(v)})
			}
		}
	}
	return out
}

// niceTicks picks about n round ticks between lo and hi.
func niceTicks(lo, hi float64, n int) []Tick {
	if hi <= lo {
		return []Tick{{V: lo, Label: numLabel(lo)}}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, Tick{V: v, Label: numLabel(v)})
	}
	return out
}

func numLabel(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return strings.TrimSuffix(fmt.Sprintf("%.0f", v), ".0")
	case math.Abs(v) >= 1:
		return trimZeros(fmt.Sprintf("%.2f", v))
	}
	return trimZeros(fmt.Sprintf("%.4f", v))
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// pieces splits points at NaN values.
func pieces(pts []XY) [][]XY {
	var out [][]XY
	var cur []XY
	for _, p := range pts {
		if math.IsNaN(p.Y) || math.IsNaN(p.X) {
			if len(cur) > 0 {
				out = append(out, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, p)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// fitText shortens a band label to about the room it has.
func fitText(s string, width float64) string {
	n := int(width / 6)
	if len([]rune(s)) <= n {
		return s
	}
	r := []rune(s)
	if n < 2 {
		return ""
	}
	return string(r[:n-1]) + "…"
}

func esc(s string) string { return html.EscapeString(s) }

// hashString gives plots distinct clip-path ids within one page.
func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// PercentileAxis is the x axis of a percentile plot: x = log10(1/(1−p)),
// so 90%, 99%, 99.9% and 99.99% are evenly spaced, as in HdrHistogram's
// plots.
func PercentileAxis() Axis {
	return Axis{Min: 0, Max: 4, Ticks: []Tick{
		{0, "0%"}, {math.Log10(2), "50%"}, {1, "90%"}, {2, "99%"}, {3, "99.9%"}, {4, "99.99%"},
	}}
}

// PercentileX maps a percentile (0..100) onto PercentileAxis; 100 maps to
// the right edge.
func PercentileX(pct float64) float64 {
	if pct >= 99.99 {
		return 4
	}
	return math.Log10(1 / (1 - pct/100))
}
