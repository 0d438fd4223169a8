package writer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Each cluster's file is in a folder of its own, named as the flat
// layout names the file without its extension, within 255 bytes; the
// temp files stay out of every cluster folder.
func TestFoldersLayout(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatPB)
	long := "ns/" + strings.Repeat("x", 300) + "/http"
	checkResult(t, w.Write(t.Context(), append(one("shop/web/http", 80), one(long, 81)...)), 2, 0, 0)
	web, _ := w.Path("shop/web/http")
	if want := filepath.Join(dir, "shop_web_http", "eds.pb"); web != want {
		t.Errorf("Path = %s, want %s", web, want)
	}
	checkFile(t, web, claWith("shop/web/http", 80))
	longPath, _ := w.Path(long)
	checkFile(t, longPath, claWith(long, 81))
	if n := len(filepath.Base(filepath.Dir(longPath))); n > 255 {
		t.Errorf("folder name of %d bytes", n)
	}
	for _, p := range []string{web, longPath} {
		entries, err := os.ReadDir(filepath.Dir(p))
		if err != nil || len(entries) != 1 {
			t.Errorf("%s holds %v (%v), want its file alone", filepath.Dir(p), entries, err)
		}
	}
	if got, ok := FolderCluster("shop_web_http"); !ok || got != "shop/web/http" {
		t.Errorf("FolderCluster = %q, %v", got, ok)
	}
	// A restart knows both, the shortened one by its content.
	w2, _ := newWriter(t, dir, FormatPB)
	if got := w2.Known(); !slices.Equal(got, []string{long, "shop/web/http"}) {
		t.Errorf("Known after a restart = %q", got)
	}
}

// A link or a file where a cluster's folder would be is not written
// through: the write fails and what the link points at is untouched.
func TestFoldersLayoutRefusesALinkForAFolder(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(dir, "shop_web_http")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "shop_api_http"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, _ := newWriter(t, dir, FormatJSON)
	res := w.Write(t.Context(), append(one("shop/web/http", 80), one("shop/api/http", 80)...))
	checkResult(t, res, 0, 0, 2)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "is not a folder") {
		t.Errorf("error %v, want one saying the folder is not a folder", res.Err)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("written through the link: %v", entries)
	}
}

// A cluster folder removed since the Writer made it (no watch running) is
// made again by the next write of its cluster rather than failing it.
func TestFoldersLayoutMakesARemovedFolderAgain(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	checkResult(t, w.Write(t.Context(), one("a", 80)), 1, 0, 0)
	path, _ := w.Path("a")
	if err := os.RemoveAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	checkResult(t, w.Write(t.Context(), one("a", 81)), 1, 0, 0)
	checkFile(t, path, claWith("a", 81))
}

// The folder watch costs one inotify watch for the output folder and one
// per cluster folder of a file the Writer keeps: a cluster folder removed
// or renamed away is reported (and written again by the next Write), a
// released cluster's folder is no longer watched, and a pruned one is
// removed with its file.
func TestFoldersLayoutWatch(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	names := []string{"a", "b", "c", "gone"}
	var batch []Cluster
	for _, n := range names {
		batch = append(batch, one(n, 80)...)
	}
	checkResult(t, w.Write(t.Context(), batch[:2]), 2, 0, 0) // a, b before the watch
	fw, lost := runWatch(t, w)
	checkResult(t, w.Write(t.Context(), batch[2:]), 2, 0, 0) // c, gone after it
	path := func(c string) string { p, _ := w.Path(c); return p }
	watched := func() []string {
		l := fw.fsw.WatchList()
		slices.Sort(l)
		return l
	}
	folders := func(cs ...string) []string {
		out := []string{dir}
		for _, c := range cs {
			out = append(out, filepath.Dir(path(c)))
		}
		slices.Sort(out)
		return out
	}
	if got, want := watched(), folders(names...); !slices.Equal(got, want) {
		t.Errorf("watching %q, want %q", got, want)
	}

	// Released: not watched; pruned: its folder goes.
	checkResult(t, w.Write(t.Context(), []Cluster{{Name: "gone", CLA: emptyCLA("gone"), Release: true}}), 1, 0, 0)
	if got, want := watched(), folders("a", "b", "c"); !slices.Equal(got, want) {
		t.Errorf("after a release, watching %q, want %q", got, want)
	}
	if removed, err := w.Remove("gone"); !removed || err != nil {
		t.Fatalf("Remove: %v, %v", removed, err)
	}
	if _, err := os.Stat(filepath.Dir(path("gone"))); !os.IsNotExist(err) {
		t.Errorf("the pruned cluster's folder: %v, want it gone", err)
	}

	// A cluster folder removed, one renamed away: both reported.
	if err := os.RemoveAll(filepath.Dir(path("a"))); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "a", "b", "c")
	if err := os.Rename(filepath.Dir(path("b")), filepath.Join(dir, "b-moved")); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "b", "c")
	// Written again, in new folders, watched again: a removal there is
	// seen too.
	checkResult(t, w.Write(t.Context(), append(one("a", 80), one("b", 80)...)), 2, 0, 0)
	checkFile(t, path("a"), claWith("a", 80))
	if err := os.Remove(path("a")); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "a", "b", "c")
	if got, want := watched(), folders("a", "b", "c"); !slices.Equal(got, want) {
		t.Errorf("in the end, watching %q, want %q", got, want)
	}
}

// Remove leaves a cluster folder that holds something else than the file,
// and does not go through a link put in its place.
func TestFoldersLayoutRemoveLeavesOthersFiles(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	for _, n := range []string{"a", "b"} {
		checkResult(t, w.Write(t.Context(), []Cluster{{Name: n, CLA: emptyCLA(n), Release: true}}), 1, 0, 0)
	}
	a, _ := w.Path("a")
	notes := filepath.Join(filepath.Dir(a), "notes.txt")
	if err := os.WriteFile(notes, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if removed, err := w.Remove("a"); !removed || err != nil {
		t.Fatalf("Remove: %v, %v", removed, err)
	}
	if _, err := os.Stat(notes); err != nil {
		t.Errorf("someone's file in the cluster folder: %v", err)
	}
	// b's folder replaced by a link to a folder holding b's very bytes.
	b, _ := w.Path("b")
	elsewhere := t.TempDir()
	data, _ := os.ReadFile(b)
	if err := os.WriteFile(filepath.Join(elsewhere, "eds.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Dir(b)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Dir(b)); err != nil {
		t.Fatal(err)
	}
	if removed, err := w.Remove("b"); removed || err == nil {
		t.Errorf("Remove through a link: %v, %v; want it refused", removed, err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "eds.json")); err != nil {
		t.Errorf("removed through the link: %v", err)
	}
}
