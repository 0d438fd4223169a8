package watch

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// SourceStatus is what Clusters reports of one named source.
type SourceStatus struct {
	Name string
	// Synced: its informers have listed once.
	Synced bool
	// Up: its API server answers; DownSince is when it stopped.
	Up        bool
	DownSince time.Time
	Err       error
	// Stale: down for longer than StaleAfter, its slices removed until it
	// answers again.
	Stale bool
	// LastOK is when its API server last answered (zero: never).
	LastOK time.Time
	// Endpoints are those of the slices placed as this source, every
	// condition counted (ClustersOptions.Endpoints).
	Endpoints int
}

// ClustersOptions configures NewClusters.
type ClustersOptions struct {
	// Sources are the named EndpointSlice sources, one per Kubernetes
	// cluster; Others run beside them (the Services and Nodes of one).
	Sources []*Kube
	Others  []Source
	// SyncTimeout bounds the wait for every source's first sync: past it,
	// Synced closes with the sources that have synced, and the others'
	// slices come in when they do. 0 waits for all.
	SyncTimeout time.Duration
	// StaleAfter is how long a source's slices are kept once its API
	// server stops answering; then they are removed, until it answers
	// again. 0 keeps them.
	StaleAfter time.Duration
	// CheckEvery is how often the sources' health is looked at; 0 is 1 s.
	CheckEvery time.Duration
	// Clock is the time; nil is time.Now.
	Clock  func() time.Time
	Logger *slog.Logger
	// OnStatus, if set, gets every source's status after each check.
	OnStatus func([]SourceStatus)
	// Endpoints, if set, counts a source's endpoints (Store.SourceEndpoints).
	Endpoints func(source string) int
	// OnUp, if set, is called at each check for each source whose API
	// server answers (outside the Clusters' lock; it must not block).
	OnUp func(*Kube)
}

// Clusters runs the sources of several Kubernetes clusters as one: a
// source that cannot be reached does not hold the others back (past
// SyncTimeout at start) and loses its slices only after StaleAfter.
type Clusters struct {
	o      ClustersOptions
	log    *slog.Logger
	synced chan struct{}
	// check is the loop's tick; tests send on it to check at once.
	check chan struct{}

	mu     sync.Mutex
	status []SourceStatus
}

var _ Source = (*Clusters)(nil)

// NewClusters returns the group of o's sources.
func NewClusters(o ClustersOptions) *Clusters {
	if o.CheckEvery <= 0 {
		o.CheckEvery = time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Clusters{o: o, log: log.With("component", "watch.clusters"), synced: make(chan struct{}), check: make(chan struct{})}
	for _, k := range o.Sources {
		c.status = append(c.status, SourceStatus{Name: k.Source()})
	}
	return c
}

// Synced is closed once every source has synced, or SyncTimeout has passed
// and the others have.
func (c *Clusters) Synced() <-chan struct{} { return c.synced }

// Status returns every source's status as of the last check.
func (c *Clusters) Status() []SourceStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]SourceStatus(nil), c.status...)
}

// Run runs the sources until ctx ends or one fails.
func (c *Clusters) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	all := make([]Source, 0, len(c.o.Sources)+len(c.o.Others))
	for _, k := range c.o.Sources {
		all = append(all, k)
	}
	all = append(all, c.o.Others...)
	g := Group(all...)
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	go c.waitSynced(ctx, g)
	tick := time.NewTicker(c.o.CheckEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
		case <-c.check:
		}
		c.checkSources()
	}
}

// waitSynced closes synced when every source has synced, or at
// SyncTimeout once the others (Services, Nodes) have, naming the sources
// still missing.
func (c *Clusters) waitSynced(ctx context.Context, all Source) {
	var timeout <-chan time.Time
	if c.o.SyncTimeout > 0 {
		t := time.NewTimer(c.o.SyncTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-all.Synced():
		c.checkSources() // the status is known from the start on
		close(c.synced)
		return
	case <-ctx.Done():
		return
	case <-timeout:
	}
	var missing []string
	// The Services and Nodes come from the first source: if it is the one
	// missing, they are published without (annotations, port numbers and
	// Node topology come when it answers).
	for _, o := range c.o.Others {
		select {
		case <-o.Synced():
		default:
			missing = append(missing, "the first source's Services or Nodes")
		}
	}
	for _, k := range c.o.Sources {
		select {
		case <-k.Synced():
		default:
			missing = append(missing, k.Source())
		}
	}
	c.log.Warn("sources not synced in time; publishing without them until they are",
		"missing", strings.Join(missing, ","), "sync_timeout", c.o.SyncTimeout)
	c.checkSources()
	close(c.synced)
}

// checkSources updates each source's status: one down longer than
// StaleAfter loses its slices (logged), and gets them back when it answers
// again.
func (c *Clusters) checkSources() {
	now := c.o.Clock()
	c.mu.Lock()
	defer func() {
		status := append([]SourceStatus(nil), c.status...)
		c.mu.Unlock()
		if c.o.OnStatus != nil {
			c.o.OnStatus(status)
		}
		for i, st := range status {
			if st.Up && c.o.OnUp != nil {
				c.o.OnUp(c.o.Sources[i])
			}
		}
	}()
	for i, k := range c.o.Sources {
		st := &c.status[i]
		select {
		case <-k.Synced():
			st.Synced = true
		default:
		}
		if c.o.Endpoints != nil {
			st.Endpoints = c.o.Endpoints(st.Name)
		}
		down, err, lastOK := k.Health()
		wasUp := st.Up || st.DownSince.IsZero() && !st.Stale
		st.Up, st.DownSince, st.Err, st.LastOK = down.IsZero(), down, err, lastOK
		switch {
		case !st.Up && wasUp:
			c.log.Warn("source unreachable; its endpoints are kept", "source", st.Name, "err", err, "stale_after", c.o.StaleAfter)
		case !st.Up && !st.Stale && c.o.StaleAfter > 0 && now.Sub(down) >= c.o.StaleAfter:
			st.Stale = true
			k.Drop()
			c.log.Error("source unreachable too long; its endpoints removed until it answers", "source", st.Name,
				"down_since", down, "err", err)
		case st.Up && st.Stale:
			st.Stale = false
			k.Restore()
			c.log.Info("source reachable again; its endpoints restored", "source", st.Name)
		}
	}
}
