package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Arrival is one rename of a file into a watched folder, as Envoy sees it:
// the time fsnotify delivered the event and the file's content read right
// after it (a later rename may already have replaced it).
type Arrival struct {
	Name string
	At   time.Time
	Data []byte
	Err  error // reading the file failed
}

// RenameRecorder records every rename into a folder, with its time and the
// content read at that moment, for the fault scenarios (was a file ever
// blanked, was anything renamed during an outage) and the latency scenario
// (when did the change arrive).
type RenameRecorder struct {
	Dir string

	w    *fsnotify.Watcher
	mu   sync.Mutex
	all  []Arrival
	wake chan struct{} // closed and replaced on every arrival
	errs []string
}

// RecordRenames starts recording renames into dir; the test's cleanup stops
// it and fails the test if fsnotify reported an error (lost events).
func RecordRenames(t testing.TB, dir string) *RenameRecorder {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		t.Fatal(err)
	}
	r := &RenameRecorder{Dir: dir, w: w, wake: make(chan struct{})}
	done := make(chan struct{})
	go r.loop(done)
	t.Cleanup(func() {
		w.Close()
		<-done
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.errs {
			t.Errorf("%s: %s", dir, e)
		}
	})
	return r
}

func (r *RenameRecorder) loop(done chan struct{}) {
	defer close(done)
	for {
		select {
		case ev, ok := <-r.w.Events:
			if !ok {
				return
			}
			at := time.Now()
			name := filepath.Base(ev.Name)
			if strings.HasPrefix(name, ".") || !ev.Has(fsnotify.Create) {
				continue
			}
			data, err := os.ReadFile(ev.Name)
			r.mu.Lock()
			r.all = append(r.all, Arrival{Name: name, At: at, Data: data, Err: err})
			close(r.wake)
			r.wake = make(chan struct{})
			r.mu.Unlock()
		case err, ok := <-r.w.Errors:
			if !ok {
				return
			}
			r.mu.Lock()
			r.errs = append(r.errs, fmt.Sprintf("fsnotify: %v", err))
			r.mu.Unlock()
		}
	}
}

// Arrivals returns every rename recorded so far, in order.
func (r *RenameRecorder) Arrivals() []Arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.all)
}

// Len is the number of renames recorded so far; pass it to Next as from.
func (r *RenameRecorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

// Next waits for the first rename of name at index from or later and returns
// it with the index after it. ok is false after timeout.
func (r *RenameRecorder) Next(name string, from int, timeout time.Duration) (a Arrival, next int, ok bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		wake := r.wake
		for ; from < len(r.all); from++ {
			if r.all[from].Name == name {
				a := r.all[from]
				r.mu.Unlock()
				return a, from + 1, true
			}
		}
		r.mu.Unlock()
		select {
		case <-wake:
		case <-deadline.C:
			return Arrival{}, from, false
		}
	}
}

// FileState is what a file in an output folder looks like at one moment:
// enough to tell whether it was touched in any way.
type FileState struct {
	Data  []byte
	Inode uint64
	MTime time.Time
}

// SnapshotDir reads every regular file in dir that Envoy could read (names
// not starting with '.').
func SnapshotDir(dir string) (map[string]FileState, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]FileState{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		out[e.Name()] = FileState{Data: data, Inode: ino, MTime: fi.ModTime()}
	}
	return out, nil
}

// DiffSnapshots describes how after differs from before ("" if not at all).
func DiffSnapshots(before, after map[string]FileState) string {
	var b strings.Builder
	for name, x := range before {
		y, ok := after[name]
		switch {
		case !ok:
			fmt.Fprintf(&b, "%s: gone (held:\n%s)\n", name, x.Data)
		case string(x.Data) != string(y.Data):
			fmt.Fprintf(&b, "%s: content changed\nwas:\n%s\nnow:\n%s\n", name, x.Data, y.Data)
		case x.Inode != y.Inode || !x.MTime.Equal(y.MTime):
			fmt.Fprintf(&b, "%s: same content but rewritten (inode %d -> %d, mtime %v -> %v)\n", name, x.Inode, y.Inode, x.MTime, y.MTime)
		}
	}
	for name, y := range after {
		if _, ok := before[name]; !ok {
			fmt.Fprintf(&b, "%s: new file:\n%s\n", name, y.Data)
		}
	}
	return b.String()
}

// RestartControllerManagerSameArgs stops kube-controller-manager and starts
// it again with the arguments it has, then waits until it is healthy. After
// an API server or etcd outage its informers may sit in client-go's backoff
// (up to a minute with jitter); the fault scenarios restart it when they end
// so that the scenarios after them meet a prompt EndpointSlice controller.
func (c *Cluster) RestartControllerManagerSameArgs(ctx context.Context) error {
	_ = c.ControllerManager.Stop(10 * time.Second)
	if err := c.ControllerManager.Start(); err != nil {
		return err
	}
	return c.waitControllerManager(ctx)
}

// WaitCaughtUp waits until, for every file now in the folder, the last rename
// the recorder has seen brought the content the file holds: the recorder's
// own fsnotify events may lag those another watcher (DirWatcher) has acted
// on. Counting renames from Len is only meaningful after it.
func (r *RenameRecorder) WaitCaughtUp(timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		wake := r.wake
		last := map[string][]byte{}
		for _, a := range r.all {
			last[a.Name] = a.Data
		}
		r.mu.Unlock()
		now, err := SnapshotDir(r.Dir)
		if err != nil {
			return err
		}
		var behind []string
		for name, st := range now {
			if d, ok := last[name]; !ok || string(d) != string(st.Data) {
				behind = append(behind, name)
			}
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-wake:
		case <-deadline.C:
			return fmt.Errorf("rename recorder of %s: no rename event seen for the current content of %v after %v", r.Dir, behind, timeout)
		}
	}
}

// StartEdsyncDuringFaults is StartEdsync without its end-of-test check that
// the API server refused edsync nothing: a kube-apiserver that is starting
// again answers 403 until its RBAC authorizer's caches are filled, and the
// fault scenarios have edsync retrying right then. They check refusals
// themselves, only once the file has caught up (ForbiddenLines).
func (c *Cluster) StartEdsyncDuringFaults(t testing.TB, args ...string) *Edsync {
	t.Helper()
	return c.startEdsync(t, false, args...)
}

// ForbiddenLines are the lines of an edsync log that show the API server
// refusing it something.
func ForbiddenLines(log string) []string {
	var out []string
	for line := range strings.Lines(log) {
		if strings.Contains(line, "is forbidden") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}
