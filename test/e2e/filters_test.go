package e2e

import (
	"fmt"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestFiltersPublishOnlyChosenServices: four Services in two namespaces, and
// one edsync per filter (--namespace, --selector on the labels the
// EndpointSlice controller copies from the Service, --service NS/NAME
// repeated, and --namespace with --selector). Each writes exactly its chosen
// Services' files, at first and after every Service changed; the others
// never appear.
func TestFiltersPublishOnlyChosenServices(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const node, label = "node-filters", "e2e-team"
	if err := c.CreateNode(ctx, node, "zone-f"); err != nil {
		t.Fatal(err)
	}
	type service struct{ ns, name, team, ipBase string }
	services := []service{
		{"flt-a", "pay", "pay", "10.4.1."},
		{"flt-a", "web", "web", "10.4.2."},
		{"flt-b", "pay", "pay", "10.4.3."},
		{"flt-b", "web", "web", "10.4.4."},
	}
	for _, ns := range []string{"flt-a", "flt-b"} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	key := func(s service) string { return s.ns + "/" + s.name }
	selector := func(s service) map[string]string { return map[string]string{"app": s.name} }
	// ips(s, n) are the addresses of s's first n pods.
	ips := func(s service, n int) []string {
		var out []string
		for i := 1; i <= n; i++ {
			out = append(out, fmt.Sprintf("%s%d", s.ipBase, i))
		}
		return out
	}
	addPod := func(s service, i int) {
		t.Helper()
		name := fmt.Sprintf("%s-%d", s.name, i)
		if _, err := c.CreatePod(ctx, harness.Pod{Namespace: s.ns, Name: name, Labels: selector(s), Node: node}); err != nil {
			t.Fatal(err)
		}
		if err := c.SetPodStatus(ctx, s.ns, name, fmt.Sprintf("%s%d", s.ipBase, i), true); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range services {
		if _, err := c.CreateLabeledService(ctx, s.ns, s.name, map[string]string{label: s.team}, selector(s),
			harness.TCPPort("http", 80, intstr.FromInt32(8080))); err != nil {
			t.Fatal(err)
		}
		addPod(s, 1)
	}

	type run struct {
		name   string
		args   []string
		chosen []string // ns/name
		out    string
		files  *harness.DirWatcher
	}
	runs := []*run{
		{name: "namespace", args: []string{"--namespace", "flt-a"}, chosen: []string{"flt-a/pay", "flt-a/web"}},
		{name: "selector", args: []string{"--selector", label + "=pay"}, chosen: []string{"flt-a/pay", "flt-b/pay"}},
		// Same names in both namespaces: only the named pairs count.
		{name: "service", args: []string{"--service", "flt-a/web", "--service", "flt-b/pay"}, chosen: []string{"flt-a/web", "flt-b/pay"}},
		{name: "namespace+selector", args: []string{"--namespace", "flt-b", "--selector", label + "=web"}, chosen: []string{"flt-b/web"}},
	}
	clusterOf := func(s service) string { return key(s) + "/http" }
	for _, r := range runs {
		r.out = t.TempDir()
		r.files = harness.WatchDir(t, r.out)
		c.StartEdsync(t, append([]string{"--output-dir", r.out, "--debounce", "50ms"}, r.args...)...)
	}

	// check waits until every chosen file holds the first n pods of its
	// Service, then asserts the folder holds those files only and no other
	// file was ever renamed into it.
	check := func(n int) {
		t.Helper()
		for _, r := range runs {
			var names []string
			for _, s := range services {
				file := edsFile(t, clusterOf(s), writer.FormatJSON)
				if !slices.Contains(r.chosen, key(s)) {
					if k := r.files.Renames(file); k > 0 {
						t.Errorf("%s %v: %s (not chosen) was renamed into %s %d time(s)", r.name, r.args, file, r.out, k)
					}
					continue
				}
				var want []string
				for _, ip := range ips(s, n) {
					want = append(want, ip+":8080 HEALTHY")
				}
				r.files.WaitEndpoints(t, file, clusterOf(s), settle, want...)
				names = append(names, file)
			}
			assertFileList(t, r.out, names...)
		}
	}
	check(1)

	// Every Service changes (the chosen and the others), and the API server
	// holds all four changes. Then every Service changes again: a chosen
	// file showing the second change was written after its edsync saw the
	// first change of every Service it watches (a watch delivers in
	// resourceVersion order; edsync keeps one per namespace, and each run
	// has a chosen Service in every namespace it watches), so an unchosen
	// Service would have been written by then.
	for _, s := range services {
		addPod(s, 2)
	}
	for _, s := range services {
		if err := c.WaitSlices(ctx, s.ns, s.name, settle, ips(s, 2)...); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range services {
		addPod(s, 3)
	}
	check(3)
}
