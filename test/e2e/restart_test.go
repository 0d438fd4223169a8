package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestRestartRewritesNothing: edsync stopped and started again over its own
// output folder finds every file already right and rewrites none of them
// (same inode, same mtime), both as a long-running process and with --once.
func TestRestartRewritesNothing(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns, node = "restart", "node-restart"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNode(ctx, node, "zone-r"); err != nil {
		t.Fatal(err)
	}
	// api: two named ports; db: one unnamed port; idle: no pods. The
	// EndpointSlice controller gives a Service without endpoints a slice
	// without ports, so idle's cluster is named with --cluster (an empty CLA).
	if _, err := c.CreateService(ctx, ns, "api", map[string]string{"app": "api"},
		harness.TCPPort("http", 80, intstr.FromInt32(8080)), harness.TCPPort("grpc", 90, intstr.FromInt32(9090))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateService(ctx, ns, "db", map[string]string{"app": "db"}, harness.TCPPort("", 5432, intstr.FromInt32(5432))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateService(ctx, ns, "idle", map[string]string{"app": "idle"}, harness.TCPPort("http", 80, intstr.FromInt32(8080))); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateReadyPods(ctx, ns, node, "api", map[string]string{"app": "api"}, "10.6.0.1", "10.6.0.2", "10.6.0.3"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateReadyPods(ctx, ns, node, "db", map[string]string{"app": "db"}, "10.6.1.1"); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	files := harness.WatchDir(t, out)
	args := []string{"--output-dir", out, "--namespace", ns, "--debounce", "50ms", "--cluster", "restart/idle/http"}
	first := c.StartEdsync(t, args...)

	want := map[string][]string{
		"restart/api/http":  {"10.6.0.1:8080 HEALTHY", "10.6.0.2:8080 HEALTHY", "10.6.0.3:8080 HEALTHY"},
		"restart/api/grpc":  {"10.6.0.1:9090 HEALTHY", "10.6.0.2:9090 HEALTHY", "10.6.0.3:9090 HEALTHY"},
		"restart/db":        {"10.6.1.1:5432 HEALTHY"},
		"restart/idle/http": nil,
	}
	var names []string
	for cl, eps := range want {
		name := edsFile(t, cl, writer.FormatJSON)
		names = append(names, name)
		files.WaitEndpoints(t, name, cl, settle, eps...)
	}
	assertFileList(t, out, names...)

	if err := first.Stop(10 * time.Second); err != nil {
		t.Fatalf("first edsync exited with %v after SIGTERM, want 0\n%s", err, first.Stderr())
	}
	before := harness.StatFiles(t, out)
	renames := map[string]int{}
	for _, n := range names {
		renames[n] = files.Renames(n)
	}

	// Started again: its first sync finds every file right.
	second := c.StartEdsync(t, args...)
	line := second.WaitLog(t, settle, "msg=flushed")
	t.Logf("second edsync's first flush: %s", line)
	assertUnchanged(t, "after a restart", out, before)
	assertNoRenames(t, files, renames)
	if err := second.Stop(10 * time.Second); err != nil {
		t.Errorf("second edsync exited with %v after SIGTERM, want 0\n%s", err, second.Stderr())
	}

	// The same with --once (an init container before the sidecar).
	once := c.RunEdsync(t, settle, append(args, "--once")...)
	if code := once.ExitCode(); code != 0 {
		t.Fatalf("edsync --once exited %d, want 0\n%s", code, once.Stderr())
	}
	assertUnchanged(t, "after edsync --once", out, before)
	assertNoRenames(t, files, renames)
}

// edsFile is the file of cluster in edsync's default layout by its path
// relative to the output folder, as harness.DirWatcher names it:
// "default_web_http/eds.json" for cluster default/web/http in JSON.
func edsFile(t testing.TB, cluster string, f writer.Format) string {
	t.Helper()
	path, err := writer.LayoutFolders.Path(".", cluster, f)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func assertUnchanged(t testing.TB, when, dir string, before map[string]harness.FileStat) {
	t.Helper()
	after := harness.StatFiles(t, dir)
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("%s: %s is gone, want it kept as it was (%v)", when, name, b)
		case a != b:
			t.Errorf("%s: %s was rewritten: want %v (untouched), got %v", when, name, b, a)
		}
	}
	for name, a := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s: new file %s (%v), want no new files", when, name, a)
		}
	}
}

func assertNoRenames(t testing.TB, files *harness.DirWatcher, before map[string]int) {
	t.Helper()
	for name, n := range before {
		if got := files.Renames(name); got != n {
			t.Errorf("%s renamed into the folder %d more time(s) since the first run: Envoy would reload it", name, got-n)
		}
	}
}

// assertFileList checks that dir holds exactly the files names (hidden
// entries aside).
func assertFileList(t testing.TB, dir string, names ...string) {
	t.Helper()
	want := slices.Clone(names)
	slices.Sort(want)
	if got := harness.ListFiles(t, dir); !slices.Equal(got, want) {
		t.Errorf("%s holds the wrong files:\nwant\n  %s\ngot\n  %s", dir, strings.Join(want, "\n  "), strings.Join(got, "\n  "))
	}
}
