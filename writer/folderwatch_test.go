package writer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// watchLost runs a Watcher over w's folder for the test and returns the
// channel of what it reports.
func watchLost(t *testing.T, w *Writer) <-chan []string {
	t.Helper()
	_, lost := runWatch(t, w)
	return lost
}

// runWatch is watchLost that also returns the Watcher.
func runWatch(t *testing.T, w *Writer) (*Watcher, <-chan []string) {
	t.Helper()
	fw, err := w.Watch()
	if err != nil {
		t.Fatal(err)
	}
	return fw, runWatcher(t, fw)
}

// runWatcher runs fw for the test and returns the channel of what it
// reports.
func runWatcher(t *testing.T, fw *Watcher) <-chan []string {
	t.Helper()
	lost := make(chan []string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fw.Run(ctx, func(c []string) { lost <- c }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return lost
}

// waitLost returns the clusters reported until want is among them; it
// fails if one of never is reported on the way.
func waitLost(t *testing.T, lost <-chan []string, want string, never ...string) {
	t.Helper()
	deadline := time.After(30 * time.Second) // a failure guard, not a timing assertion
	for {
		select {
		case got := <-lost:
			for _, n := range never {
				if slices.Contains(got, n) {
					t.Fatalf("reported %q (in %q), which nobody touched", n, got)
				}
			}
			if slices.Contains(got, want) {
				return
			}
		case <-deadline:
			t.Fatalf("%s not reported", want)
		}
	}
}

// The watch reports files of ours that someone else removed, renamed
// away, replaced or wrote into, and never the Writer's own renames, a
// change of mode, files that are not ours, or released clusters. A
// reported cluster is written again by its next Write.
func TestWatcherReportsFilesChangedBehindOurBack(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	long := "ns/" + strings.Repeat("l", 300)
	names := []string{"a", "b", "c", "d", "e", "gone", long}
	var batch []Cluster
	for _, n := range names {
		batch = append(batch, one(n, 80)...)
	}
	checkResult(t, w.Write(t.Context(), batch), len(names), 0, 0)
	// "gone" is released: its emptied file is no longer the Writer's concern.
	checkResult(t, w.Write(t.Context(), []Cluster{{Name: "gone", CLA: emptyCLA("gone"), Release: true}}), 1, 0, 0)
	lost := watchLost(t, w)
	path := func(c string) string { p, _ := w.Path(c); return p }

	// Our own writes (renames onto the targets), a chmod, a foreign file,
	// the released cluster's file: none is reported; the removal after
	// them shows they were all seen.
	checkResult(t, w.Write(t.Context(), append(one("a", 81), one(long, 81)...)), 2, 0, 0)
	if err := os.Chmod(path("c"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path("gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path("b")); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "b", "a", long, "c", "gone")

	if err := os.Rename(path("c"), filepath.Join(dir, "c.bak")); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "c", "a", long)
	foreign := filepath.Join(dir, "other")
	if err := os.WriteFile(foreign, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(foreign, path("d")); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "d", "a", long)
	f, err := os.OpenFile(path("e"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(" ")
	f.Close()
	waitLost(t, lost, "e", "a", long)
	if err := os.Remove(path(long)); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, long, "a")

	// Each is written again with the same content; "a", untouched, is not.
	batch = append(append(one("a", 81), one(long, 81)...), one("b", 80)...)
	for _, n := range []string{"c", "d", "e"} {
		batch = append(batch, one(n, 80)...)
	}
	checkResult(t, w.Write(t.Context(), batch), 5, 1, 0)
	for _, c := range batch {
		checkFile(t, path(c.Name), c.CLA)
	}
	// Rewritten files are the Writer's again: a new removal is reported.
	if err := os.Remove(path("d")); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "d", "a", "b", "c", "e", long)
}

func emptyCLA(name string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name}
}

// A dry run has no folder to watch.
func TestWatcherNotInDryRun(t *testing.T) {
	w, err := New(Options{DryRun: true, Out: &strings.Builder{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Watch(); err == nil {
		t.Fatal("Watch in dry-run: no error")
	}
}
