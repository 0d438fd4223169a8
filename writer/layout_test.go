package writer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
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
	if res.Err == nil || !strings.Contains(res.Err.Error(), "not a folder (a link or a file") {
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
	fw, err := w.Watch()
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan struct{}, 100)
	fw.onApply = func() {
		select {
		case applied <- struct{}{}:
		default:
		}
	}
	lost := runWatcher(t, fw)
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
	// The Writer queues the folders; Run adds and removes the watches.
	waitWatched := func(step string, want []string) {
		t.Helper()
		guard := time.After(30 * time.Second) // a failure guard, not a timing assertion
		for {
			got := watched()
			if slices.Equal(got, want) {
				return
			}
			select {
			case <-applied:
			case <-guard:
				t.Fatalf("%s: watching %q, want %q", step, got, want)
			}
		}
	}
	waitWatched("after the first writes", folders(names...))

	// Released: not watched; pruned: its folder goes.
	checkResult(t, w.Write(t.Context(), []Cluster{{Name: "gone", CLA: emptyCLA("gone"), Release: true}}), 1, 0, 0)
	waitWatched("after a release", folders("a", "b", "c"))
	if removed, err := w.Remove("gone"); !removed || err != nil {
		t.Fatalf("Remove: %v, %v", removed, err)
	}
	if _, err := os.Stat(filepath.Dir(path("gone"))); !os.IsNotExist(err) {
		t.Errorf("the pruned cluster's folder: %v, want it gone", err)
	}

	// A cluster folder removed, one renamed away: both reported, and no
	// longer watched.
	if err := os.RemoveAll(filepath.Dir(path("a"))); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "a", "b", "c")
	if err := os.Rename(filepath.Dir(path("b")), filepath.Join(dir, "b-moved")); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "b", "c")
	waitWatched("after the losses", folders("c"))
	// Written again, in new folders, watched again: a removal there is
	// seen too.
	checkResult(t, w.Write(t.Context(), append(one("a", 80), one("b", 80)...)), 2, 0, 0)
	checkFile(t, path("a"), claWith("a", 80))
	waitWatched("written again", folders("a", "b", "c"))
	if err := os.Remove(path("a")); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "a", "b", "c")
	waitWatched("in the end", folders("b", "c"))
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

// A link swapped in for a cluster folder after edsync wrote there is never
// written, read or removed through: not by a retry of a failed write, not
// by a restart comparing with the file on disk, not by a prune.
func TestFoldersLayoutNeverThroughALink(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	checkResult(t, w.Write(t.Context(), one("c", 80)), 1, 0, 0)
	path, _ := w.Path("c")
	data, _ := os.ReadFile(path)
	swap := func(withFile bool) {
		t.Helper()
		if err := os.RemoveAll(filepath.Dir(path)); err != nil {
			t.Fatal(err)
		}
		if withFile { // a file in the folder's place: the write fails
			if err := os.WriteFile(filepath.Dir(path), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := os.Symlink(elsewhere, filepath.Dir(path)); err != nil {
			t.Fatal(err)
		}
	}
	swap(true)
	checkResult(t, w.Write(t.Context(), one("c", 81)), 0, 0, 1) // pending now
	swap(false)
	checkResult(t, w.Retry(t.Context()), 0, 0, 1)
	// A restart with the link pointing at the very bytes it would write.
	if err := os.WriteFile(filepath.Join(elsewhere, "eds.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	w2, _ := newWriter(t, dir, FormatJSON)
	if res := w2.Write(t.Context(), one("c", 80)); res.Failed != 1 {
		t.Errorf("restart over a link: %+v, want the write refused", res)
	}
	if w2.Owns("c") {
		t.Error("a file reached through a link is owned")
	}
	// A prune of the released cluster.
	empty, _ := newEncoder(FormatJSON).encode(emptyCLA("c"), nil)
	if err := os.WriteFile(filepath.Join(elsewhere, "eds.json"), empty.data, 0o644); err != nil {
		t.Fatal(err)
	}
	if removed, err := w2.Remove("c"); removed || err == nil {
		t.Errorf("Remove through a link: %v, %v", removed, err)
	}
	entries, _ := os.ReadDir(elsewhere)
	if len(entries) != 1 || entries[0].Name() != "eds.json" {
		t.Errorf("the link's target holds %v, want its eds.json alone", entries)
	}
	if got, _ := os.ReadFile(filepath.Join(elsewhere, "eds.json")); string(got) != string(empty.data) {
		t.Error("the link's target file was changed")
	}
}

// A FIFO (or a device) at a cluster's file never blocks edsync: the
// restart's listing, the compare with the file on disk, Owns and Remove
// refuse it as not a regular file.
func TestFIFOAtAClusterFile(t *testing.T) {
	for _, l := range []Layout{LayoutFolders, LayoutFlat} {
		t.Run(string(l), func(t *testing.T) {
			dir := t.TempDir()
			long := "ns/" + strings.Repeat("f", 300) // a shortened name: listing reads it
			var paths []string
			for _, c := range []string{"c", long} {
				p, _ := l.Path(dir, c, FormatJSON)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Mkfifo(p, 0o644); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			done := make(chan Result, 1)
			go func() {
				w, _ := newWriterIn(t, dir, FormatJSON, l)
				w.Owns("c")
				w.Remove("c")
				done <- w.Write(t.Context(), append(one("c", 80), one(long, 80)...))
			}()
			select {
			case res := <-done:
				if res.Failed != 2 || !strings.Contains(res.Err.Error(), "not a regular file") {
					t.Errorf("%+v, want both refused as not regular files", res)
				}
			case <-time.After(30 * time.Second): // a guard against a hang, not a timing assertion
				// Unblock the reader so that the test ends.
				for _, p := range paths {
					if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
						f.Close()
					}
				}
				t.Fatal("blocked on a FIFO")
			}
		})
	}
}
