package agent

import (
	"encoding/json"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// Where the dashboards and alert rules are, from this package.
const (
	grafanaDashboard = "../../deploy/grafana/deepwall.json"
	alertRules       = "../../deploy/prometheus/deepwall-alerts.yml"
)

// scrapeLabels are the labels Prometheus adds to every series it
// scrapes.
var scrapeLabels = []string{"job", "instance"}

// exportedMetric is one metric of the agent's collector.
type exportedMetric struct {
	labels    []string
	histogram bool
}

var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)".*variableLabels: \{([^}]*)\}\}$`)

// exportedMetrics reads the metrics the agent exports from its live
// collector (metrics.go): every *prometheus.Desc it holds, with its
// labels, and the type of each from one collection by an idle agent.
func exportedMetrics(tb testing.TB) map[string]exportedMetric {
	tb.Helper()
	a := &Agent{rules: &ruleManager{}}
	m := newMetricsCollector(a)
	out := map[string]exportedMetric{}
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		// The fields are unexported: read them through their address.
		d, ok := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(*prometheus.Desc)
		if !ok || d == nil {
			continue
		}
		sm := descRE.FindStringSubmatch(d.String())
		if sm == nil {
			tb.Fatalf("cannot read %s", d)
		}
		var labels []string
		if sm[2] != "" {
			labels = strings.Split(sm[2], ",")
		}
		out[sm[1]] = exportedMetric{labels: labels}
	}
	if len(out) < 10 {
		tb.Fatalf("only %d metrics found in the collector", len(out))
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	fams, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range fams {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			e := out[f.GetName()]
			e.histogram = true
			out[f.GetName()] = e
		}
	}
	return out
}

// lookup resolves a series name to the metric exporting it (a
// histogram's _bucket, _sum and _count) and the labels it has.
func lookup(exp map[string]exportedMetric, name string) ([]string, bool) {
	if e, ok := exp[name]; ok && !e.histogram {
		return e.labels, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if e, ok := exp[strings.TrimSuffix(name, suf)]; ok && e.histogram && strings.HasSuffix(name, suf) {
			if suf == "_bucket" {
				return append(slices.Clone(e.labels), "le"), true
			}
			return e.labels, true
		}
	}
	return nil, false
}

// grafanaVars stands in for Grafana's variables so the queries parse as
// Prometheus sees them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$instance", ".*", "$workload", ".*")

// dashboardQueries returns every PromQL expression of the Grafana
// dashboard (panel targets, and the metric selectors of its label_values
// variables) and of the alert rules, named by where they are.
func dashboardQueries(tb testing.TB) map[string]string {
	tb.Helper()
	out := map[string]string{}
	b, err := os.ReadFile(grafanaDashboard)
	if err != nil {
		tb.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		tb.Fatalf("%s: %v", grafanaDashboard, err)
	}
	for _, p := range dash.Panels {
		for _, t := range p.Targets {
			out[grafanaDashboard+": panel "+p.Title+" "+t.RefID] = grafanaVars.Replace(t.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+), *([a-zA-Z_]+)\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		sm := labelValues.FindStringSubmatch(v.Definition)
		if sm == nil {
			tb.Errorf("%s: variable %s: %q is not label_values(selector, label)", grafanaDashboard, v.Name, v.Definition)
			continue
		}
		// The label must be one the selector's metric has: a sum by it
		// parses and is checked the same way.
		out[grafanaDashboard+": variable "+v.Name] = "sum by (" + sm[2] + ") (" + grafanaVars.Replace(sm[1]) + ")"
	}
	b, err = os.ReadFile(alertRules)
	if err != nil {
		tb.Fatal(err)
	}
	// Prometheus's own rule file parser: what promtool check rules and
	// the server check (fields, durations, templates, expressions).
	rg, errs := rulefmt.Parse(b, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		tb.Errorf("%s: %v", alertRules, err)
	}
	if rg == nil {
		tb.FailNow()
	}
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			if r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				tb.Errorf("%s: %s/%s: no summary or severity", alertRules, g.Name, r.Alert)
			}
			out[alertRules+": "+g.Name+"/"+r.Alert] = r.Expr
		}
	}
	return out
}

// TestDashboardQueries checks the Grafana dashboard and the Prometheus
// alert rules in deploy/: every expression parses as PromQL, names only
// metrics the agent's collector exports, matches only labels those
// metrics have (or Prometheus adds), and groups only by such labels;
// and every metric the agent exports is on the dashboard.
func TestDashboardQueries(t *testing.T) {
	exp := exportedMetrics(t)
	queries := dashboardQueries(t)
	if len(queries) < 20 {
		t.Fatalf("only %d queries found", len(queries))
	}
	p := parser.NewParser(parser.Options{})
	used := map[string]bool{}
	for where, q := range queries {
		expr, err := p.ParseExpr(q)
		if err != nil {
			t.Errorf("%s: %q: %v", where, q, err)
			continue
		}
		var selLabels [][]string
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			labels, ok := lookup(exp, vs.Name)
			if !ok {
				t.Errorf("%s: %s is not a metric the agent exports", where, vs.Name)
				return nil
			}
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(vs.Name, "_bucket"), "_sum"), "_count")] = true
			labels = append(labels, scrapeLabels...)
			selLabels = append(selLabels, labels)
			for _, m := range vs.LabelMatchers {
				if m.Name != "__name__" && !slices.Contains(labels, m.Name) {
					t.Errorf("%s: %s has no label %q (it has %v)", where, vs.Name, m.Name, labels)
				}
			}
			return nil
		})
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			ag, ok := n.(*parser.AggregateExpr)
			if !ok || ag.Without {
				return nil
			}
			for _, g := range ag.Grouping {
				if !slices.ContainsFunc(selLabels, func(ls []string) bool { return slices.Contains(ls, g) }) {
					t.Errorf("%s: grouping by %q, which no metric of the expression has", where, g)
				}
			}
			return nil
		})
	}
	for name := range exp {
		if !used[name] {
			t.Errorf("%s is exported but neither on the dashboard nor in an alert", name)
		}
	}
}
