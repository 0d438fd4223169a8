package writer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

func TestOwnsOnlyItsOwnFiles(t *testing.T) {
	for _, f := range []Format{FormatJSON, FormatYAML, FormatPB} {
		t.Run(string(f), func(t *testing.T) {
			dir := t.TempDir()
			w, err := New(Options{Dir: dir, Format: f})
			if err != nil {
				t.Fatal(err)
			}
			if res := w.Write(t.Context(), []Cluster{{Name: "shop/web/http", CLA: &endpointv3.ClusterLoadAssignment{ClusterName: "shop/web/http"}}}); res.Written != 1 {
				t.Fatalf("write: %+v", res)
			}
			if !w.Owns("shop/web/http") {
				t.Error("a file edsync wrote is not recognised as its own")
			}
			// Envoy's own config in the same folder, and a CLA file renamed by hand.
			foreign := map[string]string{"envoy": "{\"static_resources\": {}}\n", "other/name": "not even json"}
			for name, content := range foreign {
				file, _ := w.Path(name)
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				if w.Owns(name) {
					t.Errorf("%s (%q) taken for edsync's", file, content)
				}
			}
			src, _ := w.Path("shop/web/http")
			dst, _ := w.Path("shop/api/http")
			data, _ := os.ReadFile(src)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if w.Owns("shop/api/http") {
				t.Error("a file holding another cluster's CLA taken for this cluster's")
			}
			if w.Owns("missing/cluster") {
				t.Error("a missing file is owned")
			}
		})
	}
}

// A cluster folder holding nothing is what a crash leaves between the
// making of the folder and the rename of its first file, or between a
// prune's removal of the file and of the folder: Known and Owned, so that
// the start's sweep empties it and the prune removes it. A folder holding
// anything else and a link are not; nor, flat, any folder. An empty folder
// of a shortened name is not listed (only its file would tell its cluster).
func TestFolderWithoutItsFileIsKnown(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 300)
	entry, err := LayoutFolders.entry(long, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"shop_gone_http", "notes", "empty", entry} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes", "todo.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("empty", filepath.Join(dir, "shop_link_http")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "empty")); err != nil { // a link to nothing
		t.Fatal(err)
	}

	w, _ := newWriter(t, dir, FormatJSON)
	if got := w.Known(); !slices.Equal(got, []string{"shop/gone/http"}) {
		t.Errorf("Known() = %q, want the folder left without its file alone", got)
	}
	// The shortened name is that of the cluster's folder (it holds a hash
	// of the full name): asked for that cluster, it is its own.
	for name, want := range map[string]bool{"shop/gone/http": true, "notes": false, "shop/link/http": false, long: true} {
		if got := w.Owns(name); got != want {
			t.Errorf("Owns(%q) = %v, want %v", name, got, want)
		}
	}

	flat, _ := newWriterIn(t, dir, FormatJSON, LayoutFlat)
	if got := flat.Known(); len(got) != 0 {
		t.Errorf("flat: Known() = %q, want nothing", got)
	}
}
