package harness

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/fsnotify/fsnotify"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/edsync/edsync/writer"
)

const claTypeURL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

// ParseEDS reads a JSON EDS file as Envoy does (docs/design.md, Envoy's rules):
// one DiscoveryResponse, exactly one resource, a ClusterLoadAssignment named
// cluster, and content that passes ValidateAll.
func ParseEDS(data []byte, cluster string) (*endpointv3.ClusterLoadAssignment, error) {
	var resp discoveryv3.DiscoveryResponse
	if err := protojson.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("not a DiscoveryResponse: %w", err)
	}
	if err := resp.ValidateAll(); err != nil {
		return nil, fmt.Errorf("DiscoveryResponse invalid: %w", err)
	}
	if n := len(resp.GetResources()); n != 1 {
		return nil, fmt.Errorf("%d resources, Envoy takes exactly 1 (Unexpected EDS resource length)", n)
	}
	res := resp.GetResources()[0]
	if res.GetTypeUrl() != claTypeURL {
		return nil, fmt.Errorf("resource type %q, want %q", res.GetTypeUrl(), claTypeURL)
	}
	var cla endpointv3.ClusterLoadAssignment
	if err := res.UnmarshalTo(&cla); err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	if cla.GetClusterName() != cluster {
		return nil, fmt.Errorf("cluster_name %q, Envoy expects %q (Unexpected EDS cluster)", cla.GetClusterName(), cluster)
	}
	if err := cla.ValidateAll(); err != nil {
		return nil, fmt.Errorf("ClusterLoadAssignment invalid: %w", err)
	}
	return &cla, nil
}

// ParseCDS reads a JSON CDS file as Envoy does: one DiscoveryResponse whose
// resources are all clusters, each valid, no two of one name. It returns
// them by name.
func ParseCDS(data []byte) (map[string]*clusterv3.Cluster, error) {
	var resp discoveryv3.DiscoveryResponse
	if err := protojson.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("not a DiscoveryResponse: %w", err)
	}
	out := make(map[string]*clusterv3.Cluster, len(resp.GetResources()))
	for i, res := range resp.GetResources() {
		var c clusterv3.Cluster
		if err := res.UnmarshalTo(&c); err != nil {
			return nil, fmt.Errorf("resource %d is not a Cluster: %w", i, err)
		}
		if err := c.ValidateAll(); err != nil {
			return nil, fmt.Errorf("cluster %q invalid: %w", c.Name, err)
		}
		if out[c.Name] != nil {
			return nil, fmt.Errorf("cluster %q twice: Envoy rejects the file", c.Name)
		}
		out[c.Name] = &c
	}
	return out, nil
}

// Endpoints lists a CLA's endpoints as sorted "ip:port HEALTH" strings,
// e.g. "10.1.0.1:8080 HEALTHY", easy to compare and to read in a failure.
func Endpoints(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d %s", sa.GetAddress(), sa.GetPortValue(), lb.GetHealthStatus()))
		}
	}
	slices.Sort(out)
	return out
}

// DirWatcher watches an edsync output folder with fsnotify, the way Envoy
// does (inotify on the folder of each file it reads). edsync's default
// layout gives every cluster a folder of its own, OUTPUT_DIR/<cluster
// folder>/eds.<ext> (writer.LayoutFolders), so the watcher watches the
// output folder and each cluster folder in it: those there when WatchDir
// starts, and each one whose creation it sees (edsync's mkdir, not a
// violation), which it watches from then on.
//
// It records every rename of a file into a watched folder (what Envoy
// reloads on) with its time and the content read right after it, and
// wakes waiters on each. Files are named by their path relative to the
// output folder: "default_web_http/eds.json" for a cluster's file,
// "cds.json" for one in the output folder itself (the CDS file, or every
// file in the flat layout). A file renamed into a cluster folder after its
// mkdir but before the watch on it was added brings no event: the look
// into the folder right after adding the watch records it as an arrival
// (once, even when the event comes too).
//
// It records as a violation, which fails the test at its end, every event
// that shows a file being changed other than by a rename (Envoy rule 5):
// a write in place, a removal or rename away of a file or of a cluster
// folder, and, in a cluster folder, anything but eds.<ext> arriving (a
// cluster folder is for the one file whose subscription watches it). The
// fault scenarios read the record (was a file ever blanked, was anything
// renamed during an outage) and so does the latency scenario (when did a
// change arrive).
type DirWatcher struct {
	Dir string

	w          *fsnotify.Watcher
	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every arrival
	all        []Arrival
	renames    map[string]int
	violations []string
	// folders are the cluster folders watched, by name.
	folders map[string]bool
	// found holds the inode of each file that the look into a cluster
	// folder just watched recorded, by name, until the next event for it:
	// if that event brings the same file, its rename came between the
	// watch and the look, and it is counted already.
	found map[string]uint64
}

// Arrival is one rename of a file into a watched folder, as Envoy sees it:
// the file's path relative to the output folder, the time fsnotify
// delivered the event (or the cluster folder's first look found the file)
// and the file's content read right after it (a later rename may already
// have replaced it).
type Arrival struct {
	Name string
	At   time.Time
	Data []byte
	Err  error // reading the file failed
}

// WatchDir starts watching dir and the cluster folders in it; the test's
// cleanup stops it and fails the test on any violation. The files already
// there are not arrivals: only renames from now on are.
func WatchDir(t testing.TB, dir string) *DirWatcher {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		t.Fatal(err)
	}
	d := &DirWatcher{Dir: dir, w: w, changed: make(chan struct{}), renames: map[string]int{},
		folders: map[string]bool{}, found: map[string]uint64{}}
	// The cluster folders already there, before the loop runs: one made
	// from now on has its Create event queued, which follow then skips.
	ents, err := os.ReadDir(dir)
	if err != nil {
		w.Close()
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			d.follow(e.Name(), false)
		}
	}
	done := make(chan struct{})
	go d.loop(done)
	t.Cleanup(func() {
		w.Close()
		<-done
		for _, v := range d.Violations() {
			t.Errorf("%s: %s", dir, v)
		}
	})
	return d
}

func (d *DirWatcher) loop(done chan struct{}) {
	defer close(done)
	for {
		select {
		case ev, ok := <-d.w.Events:
			if !ok {
				return
			}
			d.event(ev, time.Now())
		case err, ok := <-d.w.Errors:
			if !ok {
				return
			}
			// An overflow means lost events: no later assertion could be trusted.
			d.violate(fmt.Sprintf("fsnotify: %v", err))
		}
	}
}

func (d *DirWatcher) event(ev fsnotify.Event, at time.Time) {
	if ev.Name == d.Dir {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			d.violate(fmt.Sprintf("the output folder itself removed or moved away (%v)", ev.Op))
		}
		return
	}
	rel, err := filepath.Rel(d.Dir, ev.Name)
	if err != nil {
		d.violate(fmt.Sprintf("event outside the output folder: %v", ev))
		return
	}
	folder, name := filepath.Split(rel) // folder is "" or "<cluster folder>/"
	if strings.HasPrefix(name, ".") || strings.HasPrefix(folder, ".") {
		return // edsync's temp folder, where Envoy does not look
	}
	if folder == "" {
		d.outputFolderEvent(ev, name, at)
	} else {
		d.clusterFolderEvent(ev, rel, name, at)
	}
}

// outputFolderEvent handles an event for the entry name of the output
// folder: a file (the CDS file, the files of the flat layout) or a
// cluster folder.
func (d *DirWatcher) outputFolderEvent(ev fsnotify.Event, name string, at time.Time) {
	switch {
	case ev.Has(fsnotify.Create):
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			// edsync made a cluster folder: Envoy's subscription on it
			// watches it once its file is there. Not a change of a file.
			d.follow(name, true)
			return
		}
		// A rename into the folder (IN_MOVED_TO) arrives as Create: what Envoy reloads on.
		d.arrive(name, ev.Name, at)
	case ev.Has(fsnotify.Write):
		d.violate(fmt.Sprintf("%s written in place (Envoy ignores that; it reloads on a rename only)", name))
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		d.mu.Lock()
		wasFolder := d.folders[name]
		delete(d.folders, name) // its watch went with it; one made again is watched again
		d.mu.Unlock()
		if wasFolder {
			d.violate(fmt.Sprintf("cluster folder %s removed or moved away (%v): Envoy would lose its endpoints file, and its watch on the folder for good", name, ev.Op))
			return
		}
		d.violate(fmt.Sprintf("%s removed or moved away (%v): Envoy would lose its endpoints file", name, ev.Op))
	}
}

// clusterFolderEvent handles an event for the entry rel (folder/name) of a
// cluster folder, where the only event Envoy should see is the rename of
// eds.<ext> into place.
func (d *DirWatcher) clusterFolderEvent(ev fsnotify.Event, rel, name string, at time.Time) {
	switch {
	case ev.Has(fsnotify.Create):
		if !edsFileName(name) {
			d.violate(fmt.Sprintf("%s appeared in a cluster folder (%v): only the cluster's eds file belongs there, and Envoy's watch on the folder wakes for every entry", rel, ev.Op))
		}
		d.mu.Lock()
		ino, seen := d.found[rel]
		delete(d.found, rel)
		d.mu.Unlock()
		if seen {
			// The first event since the folder's first look: if it
			// brings the file that look recorded, it is counted already.
			if _, got, err := readFile(ev.Name); err == nil && got == ino {
				return
			}
		}
		d.arrive(rel, ev.Name, at)
	case ev.Has(fsnotify.Write):
		d.violate(fmt.Sprintf("%s written in place (Envoy ignores that; it reloads on a rename only)", rel))
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		d.violate(fmt.Sprintf("%s removed or moved away (%v): Envoy would lose its endpoints file", rel, ev.Op))
	}
}

// follow watches the cluster folder name, unless it is watched already.
// With look, a folder whose creation was just seen, it then records each
// file already in it as an arrival: a rename into it between its mkdir and
// the watch brought no event.
func (d *DirWatcher) follow(name string, look bool) {
	d.mu.Lock()
	watched := d.folders[name]
	d.folders[name] = true
	d.mu.Unlock()
	if watched {
		return
	}
	dir := filepath.Join(d.Dir, name)
	if err := d.w.Add(dir); err != nil {
		d.violate(fmt.Sprintf("cannot watch cluster folder %s: %v", name, err))
		return
	}
	if !look {
		return
	}
	at := time.Now()
	ents, err := os.ReadDir(dir)
	if err != nil {
		d.violate(fmt.Sprintf("cannot list cluster folder %s: %v", name, err))
		return
	}
	for _, e := range ents {
		rel := filepath.Join(name, e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if e.IsDir() || !edsFileName(e.Name()) {
			d.violate(fmt.Sprintf("%s in a cluster folder (%v): only the cluster's eds file belongs there", rel, e.Type()))
			continue
		}
		if ino := d.arrive(rel, filepath.Join(dir, e.Name()), at); ino != 0 {
			d.mu.Lock()
			d.found[rel] = ino
			d.mu.Unlock()
		}
	}
}

// arrive records the rename of the file at path, named name, and returns
// its inode (0 if it could not be read).
func (d *DirWatcher) arrive(name, path string, at time.Time) uint64 {
	data, ino, err := readFile(path)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.all = append(d.all, Arrival{Name: name, At: at, Data: data, Err: err})
	d.renames[name]++
	close(d.changed)
	d.changed = make(chan struct{})
	return ino
}

// readFile reads the file at path and returns its inode: the file read,
// whatever is renamed onto the path meanwhile.
func readFile(path string) ([]byte, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	data, err := io.ReadAll(f)
	return data, ino, err
}

// edsFileName reports whether name is the name of the file in a cluster
// folder, in one of edsync's formats.
func edsFileName(name string) bool {
	for _, f := range []writer.Format{writer.FormatJSON, writer.FormatYAML, writer.FormatPB} {
		if p, err := writer.LayoutFolders.Path("", "c", f); err == nil && filepath.Base(p) == name {
			return true
		}
	}
	return false
}

func (d *DirWatcher) violate(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.violations = append(d.violations, s)
	// Wake waiters too, so that a broken watcher does not look like a slow edsync.
	close(d.changed)
	d.changed = make(chan struct{})
}

// Violations are the events so far that break Envoy's rules.
func (d *DirWatcher) Violations() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.violations)
}

// Renames counts the renames of the file name (its path relative to the
// output folder, as in Arrival) so far.
func (d *DirWatcher) Renames(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.renames[name]
}

// Arrivals returns every rename recorded so far, in order, in every
// watched folder.
func (d *DirWatcher) Arrivals() []Arrival {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.all)
}

// Len is the number of renames recorded so far; pass it to Next as from.
func (d *DirWatcher) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.all)
}

// Next waits for the first rename of name at index from or later and returns
// it with the index after it. ok is false after timeout.
func (d *DirWatcher) Next(name string, from int, timeout time.Duration) (a Arrival, next int, ok bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		wake := d.changed
		for ; from < len(d.all); from++ {
			if d.all[from].Name == name {
				a := d.all[from]
				d.mu.Unlock()
				return a, from + 1, true
			}
		}
		d.mu.Unlock()
		select {
		case <-wake:
		case <-deadline.C:
			return Arrival{}, from, false
		}
	}
}

// WaitCaughtUp waits until, for every file now in the output folder and its
// cluster folders (as SnapshotDir lists them), the last rename recorded
// brought the content the file holds. WaitFor reads the file itself and
// may return before the watcher has recorded the rename that brought it;
// counting renames from Len is only meaningful after this.
func (d *DirWatcher) WaitCaughtUp(timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		wake := d.changed
		last := map[string][]byte{}
		for _, a := range d.all {
			last[a.Name] = a.Data
		}
		d.mu.Unlock()
		now, err := SnapshotDir(d.Dir)
		if err != nil {
			return err
		}
		var behind []string
		for name, st := range now {
			if data, ok := last[name]; !ok || string(data) != string(st.Data) {
				behind = append(behind, name)
			}
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-wake:
		case <-deadline.C:
			return fmt.Errorf("watcher of %s: no rename seen for the current content of %v after %v", d.Dir, behind, timeout)
		}
	}
}

// WaitFor waits until the file name (its path relative to the output
// folder, "default_web_http/eds.json") holds a valid EDS file for cluster
// on which check returns nil, and the watcher has recorded the rename that
// brought it. It looks at the file now and then again after each rename
// the watcher records, never on a timer. After timeout it fails the test
// with check's last complaint (what was expected, what was there) and the
// file's content.
func (d *DirWatcher) WaitFor(t testing.TB, name, cluster string, timeout time.Duration, check func(*endpointv3.ClusterLoadAssignment) error) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	path := filepath.Join(d.Dir, name)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last error
	var data []byte
	for {
		// Take the wake-up channel before reading the file, so a rename
		// between the read and the wait is not missed.
		d.mu.Lock()
		changed := d.changed
		d.mu.Unlock()

		var err error
		data, err = os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			last = fmt.Errorf("no file %s yet", name)
		case err != nil:
			t.Fatal(err)
		default:
			cla, err := ParseEDS(data, cluster)
			if err != nil {
				// A reader must never see a bad file: rename makes writes atomic.
				t.Fatalf("%s is not a file Envoy would accept: %v\ncontent:\n%s", path, err, data)
			}
			if last = check(cla); last == nil && d.arrived(name, data) {
				return cla
			}
			if last == nil {
				// Right, but the watcher has not yet recorded the rename
				// that brought it: wait for it, so that Renames and
				// Arrivals counted after WaitFor include it.
				last = fmt.Errorf("the watcher has not seen %s arrive by a rename", name)
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%s: still wrong after %v: %v\nfile held:\n%s", path, timeout, last, data)
		}
	}
}

// arrived reports whether the last rename of name recorded brought data.
func (d *DirWatcher) arrived(name string, data []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := len(d.all) - 1; i >= 0; i-- {
		if d.all[i].Name == name {
			return string(d.all[i].Data) == string(data)
		}
	}
	return false
}

// WaitEndpoints waits until the file name for cluster holds exactly want, as
// Endpoints lists them (order does not matter).
func (d *DirWatcher) WaitEndpoints(t testing.TB, name, cluster string, timeout time.Duration, want ...string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	return d.waitList(t, name, cluster, timeout, "endpoints", Endpoints, want)
}

// waitList waits until list, which returns sorted lines, gives exactly want
// (in any order) for the file name; what names the lines in a complaint.
func (d *DirWatcher) waitList(t testing.TB, name, cluster string, timeout time.Duration, what string,
	list func(*endpointv3.ClusterLoadAssignment) []string, want []string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	return d.WaitFor(t, name, cluster, timeout, func(cla *endpointv3.ClusterLoadAssignment) error {
		if got := list(cla); !slices.Equal(got, want) {
			return fmt.Errorf("want %s\n  %s\ngot\n  %s", what, strings.Join(want, "\n  "), strings.Join(got, "\n  "))
		}
		return nil
	})
}
