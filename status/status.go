// Package status keeps, cluster by cluster, what edsync has published (the
// file, the version_info in it, when it was renamed into place, its
// endpoints by health) and what Envoy reports of it (applied, pending,
// rejected or unknown, from package readback). It is the view behind
// /debug/clusters, `edsync status` and a readiness that waits for Envoy.
//
// The pipeline tells a Board what the files hold as it writes them; the
// read-back of Envoy asks it what to look for and tells it what it saw.
// A Board holds one entry per cluster whose file edsync keeps: an entry
// goes when its cluster is released, so memory follows what is alive.
package status

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/writer"
)

// State is what Envoy did with a cluster's file.
type State string

const (
	// StateApplied: Envoy reports the version in the file.
	StateApplied State = "applied"
	// StatePending: the file was renamed into place and Envoy still
	// reports another version, and has refused nothing since.
	StatePending State = "pending"
	// StateRejected: Envoy refused a file of the cluster since the rename
	// of this version (update_rejected or update_failure grew) and runs
	// another version: it keeps its previous endpoints.
	StateRejected State = "rejected"
	// StateUnknown: Envoy has no such cluster, or its admin does not
	// answer, or edsync does not read Envoy back.
	StateUnknown State = "unknown"
)

// Endpoints counts a file's endpoints by health.
type Endpoints struct {
	Healthy   int `json:"healthy"`
	Draining  int `json:"draining"`
	Unhealthy int `json:"unhealthy"`
}

// Envoy is what Envoy reports of one file.
type Envoy struct {
	State State `json:"state"`
	// Version is the version_info Envoy runs ("" if it has applied none).
	Version string `json:"version,omitempty"`
	// Since is when the state began (as edsync saw it).
	Since time.Time `json:"since"`
}

// Cluster is one cluster's file and what Envoy made of it.
type Cluster struct {
	Name    string `json:"name"`
	File    string `json:"file"`
	Service string `json:"service,omitempty"`
	// Version is the version_info of the file, Written when edsync renamed
	// it into place (or found it right, at start).
	Version string    `json:"version"`
	Written time.Time `json:"written"`
	// Renamed: this edsync renamed the file into place (false: it found
	// the file right at start, and Written is when).
	Renamed   bool      `json:"renamed"`
	Endpoints Endpoints `json:"endpoints"`
	// NodeLocal is how the Service's internalTrafficPolicy: Local applies:
	// "local" (only the endpoints on this Node), "local-no-node" (no Node
	// known: every endpoint), empty for Cluster.
	NodeLocal string `json:"nodeLocal,omitempty"`
	Envoy     Envoy  `json:"envoy"`
	// judged: a read-back has judged this version.
	judged bool
}

// Snapshot is the whole view at one time, as /debug/clusters serves it.
type Snapshot struct {
	Time time.Time `json:"time"`
	// ReadBack says whether edsync reads Envoy back (--envoy-admin);
	// EnvoyUp whether its admin answered the last poll.
	ReadBack bool      `json:"read_back"`
	EnvoyUp  bool      `json:"envoy_up"`
	Clusters []Cluster `json:"clusters"`
	// CDS is the CDS file's, if edsync writes one.
	CDS *Cluster `json:"cds,omitempty"`
}

// Board is the view, safe for concurrent use.
type Board struct {
	path     func(cluster string) string
	cdsPath  string
	clock    func() time.Time
	mu       sync.Mutex
	clusters map[string]*Cluster
	cds      *Cluster
	readBack bool
	envoyUp  bool
}

// NewBoard makes a Board; path gives a cluster's file (writer.Path),
// cdsPath is the CDS file ("" if none), clock the time (nil: time.Now).
func NewBoard(path func(cluster string) string, cdsPath string, clock func() time.Time) *Board {
	if clock == nil {
		clock = time.Now
	}
	return &Board{path: path, cdsPath: cdsPath, clock: clock, clusters: make(map[string]*Cluster)}
}

// entry returns the cluster's entry, made if new; b.mu is held.
func (b *Board) entry(name string) *Cluster {
	c := b.clusters[name]
	if c == nil {
		c = &Cluster{Name: name, File: b.path(name), Envoy: Envoy{State: StateUnknown, Since: b.clock()}}
		b.clusters[name] = c
	}
	return c
}

// Kept records the files a write left holding their content (see
// writer.Result.Kept), at time at. A version the Board already has keeps
// its time: found right again is not written again.
func (b *Board) Kept(kept []writer.Kept, at time.Time) {
	if len(kept) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range kept {
		c := b.entry(k.Cluster)
		if c.Version == k.Version {
			continue
		}
		c.Version, c.Written, c.Renamed, c.judged = k.Version, at, k.Renamed, false
		if c.Envoy.State == StateApplied || c.Envoy.State == StateRejected {
			// Until the next read-back says otherwise.
			c.Envoy = Envoy{State: StatePending, Version: c.Envoy.Version, Since: at}
		}
	}
}

// Published records a cluster's Service and endpoints, as handed to the
// writer.
func (b *Board) Published(cluster string, svc render.ServiceKey, counts render.HealthCounts, nodeLocal render.NodeLocal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.entry(cluster)
	c.Service = ""
	if svc != (render.ServiceKey{}) {
		c.Service = svc.String()
	}
	c.NodeLocal = nodeLocal.String()
	c.Endpoints = Endpoints{Healthy: counts.Healthy, Draining: counts.Draining, Unhealthy: counts.Unhealthy}
}

// Forget drops a cluster edsync no longer keeps a file for.
func (b *Board) Forget(cluster string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.clusters, cluster)
}

// CDSName is the name the CDS file has among the clusters' files.
const CDSName = "(cds)"

// CDSKept records the CDS file holding version since at.
func (b *Board) CDSKept(version string, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cds == nil {
		b.cds = &Cluster{Name: CDSName, File: b.cdsPath, Envoy: Envoy{State: StateUnknown, Since: at}}
	}
	if b.cds.Version != version {
		b.cds.Version, b.cds.Written, b.cds.Renamed, b.cds.judged = version, at, true, false
		if b.cds.Envoy.State == StateApplied || b.cds.Envoy.State == StateRejected {
			b.cds.Envoy = Envoy{State: StatePending, Version: b.cds.Envoy.Version, Since: at}
		}
	}
}

// Snapshot returns the view, clusters in name order.
func (b *Board) Snapshot() Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Snapshot{Time: b.clock(), ReadBack: b.readBack, EnvoyUp: b.envoyUp, Clusters: make([]Cluster, 0, len(b.clusters))}
	for _, c := range b.clusters {
		s.Clusters = append(s.Clusters, *c)
	}
	slices.SortFunc(s.Clusters, func(x, y Cluster) int { return cmp.Compare(x.Name, y.Name) })
	if b.cds != nil {
		c := *b.cds
		s.CDS = &c
	}
	return s
}

// Expect is a file Envoy is to report: its cluster, the version_info in
// it, and when it was renamed into place.
type Expect struct {
	Cluster, File, Version string
	Written                time.Time
	Renamed                bool
}

// Expected appends to buf the files of the clusters, and returns the CDS
// file's too (nil if none): what a read-back looks for.
func (b *Board) Expected(buf []Expect) ([]Expect, *Expect) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.clusters {
		if c.Version != "" {
			buf = append(buf, Expect{Cluster: c.Name, File: c.File, Version: c.Version, Written: c.Written, Renamed: c.Renamed})
		}
	}
	var cds *Expect
	if b.cds != nil && b.cds.Version != "" {
		cds = &Expect{Cluster: b.cds.Name, File: b.cds.File, Version: b.cds.Version, Written: b.cds.Written, Renamed: b.cds.Renamed}
	}
	return buf, cds
}

// Seen is what a read-back found of one expected file: Expected is the
// version it judged (a newer write since then is not judged by it).
type Seen struct {
	Cluster, Expected string
	State             State
	Version           string // what Envoy runs
}

// Report records a read-back at time at: up false means Envoy's admin did
// not answer, and every state is unknown; else seen has the files judged
// (one missing keeps its state) and cds the CDS file's (nil: not judged).
func (b *Board) Report(at time.Time, up bool, seen []Seen, cds *Seen) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.readBack, b.envoyUp = true, up
	set := func(c *Cluster, s Seen) {
		if c == nil || c.Version != s.Expected {
			return
		}
		next := Envoy{State: s.State, Version: s.Version, Since: c.Envoy.Since}
		if next.State != c.Envoy.State || next.Version != c.Envoy.Version {
			next.Since = at
		}
		c.Envoy, c.judged = next, true
	}
	if !up {
		for _, c := range b.clusters {
			set(c, Seen{Cluster: c.Name, Expected: c.Version, State: StateUnknown})
		}
		if b.cds != nil {
			set(b.cds, Seen{Expected: b.cds.Version, State: StateUnknown})
		}
		return
	}
	for _, s := range seen {
		set(b.clusters[s.Cluster], s)
	}
	if cds != nil {
		set(b.cds, *cds)
	}
}

// EnvoyApplied says why Envoy does not run every file yet (nil: it does):
// a file not read back since it was written, or one pending or rejected. A
// cluster Envoy does not have holds nothing (an edsync may publish more
// clusters than one Envoy reads).
func (b *Board) EnvoyApplied() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.readBack {
		return errors.New("Envoy not read back yet")
	}
	if !b.envoyUp {
		return errors.New("Envoy's admin does not answer")
	}
	unread, waiting := 0, 0
	check := func(c *Cluster) {
		switch {
		case c == nil || c.Version == "":
		case !c.judged:
			unread++
		case c.Envoy.State == StatePending || c.Envoy.State == StateRejected:
			waiting++
		}
	}
	for _, c := range b.clusters {
		check(c)
	}
	check(b.cds)
	if unread+waiting > 0 {
		return fmt.Errorf("Envoy has not applied every file yet (%d not read back yet, %d pending or rejected)", unread, waiting)
	}
	return nil
}
