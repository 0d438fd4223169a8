package writer

import (
	"os"
	"path/filepath"
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
