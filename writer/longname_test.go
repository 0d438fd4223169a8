package writer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A cluster whose plain file name would pass 255 bytes is written under its
// shortened name, and a new Writer over the folder (a restart) knows that
// file as the cluster's by the cluster_name inside it: it is listed,
// owned, and not rewritten when its bytes are right.
func TestLongClusterNames(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			dir := t.TempDir()
			long := "ns/" + strings.Repeat("x", 300) + "/http"
			twin := "ns/" + strings.Repeat("x", 300) + "/grpc" // same 250-byte prefix
			w, _ := newWriter(t, dir, f)
			batch := append(one(long, 80), one(twin, 81)...)
			checkResult(t, w.Write(t.Context(), batch), 2, 0, 0)
			path, err := w.Path(long)
			if err != nil {
				t.Fatal(err)
			}
			twinPath, _ := w.Path(twin)
			if path == twinPath || len(filepath.Base(path)) > 255 {
				t.Fatalf("files %q and %q: want two names of at most 255 bytes", path, twinPath)
			}
			checkFile(t, path, claWith(long, 80))
			checkFile(t, twinPath, claWith(twin, 81))
			id := idOf(t, path)

			// A file with a shortened name that is not a CLA of ours, and
			// one holding another cluster's CLA, are not taken for clusters.
			junk := strings.Repeat("j", 100) + "~0123456789abcdef0123456789abcdef" + f.Ext()
			if err := os.WriteFile(filepath.Join(dir, junk), []byte("not a CLA"), 0o644); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			misnamed := strings.Repeat("m", 100) + "~0123456789abcdef0123456789abcdef" + f.Ext()
			if err := os.WriteFile(filepath.Join(dir, misnamed), data, 0o644); err != nil {
				t.Fatal(err)
			}

			w2, _ := newWriter(t, dir, f)
			want := []string{twin, long}
			slices.Sort(want)
			if got := w2.Known(); !slices.Equal(got, want) {
				t.Fatalf("Known() after a restart = %q, want %q", got, want)
			}
			if !w2.Owns(long) {
				t.Fatal("the shortened file is not known as the cluster's after a restart")
			}
			checkResult(t, w2.Write(t.Context(), one(long, 80)), 0, 1, 0)
			if idOf(t, path) != id {
				t.Fatal("an unchanged file with a shortened name was rewritten after a restart")
			}
			checkResult(t, w2.Write(t.Context(), one(long, 82)), 1, 0, 0)
			checkFile(t, path, claWith(long, 82))
		})
	}
}
