package writer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"

	"github.com/edsync/edsync/internal/syncbuf"
)

// newWriter makes a Writer over dir that logs, at Debug, into the returned buffer.
func newWriter(t *testing.T, dir string, f Format) (*Writer, *syncbuf.Buffer) {
	t.Helper()
	return newWriterIn(t, dir, f, "")
}

// newWriterIn is newWriter with a layout.
func newWriterIn(t *testing.T, dir string, f Format, l Layout) (*Writer, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	w, err := New(Options{
		Dir:    dir,
		Format: f,
		Layout: l,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, logs
}

// claWith is smallCLA for another cluster, with the first endpoint's port
// set to port, so tests can make versions that differ.
func claWith(name string, port uint32) *endpointv3.ClusterLoadAssignment {
	cla := smallCLA()
	cla.ClusterName = name
	cla.Endpoints[0].LbEndpoints[0] = lbEndpoint("10.0.0.1", port, "web-0", corev3.HealthStatus_HEALTHY)
	return cla
}

func one(name string, port uint32) []Cluster {
	return []Cluster{{Name: name, CLA: claWith(name, port)}}
}

func checkResult(t *testing.T, got Result, written, unchanged, failed int) {
	t.Helper()
	if got.Written != written || got.Unchanged != unchanged || got.Failed != failed {
		t.Fatalf("result = %d written, %d unchanged, %d failed (err %v); want %d, %d, %d",
			got.Written, got.Unchanged, got.Failed, got.Err, written, unchanged, failed)
	}
	if (got.Err != nil) != (failed > 0) {
		t.Fatalf("result error = %v with %d failed", got.Err, failed)
	}
}

// fileID is what a rewrite changes: the rename brings a new inode.
type fileID struct {
	ino   uint64
	mtime time.Time
}

func idOf(t *testing.T, path string) fileID {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileID{fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()}
}

// checkFile asserts that path holds a file Envoy accepts, for want.
func checkFile(t *testing.T, path string, want *endpointv3.ClusterLoadAssignment) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := parseLikeEnvoy(path, data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%s holds another CLA:\n%s", path, data)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o644 {
		t.Fatalf("%s: mode %s, want 0644", path, fi.Mode())
	}
	return data
}

func checkTmpEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, tmpDirName))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Fatalf("temp files left: %v", entries)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    Options
		wantErr string // substring; empty for success
	}{
		{name: "missing folder", opts: Options{Dir: filepath.Join(dir, "nope")}, wantErr: filepath.Join(dir, "nope") + ": stat"},
		{name: "not a folder", opts: Options{Dir: file}, wantErr: file + " is not a folder"},
		{name: "no folder", opts: Options{}, wantErr: "no output folder"},
		{name: "bad format", opts: Options{Dir: dir, Format: "xml"}, wantErr: `unknown format "xml"`},
		{name: "ok", opts: Options{Dir: dir}},
		{name: "dry-run needs no folder", opts: Options{Dir: filepath.Join(dir, "nope"), DryRun: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("New created the missing folder: %v", err)
	}
}

// New cleans the temp folder and lists the files of ours in the folder,
// in each layout: those of its own, never those of the other layout (an
// Envoy may read them; they are counted and logged), nor anything that is
// not a cluster's file.
func TestNewCleansTmpAndListsExisting(t *testing.T) {
	for _, tt := range []struct {
		layout Layout
		files  []string
	}{
		{LayoutFlat, []string{
			"default_web_http.json",
			"a%5Fb.json",
			"dir.json/x",            // a folder is not one of our files
			"other_layout/eds.json", // the other layout's: a CLA (below)
			"other/eds.json",        // a name alone proves nothing
		}},
		{LayoutFolders, []string{
			"default_web_http/eds.json",
			"a%5Fb/eds.json",
			"empty/x",           // a cluster folder without its file
			"other_layout.json", // the other layout's: a CLA (below)
			"envoy.json",        // a name alone proves nothing
			"wrong/eds.yaml",    // another format
			"file",              // a file where a folder would be
		}},
	} {
		t.Run(string(tt.layout), func(t *testing.T) {
			dir := t.TempDir()
			for _, p := range append([]string{
				".tmp/default_web_http.json.123456", // a crash between create and rename
				".tmp/sub/x",
				"notes.txt",
				".hidden.json",
				".hidden/eds.json",
				"other.yaml",
				".target/eds.json", // "link" below points here
			}, tt.files...) {
				p = filepath.Join(dir, p)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				content := []byte("x")
				if strings.Contains(p, "other_layout") {
					e, err := newEncoder(FormatJSON).encode(claWith("other/layout", 80), nil)
					if err != nil {
						t.Fatal(err)
					}
					content = e.data
				}
				if err := os.WriteFile(p, content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// A link to a folder holding a file is not a cluster folder.
			if err := os.Symlink(".target", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			w, logs := newWriterIn(t, dir, FormatJSON, tt.layout)
			checkTmpEmpty(t, dir)
			if got, want := w.Known(), []string{"a_b", "default/web/http"}; !slicesEqual(got, want) {
				t.Fatalf("Known() = %q, want %q", got, want)
			}
			if !strings.Contains(logs.String(), `"other_layout":"`+string(tt.layout.Other())+`","files":1`) {
				t.Errorf("the other layout's file not reported: %s", logs)
			}
			if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
				t.Fatal("New removed a file that is not a temp file")
			}
			// Known adds the clusters written since, once each.
			checkResult(t, w.Write(t.Context(), append(one("z", 80), one("a_b", 81)...)), 2, 0, 0)
			if got, want := w.Known(), []string{"a_b", "default/web/http", "z"}; !slicesEqual(got, want) {
				t.Fatalf("Known() = %q, want %q", got, want)
			}
		})
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

func TestWriteSkipsUnchanged(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			dir := t.TempDir()
			w, _ := newWriter(t, dir, f)
			path, _ := w.Path("default/web/http")

			checkResult(t, w.Write(t.Context(), one("default/web/http", 80)), 1, 0, 0)
			checkFile(t, path, claWith("default/web/http", 80))
			checkTmpEmpty(t, dir)
			before := idOf(t, path)

			// Same content in new messages: no write, same inode and mtime.
			checkResult(t, w.Write(t.Context(), one("default/web/http", 80)), 0, 1, 0)
			if after := idOf(t, path); after != before {
				t.Fatalf("unchanged file rewritten: %v -> %v", before, after)
			}

			checkResult(t, w.Write(t.Context(), one("default/web/http", 81)), 1, 0, 0)
			checkFile(t, path, claWith("default/web/http", 81))
			if after := idOf(t, path); after.ino == before.ino {
				t.Fatal("changed file kept its inode: not replaced by a rename")
			}
		})
	}
}

func TestRestartRewritesNothing(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			dir := t.TempDir()
			names := []string{"ns/a/http", "ns/b", "ns/c/grpc"}
			batch := func(changedPort uint32) []Cluster {
				var cs []Cluster
				for i, n := range names {
					port := uint32(80)
					if i == 0 {
						port = changedPort
					}
					cs = append(cs, one(n, port)...)
				}
				return cs
			}
			w1, _ := newWriter(t, dir, f)
			checkResult(t, w1.Write(t.Context(), batch(80)), 3, 0, 0)
			ids := map[string]fileID{}
			for _, n := range names {
				p, _ := w1.Path(n)
				ids[n] = idOf(t, p)
			}

			w2, _ := newWriter(t, dir, f)
			if got := w2.Known(); !slicesEqual(got, names) {
				t.Fatalf("Known() = %q, want %q", got, names)
			}
			checkResult(t, w2.Write(t.Context(), batch(80)), 0, 3, 0)
			for _, n := range names {
				p, _ := w2.Path(n)
				if got := idOf(t, p); got != ids[n] {
					t.Fatalf("%s rewritten after restart: %v -> %v", n, ids[n], got)
				}
			}

			w3, _ := newWriter(t, dir, f)
			checkResult(t, w3.Write(t.Context(), batch(81)), 1, 2, 0)

			// A file with other bytes (an older edsync, a hand edit) is replaced.
			p, _ := w3.Path("ns/b")
			if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
			w4, _ := newWriter(t, dir, f)
			checkResult(t, w4.Write(t.Context(), batch(81)), 1, 2, 0)
			checkFile(t, p, claWith("ns/b", 80))
		})
	}
}

// TestWriteFaults: a write that fails leaves the old file whole, is logged at
// Error with the path, counted and kept; Retry writes the latest content once
// the fault is gone.
func TestWriteFaults(t *testing.T) {
	tmpIsFile := func(t *testing.T, w *Writer, dir string) func() {
		// Works as root too: no permission is involved.
		tmp := filepath.Join(dir, tmpDirName)
		if err := os.RemoveAll(tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tmp, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return func() { os.Remove(tmp) } // the writer makes .tmp/ again
	}
	readOnly := func(t *testing.T, w *Writer, dir string) func() {
		if os.Geteuid() == 0 {
			t.Skip("root ignores permissions; the other faults cover this")
		}
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		return func() { os.Chmod(dir, 0o755) }
	}
	renameFails := func(t *testing.T, w *Writer, dir string) func() {
		// The last step fails, after the temp file was written and synced.
		w.rename = func(dirHandle, string, dirHandle, string) error { return syscall.ENOSPC }
		return func() { w.rename = renameAt }
	}
	tests := []struct {
		name  string
		fault func(t *testing.T, w *Writer, dir string) (undo func())
	}{
		{"tmp folder is a file", tmpIsFile},
		{"read-only folder", readOnly},
		{"rename fails", renameFails},
	}
	for _, tt := range tests {
		for _, f := range formats {
			t.Run(tt.name+"/"+string(f), func(t *testing.T) {
				dir := t.TempDir()
				w, logs := newWriter(t, dir, f)
				const name = "default/web/http"
				path, _ := w.Path(name)
				checkResult(t, w.Write(t.Context(), one(name, 80)), 1, 0, 0)
				old := checkFile(t, path, claWith(name, 80))

				undo := tt.fault(t, w, dir)
				defer undo()
				res := w.Write(t.Context(), one(name, 81))
				checkResult(t, res, 0, 0, 1)
				if !strings.Contains(res.Err.Error(), path) {
					t.Errorf("error %q does not name %s", res.Err, path)
				}
				if !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), `"path":"`+path+`"`) {
					t.Errorf("failure not logged at Error with the path:\n%s", logs)
				}
				if got, _ := os.ReadFile(path); !bytes.Equal(got, old) {
					t.Fatal("old file not intact after a failed write")
				}
				if fi, err := os.Stat(filepath.Join(dir, tmpDirName)); err == nil && fi.IsDir() {
					checkTmpEmpty(t, dir)
				}
				if w.Pending() != 1 {
					t.Fatalf("Pending() = %d, want 1", w.Pending())
				}

				// A newer version while still failing replaces the pending one.
				checkResult(t, w.Write(t.Context(), one(name, 82)), 0, 0, 1)
				checkResult(t, w.Retry(t.Context()), 0, 0, 1)
				if w.Pending() != 1 {
					t.Fatalf("Pending() = %d, want 1", w.Pending())
				}

				undo()
				checkResult(t, w.Retry(t.Context()), 1, 0, 0)
				checkFile(t, path, claWith(name, 82))
				checkTmpEmpty(t, dir)
				if w.Pending() != 0 {
					t.Fatalf("Pending() = %d after a good Retry", w.Pending())
				}
				checkResult(t, w.Retry(t.Context()), 0, 0, 0)
			})
		}
	}
}

// TestWriteBackToDiskContent: when a write fails and the next Write brings
// back what the file already holds, nothing is left to retry.
func TestWriteBackToDiskContent(t *testing.T) {
	w, _ := newWriter(t, t.TempDir(), FormatJSON)
	checkResult(t, w.Write(t.Context(), one("a", 80)), 1, 0, 0)
	w.rename = func(dirHandle, string, dirHandle, string) error { return syscall.EIO }
	checkResult(t, w.Write(t.Context(), one("a", 81)), 0, 0, 1)
	checkResult(t, w.Write(t.Context(), one("a", 80)), 0, 1, 0)
	if w.Pending() != 0 {
		t.Fatalf("Pending() = %d, want 0", w.Pending())
	}
}

func TestWriteRefusesNonRegularTarget(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatYAML)
	path, _ := w.Path("ns/svc")
	if err := os.MkdirAll(filepath.Join(path, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	res := w.Write(t.Context(), one("ns/svc", 80))
	checkResult(t, res, 0, 0, 1)
	if !strings.Contains(res.Err.Error(), "not a regular file") {
		t.Fatalf("error = %v", res.Err)
	}
	if _, err := os.Stat(filepath.Join(path, "keep")); err != nil {
		t.Fatal("the folder at the target was touched")
	}
	checkTmpEmpty(t, dir)

	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	checkResult(t, w.Retry(t.Context()), 1, 0, 0)
	checkFile(t, path, claWith("ns/svc", 80))
}

// TestWriteRejectsBadInput: content Envoy would reject is not written, the old
// file stays, and nothing is kept for Retry (it would fail the same way).
func TestWriteRejectsBadInput(t *testing.T) {
	bad := claWith("a", 80)
	bad.Endpoints[0].LbEndpoints[1] = lbEndpoint("10.0.0.2", 70000, "", 0)
	tests := []struct {
		name    string
		cluster Cluster
		wantErr string
	}{
		{"name mismatch", Cluster{Name: "a", CLA: claWith("b", 80)}, `cluster_name "b" differs`},
		{"nil CLA", Cluster{Name: "a"}, "no ClusterLoadAssignment"},
		{"invalid", Cluster{Name: "a", CLA: bad}, "PortValue"},
		{"empty name", Cluster{Name: "", CLA: claWith("", 80)}, "empty cluster name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			w, _ := newWriter(t, dir, FormatPB)
			path, _ := w.Path("a")
			checkResult(t, w.Write(t.Context(), one("a", 81)), 1, 0, 0)
			old := checkFile(t, path, claWith("a", 81))

			res := w.Write(t.Context(), []Cluster{tt.cluster})
			checkResult(t, res, 0, 0, 1)
			if !strings.Contains(res.Err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", res.Err, tt.wantErr)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, old) {
				t.Fatal("old file changed")
			}
			if w.Pending() != 0 {
				t.Fatalf("Pending() = %d", w.Pending())
			}
		})
	}
}

func TestWriteDuplicatesLastWins(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	batch := append(append(one("a", 80), one("b", 80)...), one("a", 81)...)
	checkResult(t, w.Write(t.Context(), batch), 2, 0, 0)
	p, _ := w.Path("a")
	checkFile(t, p, claWith("a", 81))
}

func TestWriteManyInParallel(t *testing.T) {
	for _, conc := range []int{1, 8} {
		t.Run(fmt.Sprint(conc), func(t *testing.T) {
			dir := t.TempDir()
			w, err := New(Options{Dir: dir, Format: FormatPB, Concurrency: conc})
			if err != nil {
				t.Fatal(err)
			}
			var batch []Cluster
			for i := range 200 {
				batch = append(batch, one(fmt.Sprintf("ns/svc-%d/http", i), uint32(1000+i))...)
			}
			checkResult(t, w.Write(t.Context(), batch), 200, 0, 0)
			for _, c := range batch {
				p, _ := w.Path(c.Name)
				checkFile(t, p, c.CLA)
			}
			checkTmpEmpty(t, dir)
			checkResult(t, w.Write(t.Context(), batch), 0, 200, 0)
		})
	}
}

func TestWriteCanceled(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	batch := append(one("a", 80), one("b", 80)...)
	res := w.Write(ctx, batch)
	checkResult(t, res, 0, 0, 2)
	if !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("error = %v", res.Err)
	}
	if w.Pending() != 2 {
		t.Fatalf("Pending() = %d", w.Pending())
	}
	checkResult(t, w.Retry(t.Context()), 2, 0, 0)
}

func TestDryRun(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "missing")
			var out bytes.Buffer
			w, err := New(Options{Dir: dir, Format: f, DryRun: true, Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			batch := append(one("ns/a", 80), one("ns/b", 80)...)
			checkResult(t, w.Write(t.Context(), batch), 2, 0, 0)
			var want bytes.Buffer
			for _, c := range batch {
				p, _ := w.Path(c.Name)
				fmt.Fprintf(&want, "# %s\n", p)
				data, err := w.Encode(c.CLA)
				if err != nil {
					t.Fatal(err)
				}
				if f == FormatPB {
					data, _ = pbText(data)
				}
				want.Write(data)
			}
			if out.String() != want.String() {
				t.Fatalf("dry-run output:\n%s\nwant:\n%s", out.String(), want.String())
			}

			out.Reset()
			checkResult(t, w.Write(t.Context(), batch), 0, 2, 0)
			if out.Len() != 0 {
				t.Fatalf("unchanged clusters printed again:\n%s", out.String())
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("dry-run touched the folder")
			}
		})
	}
}

// TestDryRunIgnoresDisk: dry-run shows what would be written even when the
// file on disk is already right, and changes nothing there.
func TestDryRunIgnoresDisk(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	checkResult(t, w.Write(t.Context(), one("a", 80)), 1, 0, 0)
	p, _ := w.Path("a")
	before := idOf(t, p)

	var out bytes.Buffer
	dry, err := New(Options{Dir: dir, DryRun: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Known()) != 0 {
		t.Fatal("dry-run listed the folder")
	}
	checkResult(t, dry.Write(t.Context(), one("a", 81)), 1, 0, 0)
	checkResult(t, dry.Write(t.Context(), one("a", 80)), 1, 0, 0)
	if !strings.HasPrefix(out.String(), "# "+p+"\n{") {
		t.Fatalf("output:\n%s", out.String())
	}
	if idOf(t, p) != before {
		t.Fatal("dry-run touched the file")
	}
}

func TestLogs(t *testing.T) {
	dir := t.TempDir()
	w, logs := newWriter(t, dir, FormatJSON)
	w.Write(t.Context(), one("a", 80))
	p, _ := w.Path("a")
	for _, want := range []string{`"level":"DEBUG"`, `"msg":"wrote"`, `"component":"writer"`, `"path":"` + p + `"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

// TestModeWhateverTheUmask: files are 0644 under a umask that leaves 0644
// alone (no chmod then) and under one that does not (chmodded).
func TestModeWhateverTheUmask(t *testing.T) {
	for _, mask := range []int{0o022, 0o077} {
		t.Run(fmt.Sprintf("%03o", mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			dir := t.TempDir()
			w, _ := newWriter(t, dir, FormatJSON)
			if res := w.Write(t.Context(), one("default/web/http", 8080)); res.Written != 1 {
				t.Fatal(res.Err)
			}
			path, err := w.Path("default/web/http")
			if err != nil {
				t.Fatal(err)
			}
			checkFile(t, path, claWith("default/web/http", 8080))
		})
	}
}

// TestDigestCollisionIsWritten: a document whose digest matches the file's
// (as a crafted collision of the 64-bit hash would) but whose bytes differ
// is written, not taken as unchanged.
func TestDigestCollisionIsWritten(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	if res := w.Write(t.Context(), one("default/web/http", 8080)); res.Written != 1 {
		t.Fatal(res.Err)
	}
	next := claWith("default/web/http", 9090)
	enc, err := newEncoder(FormatJSON).encode(next, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The file's digest, as this process knows it, now collides with next's.
	w.mu.Lock()
	f := w.files["default/web/http"]
	f.digest = enc.digest
	w.files["default/web/http"] = f
	w.mu.Unlock()
	if res := w.Write(t.Context(), []Cluster{{Name: "default/web/http", CLA: next}}); res.Written != 1 {
		t.Fatalf("written %d, unchanged %d: a colliding digest passed for the file's content", res.Written, res.Unchanged)
	}
	path, _ := w.Path("default/web/http")
	checkFile(t, path, next)
	// And the same content again is unchanged, without reading the file.
	if res := w.Write(t.Context(), []Cluster{{Name: "default/web/http", CLA: claWith("default/web/http", 9090)}}); res.Unchanged != 1 {
		t.Fatalf("the same content again: %+v", res)
	}
}

// A link (or a file) planted as .tmp is removed, never followed: the
// start-up clean would otherwise delete what the folder it points at
// holds. The Writer then writes through a real temp folder.
func TestTmpLinkIsNotFollowed(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	precious := filepath.Join(elsewhere, "precious")
	if err := os.WriteFile(precious, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, tmpDirName)); err != nil {
		t.Fatal(err)
	}
	w, _ := newWriter(t, dir, FormatJSON)
	if got, err := os.ReadFile(precious); err != nil || string(got) != "keep me" {
		t.Fatalf("the link's target lost its file: %q, %v", got, err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, tmpDirName)); err != nil || !fi.IsDir() {
		t.Fatalf(".tmp is %v (%v), want a real folder", fi.Mode(), err)
	}
	checkResult(t, w.Write(t.Context(), one("a", 80)), 1, 0, 0)
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 1 {
		t.Errorf("the link's target holds %v", entries)
	}
}

// manyCLA is a CLA for name with n endpoints.
func manyCLA(name string, n int) *endpointv3.ClusterLoadAssignment {
	cla := claWith(name, 80)
	lbs := cla.Endpoints[0].LbEndpoints[:0]
	for i := range n {
		lbs = append(lbs, lbEndpoint(fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), 80, fmt.Sprintf("web-%d", i), corev3.HealthStatus_HEALTHY))
	}
	cla.Endpoints[0].LbEndpoints = lbs
	return cla
}

// A cluster whose file would be over MaxFileSize is not written, in any
// format: its old file stays byte for byte, the others of the batch are
// written, nothing is pending (a retry would not make it smaller), and an
// older pending content is dropped so that no retry writes it over the file.
func TestWriteTooLarge(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			dir := t.TempDir()
			const limit = 4 << 10
			w, err := New(Options{Dir: dir, Format: f, MaxFileSize: limit})
			if err != nil {
				t.Fatal(err)
			}
			const big, other = "default/big/http", "default/other/http"
			bigPath, _ := w.Path(big)
			checkResult(t, w.Write(t.Context(), one(big, 80)), 1, 0, 0)
			old := checkFile(t, bigPath, claWith(big, 80))

			// A failed write leaves content pending...
			w.rename = func(dirHandle, string, dirHandle, string) error { return syscall.ENOSPC }
			checkResult(t, w.Write(t.Context(), one(big, 81)), 0, 0, 1)
			w.rename = renameAt

			// ...which a too-large one replaces and drops.
			res := w.Write(t.Context(), []Cluster{{Name: big, CLA: manyCLA(big, 500)}, one(other, 80)[0]})
			checkResult(t, res, 1, 0, 0)
			if len(res.TooLarge) != 1 || res.TooLarge[0].Cluster != big || res.TooLarge[0].Max != limit || res.TooLarge[0].Size <= limit {
				t.Fatalf("TooLarge = %+v, want %s over %d", res.TooLarge, big, limit)
			}
			if got, _ := os.ReadFile(bigPath); !bytes.Equal(got, old) {
				t.Fatal("the old file changed")
			}
			if w.Pending() != 0 {
				t.Fatalf("Pending() = %d, want 0", w.Pending())
			}
			checkResult(t, w.Retry(t.Context()), 0, 0, 0)
			if got, _ := os.ReadFile(bigPath); !bytes.Equal(got, old) {
				t.Fatal("a retry wrote the old pending content")
			}
			otherPath, _ := w.Path(other)
			checkFile(t, otherPath, claWith(other, 80))
			checkTmpEmpty(t, dir)

			// The same again is refused again; once it fits, it is written.
			if res := w.Write(t.Context(), []Cluster{{Name: big, CLA: manyCLA(big, 500)}}); len(res.TooLarge) != 1 {
				t.Fatalf("TooLarge = %+v the second time", res.TooLarge)
			}
			checkResult(t, w.Write(t.Context(), one(big, 82)), 1, 0, 0)
			checkFile(t, bigPath, claWith(big, 82))
		})
	}
}

// A link put in .tmp's place while edsync runs is not written through
// either: no temp file lands in the folder it points at, the write fails
// (logged, retried) and the old file stays; once a real folder is back the
// retry writes.
func TestTmpSwappedForALinkAtRuntime(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	const name = "default/web/http"
	path, _ := w.Path(name)
	checkResult(t, w.Write(t.Context(), one(name, 80)), 1, 0, 0)
	old := checkFile(t, path, claWith(name, 80))

	tmp := filepath.Join(dir, tmpDirName)
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, tmp); err != nil {
		t.Fatal(err)
	}
	checkResult(t, w.Write(t.Context(), one(name, 81)), 0, 0, 1)
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("a temp file was written through the link: %v", entries)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, old) {
		t.Error("the old file changed")
	}
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	checkResult(t, w.Retry(t.Context()), 1, 0, 0) // .tmp is made again
	checkFile(t, path, claWith(name, 81))
}

// Result.Kept gives, for each cluster whose file holds the content given,
// the version_info in that file, whether this Write renamed it or found it
// right (in the Writer's memory, or on disk after a restart): what a reader
// of the files is to report.
func TestWriteKeptVersions(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	const name = "default/web/http"
	path, _ := w.Path(name)
	fileVersion := func() string {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		resp, _, err := parseLikeEnvoy(path, data)
		if err != nil {
			t.Fatal(err)
		}
		return resp.VersionInfo
	}
	res := w.Write(t.Context(), one(name, 80))
	if want := []Kept{{Cluster: name, Version: fileVersion(), Renamed: true}}; !slices.Equal(res.Kept, want) {
		t.Fatalf("written: Kept %+v, want %+v", res.Kept, want)
	}
	if res := w.Write(t.Context(), one(name, 80)); !slices.Equal(res.Kept, []Kept{{Cluster: name, Version: fileVersion()}}) {
		t.Fatalf("unchanged: Kept %+v", res.Kept)
	}
	w2, _ := newWriter(t, dir, FormatJSON) // a restart finds it on disk
	if res := w2.Write(t.Context(), one(name, 80)); res.Unchanged != 1 || !slices.Equal(res.Kept, []Kept{{Cluster: name, Version: fileVersion()}}) {
		t.Fatalf("after a restart: %+v", res)
	}
	w.rename = func(dirHandle, string, dirHandle, string) error { return syscall.EIO }
	if res := w.Write(t.Context(), one(name, 81)); len(res.Kept) != 0 {
		t.Fatalf("a failed write is kept: %+v", res.Kept)
	}
}
