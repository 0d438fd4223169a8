// Package envoyadmin stands in, in tests, for the parts of Envoy that
// edsync's read-back (package readback) relies on: file-based EDS and CDS
// subscriptions that load a file when it is renamed into place, and the
// admin API's /stats that reports them. Envoy cannot be installed where
// edsync is built; this follows Envoy's source and documentation (see
// docs/design.md, "Reading Envoy back", for the citations):
//
//   - Each subscription keeps update_attempt, update_success,
//     update_failure and update_rejected (counters) and version_text (a
//     text readout) under cluster.<name>. (cluster_manager.cds. for CDS),
//     the name written as Stats::Utility::sanitizeStatsName does.
//   - A load counts an attempt, then: a file that cannot be read or parsed
//     as a DiscoveryResponse is a failure; one whose resources are not
//     exactly one ClusterLoadAssignment named for the cluster, or whose
//     resource fails validation, is rejected; else it is a success and
//     version_text becomes its version_info. A refused file leaves the
//     version (and the endpoints) as they were.
//   - For the CDS file, a cluster that fails validation, or whose EDS
//     file does not exist, rejects the update and version_text stays.
//   - /stats?format=json&type=...&filter=RE2 answers
//     {"stats":[{"name":...,"value":...}]}, text readouts as strings and
//     counters as integers, filtered by a partial match.
//
// Loads happen when the test says (Load, LoadAll) or, with Watch, on each
// rename into a watched file's folder, as Envoy's inotify watch does.
package envoyadmin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/fsnotify/fsnotify"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Subscription is one file-based subscription's state and counters.
type Subscription struct {
	Path                                string
	Version                             string
	Attempt, Success, Failure, Rejected uint64
	// Hosts is the number of endpoints of the last applied file (EDS).
	Hosts int
}

// Envoy is the stand-in. Safe for concurrent use.
type Envoy struct {
	mu       sync.Mutex
	clusters map[string]*Subscription // by cluster name
	cds      *Subscription
	// Extra is a number of other counters per cluster the stats hold, as
	// Envoy's do (a hundred or more): what a filter walks past.
	Extra int
	// Refuse, if set, refuses a file that is otherwise good, as an Envoy
	// does whose version does not take a field of it: given the cluster
	// and the file's number of endpoints, true refuses it. Set it before
	// any load.
	Refuse func(cluster string, hosts int) bool
	// OnRequest, if set, is called as each admin request arrives.
	OnRequest func()
	// Down makes the admin answer 503, as an Envoy starting or gone.
	down bool
}

// New makes an Envoy with no clusters.
func New() *Envoy { return &Envoy{clusters: make(map[string]*Subscription)} }

// AddCluster subscribes to the EDS file of cluster name at path and loads
// it, as Envoy does for a cluster of its bootstrap.
func (e *Envoy) AddCluster(name, path string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := &Subscription{Path: path}
	e.clusters[name] = s
	e.loadEDS(name, s)
}

// RemoveCluster drops the subscription of cluster name.
func (e *Envoy) RemoveCluster(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.clusters, name)
}

// SetCDS subscribes to the CDS file at path and loads it; each cluster it
// names is added with its EDS file, and one it no longer names removed.
func (e *Envoy) SetCDS(path string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cds = &Subscription{Path: path}
	e.loadCDS()
}

// Load loads the file of cluster name again (a rename into place).
func (e *Envoy) Load(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.clusters[name]; s != nil {
		e.loadEDS(name, s)
	}
}

// LoadAll loads every file again, the CDS file first.
func (e *Envoy) LoadAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.loadAll()
}

func (e *Envoy) loadAll() {
	if e.cds != nil {
		e.loadCDS()
	}
	for name, s := range e.clusters {
		e.loadEDS(name, s)
	}
}

// Restart is a cold restart: counters and versions start again from zero
// and every file is read again.
func (e *Envoy) Restart() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name := range e.clusters {
		e.clusters[name] = &Subscription{Path: e.clusters[name].Path}
	}
	if e.cds != nil {
		e.cds = &Subscription{Path: e.cds.Path}
	}
	e.loadAll()
}

// SetDown makes the admin refuse (true) or answer (false).
func (e *Envoy) SetDown(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = down
}

// Cluster returns a copy of the subscription of cluster name.
func (e *Envoy) Cluster(name string) (Subscription, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.clusters[name]
	if s == nil {
		return Subscription{}, false
	}
	return *s, true
}

// CDS returns a copy of the CDS subscription.
func (e *Envoy) CDS() (Subscription, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cds == nil {
		return Subscription{}, false
	}
	return *e.cds, true
}

// Watch loads each file when something is renamed onto it, until ctx
// ends: one fsnotify watch per folder of a subscribed file (Envoy has an
// inotify instance per subscription; one per folder sees the same
// renames). Subscriptions added later are watched only if their folder
// already is. The watches are in place when Watch returns; the loads run
// on a goroutine of their own.
func (e *Envoy) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	e.mu.Lock()
	dirs := map[string]bool{}
	add := func(p string) { dirs[filepath.Dir(p)] = true }
	for _, s := range e.clusters {
		add(s.Path)
	}
	if e.cds != nil {
		add(e.cds.Path)
	}
	e.mu.Unlock()
	for d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return err
		}
	}
	go e.watch(ctx, w)
	return nil
}

func (e *Envoy) watch(ctx context.Context, w *fsnotify.Watcher) {
	defer w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.Errors:
			return
		case ev := <-w.Events:
			if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Rename) { // IN_MOVED_TO is Create in fsnotify
				continue
			}
			e.mu.Lock()
			if e.cds != nil && e.cds.Path == ev.Name {
				e.loadCDS()
			}
			for name, s := range e.clusters {
				if s.Path == ev.Name {
					e.loadEDS(name, s)
				}
			}
			e.mu.Unlock()
		}
	}
}

// ReadResponse reads a DiscoveryResponse as Envoy's file-based
// subscriptions do: format by extension (.pb, .yaml/.yml, else JSON).
func ReadResponse(path string) (*discoveryv3.DiscoveryResponse, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var resp discoveryv3.DiscoveryResponse
	switch filepath.Ext(path) {
	case ".pb":
		err = proto.Unmarshal(data, &resp)
	case ".yaml", ".yml":
		var js []byte
		if js, err = yaml.YAMLToJSON(data); err == nil {
			err = protojson.Unmarshal(js, &resp)
		}
	default:
		err = protojson.Unmarshal(data, &resp)
	}
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// loadEDS loads the file of cluster name; e.mu is held.
func (e *Envoy) loadEDS(name string, s *Subscription) {
	s.Attempt++
	resp, err := ReadResponse(s.Path)
	if err != nil {
		s.Failure++
		return
	}
	var cla endpointv3.ClusterLoadAssignment
	if len(resp.GetResources()) != 1 || resp.Resources[0].UnmarshalTo(&cla) != nil ||
		cla.GetClusterName() != name || cla.ValidateAll() != nil {
		s.Rejected++
		return
	}
	hosts := 0
	for _, l := range cla.GetEndpoints() {
		hosts += len(l.GetLbEndpoints())
	}
	if e.Refuse != nil && e.Refuse(name, hosts) {
		s.Rejected++
		return
	}
	s.Success++
	s.Version = resp.GetVersionInfo()
	s.Hosts = hosts
}

// loadCDS loads the CDS file; e.mu is held.
func (e *Envoy) loadCDS() {
	s := e.cds
	s.Attempt++
	resp, err := ReadResponse(s.Path)
	if err != nil {
		s.Failure++
		return
	}
	named := map[string]string{}
	bad := false
	for _, r := range resp.GetResources() {
		var c clusterv3.Cluster
		if r.UnmarshalTo(&c) != nil || c.ValidateAll() != nil {
			bad = true
			continue
		}
		path := c.GetEdsClusterConfig().GetEdsConfig().GetPathConfigSource().GetPath()
		if _, err := os.Stat(path); err != nil {
			// "paths must refer to an existing path in the system"
			bad = true
			continue
		}
		named[c.GetName()] = path
	}
	// The good clusters are applied even when others are refused.
	for name, path := range named {
		if old := e.clusters[name]; old == nil || old.Path != path {
			sub := &Subscription{Path: path}
			e.clusters[name] = sub
			e.loadEDS(name, sub)
		}
	}
	for name := range e.clusters {
		if _, ok := named[name]; !ok && !bad {
			delete(e.clusters, name)
		}
	}
	if bad {
		s.Rejected++
		return
	}
	s.Success++
	s.Version = resp.GetVersionInfo()
}

// statName is Stats::Utility::sanitizeStatsName.
func statName(name string) string {
	name = strings.TrimSuffix(strings.TrimPrefix(name, "."), ".")
	return strings.NewReplacer("://", "_", ":/", "_", ":", "_", "\x00", "_").Replace(name)
}

type stat struct {
	name  string
	text  string
	count uint64
}

// ServeHTTP answers /stats (format json only; type and filter as Envoy).
func (e *Envoy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	down, hook := e.down, e.OnRequest
	e.mu.Unlock()
	if hook != nil {
		hook()
	}
	if down {
		http.Error(w, "PRE_INITIALIZING", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Path != "/stats" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if q.Get("format") != "json" {
		http.Error(w, "the stand-in serves format=json only", http.StatusBadRequest)
		return
	}
	typ := q.Get("type")
	if typ == "" {
		typ = "All"
	}
	if !slices.Contains([]string{"All", "Counters", "Gauges", "Histograms", "TextReadouts"}, typ) {
		http.Error(w, "invalid &type= param", http.StatusBadRequest)
		return
	}
	var re *regexp.Regexp
	if f := q.Get("filter"); f != "" {
		var err error
		if re, err = regexp.Compile(f); err != nil {
			http.Error(w, "Invalid re2 regex", http.StatusBadRequest)
			return
		}
	}
	texts, counters := e.collect()
	var out bytes.Buffer
	out.WriteString(`{"stats":[`)
	n := 0
	emit := func(name string, value any) {
		if re != nil && !re.MatchString(name) {
			return
		}
		if n > 0 {
			out.WriteByte(',')
		}
		n++
		nm, _ := json.Marshal(name)
		v, _ := json.Marshal(value)
		fmt.Fprintf(&out, `{"name":%s,"value":%s}`, nm, v)
	}
	// Text readouts first, then counters, each in name order, as Envoy.
	if typ == "All" || typ == "TextReadouts" {
		for _, s := range texts {
			emit(s.name, s.text)
		}
	}
	if typ == "All" || typ == "Counters" {
		for _, s := range counters {
			emit(s.name, s.count)
		}
	}
	out.WriteString("]}")
	w.Header().Set("Content-Type", "application/json")
	w.Write(out.Bytes())
}

// collect lists the stats, sorted by name.
func (e *Envoy) collect() (texts, counters []stat) {
	e.mu.Lock()
	defer e.mu.Unlock()
	add := func(prefix string, s *Subscription) {
		texts = append(texts, stat{name: prefix + ".version_text", text: s.Version})
		counters = append(counters,
			stat{name: prefix + ".update_attempt", count: s.Attempt},
			stat{name: prefix + ".update_failure", count: s.Failure},
			stat{name: prefix + ".update_rejected", count: s.Rejected},
			stat{name: prefix + ".update_success", count: s.Success})
		for i := range e.Extra {
			counters = append(counters, stat{name: fmt.Sprintf("%s.upstream_stat_%03d", prefix, i)})
		}
	}
	for name, s := range e.clusters {
		add("cluster."+statName(name), s)
	}
	if e.cds != nil {
		add("cluster_manager.cds", e.cds)
	}
	byName := func(a, b stat) int { return strings.Compare(a.name, b.name) }
	slices.SortFunc(texts, byName)
	slices.SortFunc(counters, byName)
	return texts, counters
}
