package pipeline

import (
	"fmt"
	"sync"
	"time"
)

// stuckAfter is how long one piece of the pipeline's work (a flush, a
// retry) may take before /healthz calls the loop stuck. The initial flush
// of 10,000 Services takes about a second; a minute means a hung disk or
// a bug, which a restart may cure.
const stuckAfter = time.Minute

// health is what /healthz and /readyz report. The pipeline's goroutine
// records its state here; the HTTP handlers only read it, under a lock
// held for a few field copies, so a handler never waits on the loop.
type health struct {
	now        func() time.Time
	stuckAfter time.Duration

	mu        sync.Mutex
	running   bool      // the loop is in Run
	stopped   string    // why it left Run, once it has
	busySince time.Time // zero when idle
	busyWith  string
	ready     bool
	notReady  string // why not ready yet
}

func newHealth(now func() time.Time) *health {
	return &health{now: now, stuckAfter: stuckAfter, notReady: "the pipeline has not started"}
}

// start and stop bracket the pipeline's Run.
func (h *health) start() {
	h.mu.Lock()
	h.running, h.stopped = true, ""
	if !h.ready {
		h.notReady = "waiting for the first full sync of EndpointSlices"
	}
	h.mu.Unlock()
}

func (h *health) stop(why string) {
	h.mu.Lock()
	h.running, h.stopped = false, why
	h.busySince, h.busyWith = time.Time{}, ""
	h.mu.Unlock()
}

// begin and end bracket one piece of the loop's work.
func (h *health) begin(what string) {
	now := h.now()
	h.mu.Lock()
	h.busySince, h.busyWith = now, what
	h.mu.Unlock()
}

func (h *health) end() {
	h.mu.Lock()
	h.busySince, h.busyWith = time.Time{}, ""
	h.mu.Unlock()
}

// setReady marks edsync ready for good: once every file of the first flush
// is written, old files keep serving whatever comes later.
func (h *health) setReady() {
	h.mu.Lock()
	h.ready, h.notReady = true, ""
	h.mu.Unlock()
}

// setNotReady says why edsync is not ready yet; it changes nothing once ready.
func (h *health) setNotReady(why string) {
	h.mu.Lock()
	if !h.ready {
		h.notReady = why
	}
	h.mu.Unlock()
}

// alive returns nil if the loop runs and is not stuck, else why not.
func (h *health) alive() error {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case !h.running && h.stopped != "":
		return fmt.Errorf("the pipeline stopped: %s", h.stopped)
	case !h.running:
		return fmt.Errorf("the pipeline has not started")
	case !h.busySince.IsZero() && now.Sub(h.busySince) > h.stuckAfter:
		return fmt.Errorf("the pipeline has been busy with %s for %s (limit %s)",
			h.busyWith, now.Sub(h.busySince).Round(time.Second), h.stuckAfter)
	}
	return nil
}

// readiness returns nil once edsync is ready, else why not.
func (h *health) readiness() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ready {
		return nil
	}
	return fmt.Errorf("not ready: %s", h.notReady)
}
