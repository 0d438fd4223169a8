package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestDryRunPrintsWhatIsWritten: `--dry-run --once` against the cluster
// prints, for every file, "# <path>" and then exactly the bytes that a real
// --once run writes into <path>, in json and yaml.
func TestDryRunPrintsWhatIsWritten(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns, node = "dryrun", "node-dryrun"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNode(ctx, node, "zone-d"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateService(ctx, ns, "shop", map[string]string{"app": "shop"},
		harness.TCPPort("http", 80, intstr.FromInt32(8080)), harness.TCPPort("admin", 81, intstr.FromInt32(8081))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateService(ctx, ns, "cache", map[string]string{"app": "cache"}, harness.TCPPort("", 6379, intstr.FromInt32(6379))); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateReadyPods(ctx, ns, node, "shop", map[string]string{"app": "shop"}, "10.7.0.1", "10.7.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateReadyPods(ctx, ns, node, "cache", map[string]string{"app": "cache"}, "10.7.1.1", "10.7.1.2", "10.7.1.3"); err != nil {
		t.Fatal(err)
	}

	// A running edsync shows when the slices are complete, so that the
	// dry run and the real run below see the same endpoints.
	live := t.TempDir()
	files := harness.WatchDir(t, live)
	c.StartEdsync(t, "--output-dir", live, "--namespace", ns, "--debounce", "50ms")
	want := map[string][]string{
		"dryrun/shop/http":  {"10.7.0.1:8080 HEALTHY", "10.7.0.2:8080 HEALTHY"},
		"dryrun/shop/admin": {"10.7.0.1:8081 HEALTHY", "10.7.0.2:8081 HEALTHY"},
		"dryrun/cache":      {"10.7.1.1:6379 HEALTHY", "10.7.1.2:6379 HEALTHY", "10.7.1.3:6379 HEALTHY"},
	}
	for cl, eps := range want {
		files.WaitEndpoints(t, edsFile(t, cl, writer.FormatJSON), cl, settle, eps...)
	}

	for _, format := range []writer.Format{writer.FormatJSON, writer.FormatYAML} {
		t.Run(string(format), func(t *testing.T) {
			out := t.TempDir()
			args := []string{"--namespace", ns, "--format", string(format), "--once", "--output-dir", out}

			dry := c.RunEdsync(t, settle, append(args, "--dry-run")...)
			if code := dry.ExitCode(); code != 0 {
				t.Fatalf("edsync --dry-run --once exited %d, want 0\n%s", code, dry.Stderr())
			}
			if got := harness.ListFiles(t, out); len(got) != 0 {
				t.Errorf("--dry-run wrote into %s: %v", out, got)
			}
			printed := parseDryRun(t, dry.Stdout(), out)

			real := c.RunEdsync(t, settle, args...)
			if code := real.ExitCode(); code != 0 {
				t.Fatalf("edsync --once exited %d, want 0\n%s", code, real.Stderr())
			}
			var names []string
			for cl := range want {
				names = append(names, edsFile(t, cl, format))
			}
			assertFileList(t, out, names...)
			comparePrinted(t, "a dry run before the real run", printed, out)

			// Over a folder that already holds the files: still every file.
			again := c.RunEdsync(t, settle, append(args, "--dry-run")...)
			if code := again.ExitCode(); code != 0 {
				t.Fatalf("edsync --dry-run --once over a full folder exited %d, want 0\n%s", code, again.Stderr())
			}
			comparePrinted(t, "a dry run over the written folder", parseDryRun(t, again.Stdout(), out), out)
		})
	}
}

// parseDryRun splits dry-run output into path -> content. A file starts at a
// line "# <dir>/<name>"; its content is every byte up to the next such line.
func parseDryRun(t testing.TB, stdout, dir string) map[string][]byte {
	t.Helper()
	prefix := "# " + dir + string(filepath.Separator)
	out := map[string][]byte{}
	var path string
	var content []byte
	flush := func() {
		if path != "" {
			if _, dup := out[path]; dup {
				t.Errorf("dry run printed %s twice", path)
			}
			out[path] = content
		}
	}
	for line := range strings.Lines(stdout) {
		if strings.HasPrefix(line, prefix) {
			flush()
			path, content = strings.TrimSuffix(line[2:], "\n"), nil
			continue
		}
		if path == "" {
			t.Fatalf("dry-run output does not start with a %q line:\n%s", prefix, stdout)
		}
		content = append(content, line...)
	}
	flush()
	return out
}

// comparePrinted checks that printed holds every file in dir, byte for byte,
// and nothing else.
func comparePrinted(t testing.TB, what string, printed map[string][]byte, dir string) {
	t.Helper()
	var paths []string
	for _, name := range harness.ListFiles(t, dir) {
		path := filepath.Join(dir, name)
		paths = append(paths, path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := printed[path]
		switch {
		case !ok:
			t.Errorf("%s: no \"# %s\" section; the real run wrote it:\n%s", what, path, data)
		case !bytes.Equal(got, data):
			t.Errorf("%s printed for %s other bytes than the real run wrote:\nwant (the file, %d bytes)\n%s\ngot (printed, %d bytes)\n%s",
				what, path, len(data), data, len(got), got)
		}
	}
	for path, got := range printed {
		if !slices.Contains(paths, path) {
			t.Errorf("%s printed %s, which the real run did not write:\n%s", what, path, got)
		}
	}
}
