package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/edsync/edsync/internal/metrics"
	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/watch"
)

// The files operators load into Prometheus and Grafana, from the chart.
const (
	rulesFile     = "charts/edsync/files/prometheus-rules.yaml"
	dashboardFile = "charts/edsync/files/dashboard.json"
	rulesTestFile = "test/prometheus/rules_test.yaml"
)

// targetLabels are the labels a scrape adds to every series: job and
// instance always, and with the chart's PodMonitor the Prometheus
// Operator's namespace, pod, container and endpoint. An expression may
// name them whatever the metric.
var targetLabels = []string{"job", "instance", "namespace", "pod", "container", "endpoint"}

// TestPrometheusRules runs `promtool check rules` on the chart's rule file
// and `promtool test rules` on test/prometheus/rules_test.yaml, which fires
// and silences each alert. promtool is Debian's (test/tools/promtool.sh
// fetches it once into a cache).
func TestPrometheusRules(t *testing.T) {
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(repo, "test", "tools", "promtool.sh")).Output()
	if err != nil {
		t.Fatalf("test/tools/promtool.sh: %v\n%s", err, stderrOf(err))
	}
	promtool := strings.TrimSpace(string(out))
	for _, args := range [][]string{
		{"check", "rules", filepath.Join(repo, rulesFile)},
		{"test", "rules", filepath.Join(repo, rulesTestFile)},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert is tested: an alert with no test case would pass above.
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	data, err := os.ReadFile(filepath.Join(repo, rulesTestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &tests); err != nil { // only the alert names
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	tested := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			tested[a.Alertname] = true
		}
	}
	for _, r := range loadRules(t, filepath.Join(repo, rulesFile)) {
		if r.Alert != "" && !tested[r.Alert] {
			t.Errorf("alert %s has no case in %s", r.Alert, rulesTestFile)
		}
	}
}

// TestMonitoringNamesEdsyncMetrics fails when an alert, or a panel or
// variable of the dashboard, names a metric edsync does not register, or a
// label that metric (or the scrape) does not have: a renamed metric or
// label would otherwise leave an alert that never fires and a panel that
// stays empty. The metrics are those of a real registry, every series made
// (a source's included).
func TestMonitoringNamesEdsyncMetrics(t *testing.T) {
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	known := registered(t)

	rules := loadRules(t, filepath.Join(repo, rulesFile))
	if len(rules) < 5 {
		t.Fatalf("%s: %d rules", rulesFile, len(rules))
	}
	labelRef := regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	for _, r := range rules {
		labels := checkExpr(t, "alert "+r.Alert, r.Expr, known)
		for _, text := range r.Annotations {
			for _, m := range labelRef.FindAllStringSubmatch(text, -1) {
				if !slices.Contains(labels, m[1]) {
					t.Errorf("alert %s: an annotation reads $labels.%s, which its expression's series do not have (%q)", r.Alert, m[1], labels)
				}
			}
		}
	}

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	data, err := os.ReadFile(filepath.Join(repo, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	exprs := 0
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, grafanaExpr(tg.Expr), known)
			exprs++
		}
	}
	if exprs < 10 {
		t.Fatalf("%s: %d queries", dashboardFile, exprs)
	}
	// label_values(SELECTOR, LABEL): the selector's metric must have LABEL.
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, s)
			continue
		}
		if labels := checkExpr(t, "variable "+v.Name, grafanaExpr(m[1]), known); !slices.Contains(labels, m[2]) {
			t.Errorf("variable %s: %s has no label %s", v.Name, m[1], m[2])
		}
	}
}

// rule is one rule of a Prometheus rule file.
type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// loadRules reads a rule file's rules, strictly: a misspelt key fails.
func loadRules(t *testing.T, path string) []rule {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, path, &f)
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// registered is every series name edsync's registry exposes, with its
// label names: a histogram as its _bucket (with le), _sum and _count.
func registered(t *testing.T) map[string][]string {
	t.Helper()
	m := metrics.New("test")
	m.Ready(func() error { return nil })
	m.Sources([]watch.SourceStatus{{Name: "a", LastOK: time.Now()}})
	families, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range families {
		var labels []string
		if ms := f.GetMetric(); len(ms) > 0 {
			for _, l := range ms[0].GetLabel() {
				labels = append(labels, l.GetName())
			}
		}
		labels = append(labels, targetLabels...)
		name := f.GetName()
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"] = append(slices.Clone(labels), "le")
			out[name+"_sum"], out[name+"_count"] = labels, labels
		case dto.MetricType_SUMMARY:
			out[name] = append(slices.Clone(labels), "quantile")
			out[name+"_sum"], out[name+"_count"] = labels, labels
		default:
			out[name] = labels
		}
	}
	// What Prometheus makes of each scrape.
	out["up"] = targetLabels
	if len(out) < 30 || out["edsync_ready"] == nil || out["edsync_source_up"] == nil {
		t.Fatalf("the registry has %d series names: %v", len(out), out)
	}
	return out
}

// checkExpr parses expr as PromQL and checks that each metric it selects
// is known, and that each label it matches, groups or joins on is one of
// the labels of the metrics it selects. It returns those labels.
func checkExpr(t *testing.T, what, expr string, known map[string][]string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q: %v", what, expr, err)
		return nil
	}
	var labels []string
	var used []string // labels the expression names outside selectors
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := n.Name
			if name == "" {
				t.Errorf("%s: a selector with no metric name: %s", what, n)
				return nil
			}
			have, ok := known[name]
			if !ok {
				t.Errorf("%s: %s is not a metric edsync registers", what, name)
				return nil
			}
			labels = append(labels, have...)
			for _, m := range n.LabelMatchers {
				if m.Name != "__name__" && !slices.Contains(have, m.Name) {
					t.Errorf("%s: %s has no label %s", what, name, m.Name)
				}
			}
		case *parser.AggregateExpr:
			used = append(used, n.Grouping...)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				used = append(used, n.VectorMatching.MatchingLabels...)
				used = append(used, n.VectorMatching.Include...)
			}
		}
		return nil
	})
	for _, l := range used {
		if !slices.Contains(labels, l) {
			t.Errorf("%s: %q names label %s, which none of its metrics has", what, expr, l)
		}
	}
	return labels
}

// grafanaExpr replaces Grafana's interval variables with a duration, so that
// the query parses; the others ($job, $instance) are inside label values.
func grafanaExpr(s string) string {
	return strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h").Replace(s)
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return fmt.Sprint(err)
}
