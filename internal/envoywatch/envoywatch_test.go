//go:build linux

package envoywatch

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// replace renames a new file over path, as edsync writes.
func replace(t *testing.T, path string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(filepath.Dir(path)), "tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// The stand-in behaves as Envoy's watcher: subscriptions on files of one
// folder all wake for a rename there and only the renamed file's reloads;
// a subscription in a folder of its own wakes alone; a write in place
// wakes the folder's subscriptions (IN_MODIFY) but reloads nothing.
func TestReaderWakesAsEnvoy(t *testing.T) {
	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	var paths []string
	for _, name := range []string{"a.json", "b.json", "c.json"} {
		paths = append(paths, filepath.Join(shared, name))
	}
	for _, name := range []string{"d", "e"} {
		paths = append(paths, filepath.Join(root, name, "eds.json"))
	}
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		replace(t, p)
	}
	r, err := New(paths)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	poll := func() (Counts, []int) {
		t.Helper()
		c, reloaded, err := r.Poll(0, nil) // the events are queued inside the rename
		if err != nil {
			t.Fatal(err)
		}
		return c, reloaded
	}
	for _, tc := range []struct {
		name     string
		do       func()
		want     Counts
		reloaded []int
	}{
		{"rename in the shared folder", func() { replace(t, paths[1]) }, Counts{Woken: 3, Events: 3, Reloads: 1}, []int{1}},
		{"rename in a folder of its own", func() { replace(t, paths[3]) }, Counts{Woken: 1, Events: 1, Reloads: 1}, []int{3}},
		{"write in place", func() {
			if err := os.WriteFile(paths[4], []byte("y"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, Counts{Woken: 1, Events: 1}, nil},
		{"nothing", func() {}, Counts{}, nil},
	} {
		tc.do()
		c, reloaded := poll()
		slices.Sort(reloaded)
		if c != tc.want || !slices.Equal(reloaded, tc.reloaded) {
			t.Errorf("%s: %+v, reloaded %v; want %+v, %v", tc.name, c, reloaded, tc.want, tc.reloaded)
		}
	}

	// The loop counts the same, on its own thread.
	l := r.Start()
	turns := l.Turns()
	replace(t, paths[0])
	if !l.WaitTurn(turns, 30*time.Second) { // a guard, not a timing assertion
		t.Fatal("the loop read nothing")
	}
	replace(t, paths[4])
	if err := l.Stop(); err != nil { // reads what is queued first
		t.Fatal(err)
	}
	if c, cpu := l.Read(); c != (Counts{Woken: 4, Events: 4, Reloads: 2}) || cpu <= 0 {
		t.Errorf("loop: %+v, cpu %v; want 4 woken, 4 events, 2 reloads and some CPU", c, cpu)
	}
}
