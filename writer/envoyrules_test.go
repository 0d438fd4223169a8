package writer

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// TestEnvoyRules watches the output folder as Envoy does (inotify on the
// parent folder) while one goroutine writes many updates and another reads
// the file all along:
//   - every event on the target is a Create that comes from a rename
//     (IN_MOVED_TO, the only event Envoy reloads on), never a Write, Chmod
//     or Remove (rule 5);
//   - nothing else happens in the watched folder: temp files stay in .tmp/;
//   - every read parses fully as Envoy parses it, with one resource of the
//     right cluster that passes ValidateAll(): never a partial file (rules 1-3, 9).
//
// In each layout: Envoy watches the file's folder, the output folder in the
// flat layout, the cluster's own in the folders layout.
func TestEnvoyRules(t *testing.T) {
	for _, l := range []Layout{LayoutFolders, LayoutFlat} {
		for _, f := range formats {
			t.Run(string(l)+"/"+string(f), func(t *testing.T) { testEnvoyRules(t, l, f) })
		}
	}
}

func testEnvoyRules(t *testing.T, l Layout, f Format) {
	dir := t.TempDir()
	w, _ := newWriterIn(t, dir, f, l)
	const name = "default/web/http"
	path, _ := w.Path(name)
	watched := filepath.Dir(path)
	// The file exists before Envoy starts watching it (rule 6).
	checkResult(t, w.Write(t.Context(), one(name, 1000)), 1, 0, 0)

	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	// Watching .tmp/ too lets fsnotify pair each IN_MOVED_TO in the
	// folder with its IN_MOVED_FROM, which proves the rename.
	for _, d := range []string{watched, filepath.Join(dir, tmpDirName)} {
		if err := watcher.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	marker := filepath.Join(watched, "zz-marker")
	collected := make(chan []fsnotify.Event)
	go func() {
		var evs []fsnotify.Event
		for {
			select {
			case ev := <-watcher.Events:
				if ev.Name == marker {
					collected <- evs
					return
				}
				evs = append(evs, ev)
			case err := <-watcher.Errors:
				evs = append(evs, fsnotify.Event{Name: "watcher error: " + err.Error()})
			}
		}
	}()

	stop := make(chan struct{})
	type readResult struct {
		reads, versions int
		errs            []string
	}
	readDone := make(chan readResult)
	var readCount atomic.Int64 // lets the writer make sure reads interleave
	go func() {
		var r readResult
		seen := map[uint32]bool{}
		for {
			select {
			case <-stop:
				r.versions = len(seen)
				readDone <- r
				return
			default:
			}
			data, err := os.ReadFile(path)
			if err == nil {
				_, got, perr := parseLikeEnvoy(path, data)
				switch {
				case perr != nil:
					err = perr
				case got.GetClusterName() != name:
					err = fmt.Errorf("cluster_name %q", got.GetClusterName())
				default:
					seen[got.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()] = true
				}
			}
			if err != nil && len(r.errs) < 5 {
				r.errs = append(r.errs, fmt.Sprintf("read %d: %v", r.reads, err))
			}
			r.reads++
			readCount.Add(1)
		}
	}()

	const updates = 200
	for i := range updates {
		res := w.Write(t.Context(), one(name, uint32(1001+i)))
		if res.Written != 1 {
			t.Errorf("update %d: %+v", i, res)
		}
		if i%20 == 0 {
			// Let the reader read between writes now and then, so
			// it sees many versions even on a loaded machine.
			for n := readCount.Load(); readCount.Load() < n+2; {
				runtime.Gosched()
			}
		}
	}
	close(stop)
	r := <-readDone

	// inotify delivers events in order: once the marker's event
	// arrives, all events of the writes above have been seen.
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var evs []fsnotify.Event
	select {
	case evs = <-collected:
	case <-time.After(30 * time.Second): // a guard, not a wait
		t.Fatal("no event for the marker file")
	}

	for _, e := range r.errs {
		t.Error(e)
	}
	t.Logf("%d reads saw %d versions", r.reads, r.versions)
	if r.versions < 2 {
		t.Errorf("the reader saw %d versions in %d reads: the test proved nothing about partial reads", r.versions, r.reads)
	}
	renames := 0
	for _, ev := range evs {
		switch {
		case filepath.Dir(ev.Name) == filepath.Join(dir, tmpDirName):
			// Temp files: Envoy does not watch this folder.
		case ev.Name != path:
			t.Errorf("event in the watched folder on something else: %v", ev)
		case ev.Op != fsnotify.Create || !strings.Contains(ev.String(), "←"):
			// ev.String() shows "← old name" only for IN_MOVED_TO
			// paired with its IN_MOVED_FROM.
			t.Errorf("event on the target that is not a rename into place: %v", ev)
		default:
			renames++
		}
	}
	if renames != updates {
		t.Errorf("%d renames onto the target, want %d", renames, updates)
	}
}
