package bench

import (
	"errors"
	"fmt"
	"hash/fnv"
	"image/color"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

var errNoData = errors.New("no data to chart")

// palette gives each system one colour across every chart; the known
// systems get fixed ones (references grey, deepwall blue), others a colour
// picked by name.
var palette = map[string]color.RGBA{
	sysBridgeDefault: {0xb0, 0xb0, 0xb0, 0xff},
	sysBridge:        {0x80, 0x80, 0x80, 0xff},
	sysRedirect:      {0x4d, 0x4d, 0x4d, 0xff},
	sysGenerator:     {0xd0, 0xd0, 0xd0, 0xff},
	sysFastPath:      {0x6b, 0xae, 0xd6, 0xff},
	sysDPI:           {0x21, 0x66, 0xac, 0xff},
	sysDPI1:          {0x42, 0x92, 0xc6, 0xff},
	sysDPI2:          {0x08, 0x45, 0x94, 0xff},
	sysNFQueue:       {0x7b, 0x3f, 0x9e, 0xff},
	sysHyperscan:     {0xfd, 0xae, 0x61, 0xff},
	sysGoRegexp:      {0xd7, 0x30, 0x27, 0xff},
	sysCoraza:        {0x99, 0x34, 0x04, 0xff},
	sysCorazaNoResp:  {0xcc, 0x4c, 0x02, 0xff},
	sysNDPI:          {0x1a, 0x98, 0x50, 0xff},
}

var extraColours = []color.RGBA{
	{0x8c, 0x6b, 0xb1, 0xff}, {0xe7, 0x29, 0x8a, 0xff}, {0x66, 0xa6, 0x1e, 0xff},
	{0xe6, 0xab, 0x02, 0xff}, {0xa6, 0x76, 0x1d, 0xff}, {0x1b, 0x9e, 0x77, 0xff},
}

func colourOf(system string) color.RGBA {
	if c, ok := palette[system]; ok {
		return c
	}
	h := fnv.New32a()
	h.Write([]byte(system))
	return extraColours[h.Sum32()%uint32(len(extraColours))]
}

// bars draws one horizontal bar per row (the median) with a whisker from
// the minimum to the maximum and the median written at the bar's end.
type bars struct {
	vals, lo, hi []float64
	colours      []color.RGBA
	log          bool
	floor        float64 // where bars start (the axis minimum on a log scale)
	label        draw.TextStyle
}

func (b *bars) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	half := vg.Points(7)
	for i, v := range b.vals {
		if math.IsNaN(v) {
			continue
		}
		y := trY(float64(i))
		x0, x1 := trX(b.floor), trX(v)
		c.FillPolygon(b.colours[i], []vg.Point{{X: x0, Y: y - half}, {X: x1, Y: y - half}, {X: x1, Y: y + half}, {X: x0, Y: y + half}})
		line := draw.LineStyle{Color: color.Black, Width: vg.Points(0.8)}
		end := x1
		if b.hi[i] > b.lo[i] {
			lo, hi := trX(b.lo[i]), trX(b.hi[i])
			c.StrokeLine2(line, lo, y, hi, y)
			c.StrokeLine2(line, lo, y-half/2, lo, y+half/2)
			c.StrokeLine2(line, hi, y-half/2, hi, y+half/2)
			end = max(end, hi)
		}
		c.FillText(b.label, vg.Point{X: end + vg.Points(3), Y: y}, formatValue(v))
	}
}

func (b *bars) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = b.floor, b.floor
	for i, v := range b.vals {
		if math.IsNaN(v) {
			continue
		}
		xmax = max(xmax, v, b.hi[i])
	}
	// Room for the value labels right of the longest bar.
	if b.log {
		xmax *= 3
	} else {
		xmax *= 1.15
	}
	return xmin, xmax, -0.5, float64(len(b.vals)) - 0.5
}

// drawChart draws chart ch of scenario s as a PNG at path: one bar per
// (case, system) with a result for ch.Metric, grouped by case, coloured by
// system.
func drawChart(s *scenario, ch chart, path string) error {
	type row struct {
		label  string
		system string
		res    *result
	}
	var rows []row
	var cases []string
	for _, r := range s.Results {
		if r.Metric == ch.Metric && len(r.Samples) > 0 && (len(ch.Cases) == 0 || slices.Contains(ch.Cases, r.Case)) {
			if !slices.Contains(cases, r.Case) {
				cases = append(cases, r.Case)
			}
		}
	}
	if len(cases) == 0 {
		return errNoData
	}
	for _, c := range cases {
		for _, r := range s.Results {
			if r.Case == c && r.Metric == ch.Metric && len(r.Samples) > 0 {
				rows = append(rows, row{label: c + " · " + r.System, system: r.System, res: r})
			}
		}
	}
	// Plot rows bottom-up, so reverse: the first case reads at the top.
	slices.Reverse(rows)
	p := plot.New()
	p.Title.Text = ch.Title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	unit := rows[0].res.Unit
	p.X.Label.Text = ch.Metric
	if unit != "" && unit != ch.Metric {
		p.X.Label.Text += " (" + unit + ")"
	}
	b := &bars{label: draw.TextStyle{Color: color.Black, Font: font.Font{Typeface: "Liberation", Variant: "Sans", Size: vg.Points(9)},
		XAlign: draw.XLeft, YAlign: draw.YCenter, Handler: plot.DefaultTextHandler}, log: ch.Log}
	labels := make([]string, len(rows))
	minPos := math.Inf(1)
	for i, rw := range rows {
		labels[i] = rw.label
		b.vals = append(b.vals, rw.res.Median)
		b.lo = append(b.lo, rw.res.Min)
		b.hi = append(b.hi, rw.res.Max)
		b.colours = append(b.colours, colourOf(rw.system))
		if rw.res.Min > 0 {
			minPos = min(minPos, rw.res.Min)
		}
	}
	if ch.Log {
		if math.IsInf(minPos, 1) {
			return fmt.Errorf("log chart %q: no positive value", ch.Title)
		}
		b.floor = math.Pow10(int(math.Floor(math.Log10(minPos))))
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		for i := range b.vals {
			b.vals[i] = max(b.vals[i], b.floor)
			b.lo[i] = max(b.lo[i], b.floor)
		}
	}
	p.Add(b)
	p.NominalY(labels...)
	// No legend: every row's label names its system, the colour only
	// groups them.
	p.Y.Tick.Label.Font.Size = vg.Points(9)
	height := vg.Length(len(rows))*vg.Points(20) + vg.Points(80)
	if err := p.Save(9*vg.Inch, height, path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
