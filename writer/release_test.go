package writer

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// A released cluster leaves nothing in the Writer once its emptied file is
// on disk; the file is then all there is to compare with. Remove deletes
// that file, and only that file.
func TestReleaseAndRemove(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWriter(t, dir, FormatJSON)
	gone := func(name string) []Cluster { return []Cluster{{Name: name, CLA: emptyCLA(name), Release: true}} }
	checkResult(t, w.Write(t.Context(), append(one("a", 80), one("b", 80)...)), 2, 0, 0)
	checkResult(t, w.Write(t.Context(), gone("a")), 1, 0, 0)
	pa, _ := w.Path("a")
	checkFile(t, pa, emptyCLA("a"))
	if n := w.Tracked(); n != 1 {
		t.Fatalf("Tracked() = %d after releasing a, want 1 (b)", n)
	}
	if got := w.Known(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("Known() = %q, want [b]", got)
	}
	// Released again with the same content: compared with the file, kept.
	before := idOf(t, pa)
	checkResult(t, w.Write(t.Context(), gone("a")), 0, 1, 0)
	if idOf(t, pa) != before || w.Tracked() != 1 {
		t.Fatal("an emptied file, released, was rewritten or kept in memory")
	}

	// Not the empty file of the cluster: left alone.
	if err := os.WriteFile(pa, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := w.Remove("a"); ok || err == nil {
		t.Fatalf("Remove of a file someone else wrote = %v, %v; want an error", ok, err)
	}
	checkResult(t, w.Write(t.Context(), gone("a")), 1, 0, 0)
	if ok, err := w.Remove("a"); !ok || err != nil {
		t.Fatalf("Remove = %v, %v", ok, err)
	}
	if _, err := os.Stat(pa); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file still there after Remove: %v", err)
	}
	if ok, err := w.Remove("a"); ok || err != nil {
		t.Fatalf("Remove of a file already gone = %v, %v; want false, nil", ok, err)
	}
	// A cluster written and not released is in use.
	if ok, err := w.Remove("b"); ok || !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove of a live cluster = %v, %v; want ErrInUse", ok, err)
	}

	// A release whose write fails is pending, then released by the Retry.
	w.rename = func(dirHandle, string, dirHandle, string) error { return syscall.EIO }
	checkResult(t, w.Write(t.Context(), gone("b")), 0, 0, 1)
	if ok, err := w.Remove("b"); ok || !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove with the emptying pending = %v, %v; want ErrInUse", ok, err)
	}
	w.rename = renameAt
	checkResult(t, w.Retry(t.Context()), 1, 0, 0)
	if n := w.Tracked(); n != 0 {
		t.Fatalf("Tracked() = %d after the retried release, want 0", n)
	}
	if ok, err := w.Remove("b"); !ok || err != nil {
		t.Fatalf("Remove after the retried release = %v, %v", ok, err)
	}
}

// A file found at New and emptied is released like any other; Remove
// removes a shortened file too, and does nothing in dry-run.
func TestRemoveFoundAndDryRun(t *testing.T) {
	dir := t.TempDir()
	long := "ns/" + strings.Repeat("y", 300)
	w1, _ := newWriter(t, dir, FormatPB)
	checkResult(t, w1.Write(t.Context(), []Cluster{{Name: long, CLA: emptyCLA(long)}}), 1, 0, 0)
	w2, _ := newWriter(t, dir, FormatPB)
	if got := w2.Known(); !slices.Equal(got, []string{long}) {
		t.Fatalf("Known() = %q", got)
	}
	checkResult(t, w2.Write(t.Context(), []Cluster{{Name: long, CLA: emptyCLA(long), Release: true}}), 0, 1, 0)
	if len(w2.Known()) != 0 || w2.Tracked() != 0 {
		t.Fatalf("released: Known() = %q, Tracked() = %d", w2.Known(), w2.Tracked())
	}
	dry, err := New(Options{Dir: dir, Format: FormatPB, DryRun: true, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dry.Remove(long); ok || err != nil {
		t.Fatalf("dry-run Remove = %v, %v", ok, err)
	}
	if ok, err := w2.Remove(long); !ok || err != nil {
		t.Fatalf("Remove = %v, %v", ok, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 { // .tmp
		t.Fatalf("left in the folder: %v", entries)
	}
}
