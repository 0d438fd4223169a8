package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/fsnotify/fsnotify"
	"google.golang.org/protobuf/encoding/protojson"
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
// does (inotify on the parent folder). It records every rename of a file
// into the folder (what Envoy reloads on) with its time and the content read
// right after it, wakes waiters on each, and records every event that shows
// a file being changed other than by a rename (Envoy rule 5) as a violation,
// which fails the test at its end. The fault scenarios read the record (was
// a file ever blanked, was anything renamed during an outage) and so does the
// latency scenario (when did a change arrive).
type DirWatcher struct {
	Dir string

	w          *fsnotify.Watcher
	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every arrival
	all        []Arrival
	renames    map[string]int
	violations []string
}

// Arrival is one rename of a file into the folder, as Envoy sees it: the
// time fsnotify delivered the event and the file's content read right after
// it (a later rename may already have replaced it).
type Arrival struct {
	Name string
	At   time.Time
	Data []byte
	Err  error // reading the file failed
}

// WatchDir starts watching dir; the test's cleanup stops it and fails the
// test on any violation.
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
	d := &DirWatcher{Dir: dir, w: w, changed: make(chan struct{}), renames: map[string]int{}}
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
	name := filepath.Base(ev.Name)
	if strings.HasPrefix(name, ".") {
		return // edsync's temp folder, where Envoy does not look
	}
	switch {
	// A rename into the folder (IN_MOVED_TO) arrives as Create: what Envoy reloads on.
	case ev.Has(fsnotify.Create):
		data, err := os.ReadFile(ev.Name)
		d.mu.Lock()
		d.all = append(d.all, Arrival{Name: name, At: at, Data: data, Err: err})
		d.renames[name]++
		close(d.changed)
		d.changed = make(chan struct{})
		d.mu.Unlock()
	case ev.Has(fsnotify.Write):
		d.violate(fmt.Sprintf("%s written in place (Envoy ignores that; it reloads on a rename only)", name))
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		d.violate(fmt.Sprintf("%s removed or moved away (%v): Envoy would lose its endpoints file", name, ev.Op))
	}
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

// Renames counts the renames into the folder of the file name so far.
func (d *DirWatcher) Renames(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.renames[name]
}

// Arrivals returns every rename recorded so far, in order.
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

// WaitCaughtUp waits until, for every file now in the folder, the last rename
// recorded brought the content the file holds. WaitFor reads the file itself
// and may return before the watcher has recorded the rename that brought
// it; counting renames from Len is only meaningful after this.
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

// WaitFor waits until the file name holds a valid EDS file for cluster on
// which check returns nil, and the watcher has recorded the rename that
// brought it. It looks at the file now and then again after each rename
// into the folder, never on a timer. After timeout it fails the test
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
