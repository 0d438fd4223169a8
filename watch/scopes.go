package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// scopeState is what every scope of a scopeSet has: its informer and
// whether its events are the source's. A joining scope (started by a move,
// not yet listed) and a retired one (replaced by a move) write nothing:
// the move hands their view over from the caches instead.
type scopeState struct {
	informer         informer
	joining, retired atomic.Bool
}

func (s *scopeState) state() *scopeState { return s }

// idle reports whether the scope's events are not the source's.
func (s *scopeState) idle() bool { return s.joining.Load() || s.retired.Load() }

// scoped is a scope of a scopeSet: a *kubeScope or a *serviceScope.
type scoped interface {
	comparable
	state() *scopeState
}

// scopeSet runs the informers of a source whose watch a move may change
// while it runs (Kube, KubeServices): the first sync across moves, the
// stop, and a move's order (start, list, hand over, stop).
type scopeSet[S scoped] struct {
	log    *slog.Logger
	what   string // "EndpointSlice": the logs' name of the watch
	synced chan struct{}

	// moving serializes moves, and Run's stop with them.
	moving  sync.Mutex
	stopped bool // run has returned: no more moves
	// handlers is held (read) by every event handler for its whole body,
	// and (write) by a move's hand-over, so that no event of a scope lands
	// half-way through it.
	handlers sync.RWMutex

	mu     sync.Mutex // guards list, runCtx and moved
	list   []S
	runCtx context.Context // run's, nil until run
	moved  chan struct{}   // closed (and replaced) by each move
}

func newScopeSet[S scoped](log *slog.Logger, what string, list []S) *scopeSet[S] {
	return &scopeSet[S]{log: log, what: what, synced: make(chan struct{}), moved: make(chan struct{}), list: list}
}

func informersOf[S scoped](list []S) []*informer {
	out := make([]*informer, len(list))
	for i, s := range list {
		out[i] = &s.state().informer
	}
	return out
}

// scopes returns the running scopes.
func (s *scopeSet[S]) scopes() []S {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list)
}

// current returns the running scopes' informers and the channel the next
// move closes.
func (s *scopeSet[S]) current() ([]*informer, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return informersOf(s.list), s.moved
}

// run starts the informers, closes synced once every one (of the latest
// move, if one ran meanwhile) has listed, calling onSynced first, and
// blocks until ctx ends; it then stops them and waits (briefly).
// client-go's own logs go to the logger (klog V(n) becomes slog level -n).
func (s *scopeSet[S]) run(ctx context.Context, onSynced func(informers int)) {
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(s.log.Handler()))
	s.mu.Lock()
	s.runCtx = ctx
	for _, sc := range s.list {
		sc.state().informer.start(ctx)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() {
		if infs := untilSynced(ctx, s.current); infs != nil {
			onSynced(len(infs))
			close(s.synced)
		}
	})
	<-ctx.Done()
	// A move in progress sees ctx end and gives up; none starts after.
	s.moving.Lock()
	s.stopped = true
	infs, _ := s.current()
	s.moving.Unlock()
	stopInformers(s.log, infs)
	wg.Wait()
}

// move replaces the scopes. plan gets the running ones and returns those
// to keep and new ones to add; the others are dropped. Before run it only
// records them (preRun is called for the rest of the change). Else the
// added scopes start, joining, and list; then, with no handler running,
// the dropped ones are retired and handOver moves the source's view to the
// kept and added ones; then the dropped ones stop. If the added ones
// cannot list before ctx ends they stop and nothing changes.
func (s *scopeSet[S]) move(ctx context.Context, plan func(current []S) (keep, add []S, err error), preRun func(), handOver func(keep, add, drop []S)) error {
	s.moving.Lock()
	defer s.moving.Unlock()
	if s.stopped {
		return errors.New("stopped")
	}
	s.mu.Lock()
	runCtx, current := s.runCtx, slices.Clone(s.list)
	s.mu.Unlock()
	// Only moves change the list, one at a time: current stays right;
	// runCtx may be set meanwhile (checked below).
	keep, add, err := plan(current)
	if err != nil {
		return err
	}
	var drop []S
	for _, sc := range current {
		if !slices.Contains(keep, sc) {
			drop = append(drop, sc)
		}
	}
	if runCtx == nil {
		s.mu.Lock()
		if runCtx = s.runCtx; runCtx == nil { // still before run
			s.list = slices.Concat(keep, add)
			preRun()
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
	}
	if len(add) > 0 {
		s.log.Info("moving the "+s.what+" watch", "informers_added", len(add), "informers_stopping", len(drop))
		for _, sc := range add {
			sc.state().joining.Store(true)
			sc.state().informer.start(runCtx)
		}
		wait, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(runCtx, cancel)
		err := waitSynced(wait, informersOf(add))
		stop()
		cancel()
		if err != nil {
			stopInformers(s.log, informersOf(add))
			return fmt.Errorf("the new informers did not sync: %w", err)
		}
	}
	s.handlers.Lock()
	for _, sc := range drop {
		sc.state().retired.Store(true)
	}
	handOver(keep, add, drop)
	for _, sc := range add {
		sc.state().joining.Store(false)
	}
	s.handlers.Unlock()

	s.mu.Lock()
	s.list = slices.Concat(keep, add)
	close(s.moved)
	s.moved = make(chan struct{})
	s.mu.Unlock()
	stopInformers(s.log, informersOf(drop))
	return nil
}
