package watch

import (
	"container/heap"
	"slices"
	"time"

	"github.com/edsync/edsync/render"
)

// Coalescer decides when a changed Service is due for rendering: after it
// has been quiet for the debounce, or once its first unwritten change is
// maxDelay old, whichever comes first, so that constant churn still gets
// written. It is pure: time comes in as arguments; it starts no goroutine
// and reads no clock. It is not safe for concurrent use: the pipeline's one
// goroutine owns it.
//
// Dirty keys sit in a min-heap on their due time, so Mark, Due and Next cost
// O(log n) per key even with every Service of a cluster dirty at once.
type Coalescer struct {
	// OnTake, if set, is called by Due and All for each key they return,
	// with the time of its first unwritten change: how long changes waited
	// is a metric. It runs on the caller's goroutine.
	OnTake func(key render.ServiceKey, first time.Time)

	debounce, maxDelay time.Duration
	items              map[render.ServiceKey]*pending
	heap               pendingHeap
	// peak is the most keys pending since the map was made: a map never
	// shrinks, so once empty after a burst (the initial sync marks every
	// Service) it is made again (see shrink).
	peak int
}

type pending struct {
	key   render.ServiceKey
	first time.Time // first unwritten change: starts the max-delay window
	due   time.Time
	index int // in the heap
}

// NewCoalescer returns an empty Coalescer. A debounce of 0 makes a key due
// at once; a maxDelay of 0 or less means no cap (a key that keeps changing
// faster than the debounce waits until it calms down).
func NewCoalescer(debounce, maxDelay time.Duration) *Coalescer {
	return &Coalescer{
		debounce: max(debounce, 0),
		maxDelay: maxDelay,
		items:    map[render.ServiceKey]*pending{},
	}
}

// SetDelays changes the debounce and max-delay for the changes marked from
// now on; keys already pending keep their due time.
func (c *Coalescer) SetDelays(debounce, maxDelay time.Duration) {
	c.debounce, c.maxDelay = max(debounce, 0), maxDelay
}

// Mark records a change of key at now: the first unwritten change starts
// the max-delay window, each change restarts the quiet window.
func (c *Coalescer) Mark(key render.ServiceKey, now time.Time) {
	p, ok := c.items[key]
	if !ok {
		p = &pending{key: key, first: now, due: c.dueAt(now, now)}
		c.items[key] = p
		heap.Push(&c.heap, p)
		c.peak = max(c.peak, len(c.items))
		return
	}
	p.due = c.dueAt(p.first, now)
	heap.Fix(&c.heap, p.index)
}

func (c *Coalescer) dueAt(first, last time.Time) time.Time {
	due := last.Add(c.debounce)
	if c.maxDelay > 0 {
		if limit := first.Add(c.maxDelay); limit.Before(due) {
			due = limit
		}
	}
	return due
}

// Due removes and returns the keys due at now, sorted by namespace then name.
func (c *Coalescer) Due(now time.Time) []render.ServiceKey {
	var out []render.ServiceKey
	for len(c.heap) > 0 && !c.heap[0].due.After(now) {
		p := heap.Pop(&c.heap).(*pending)
		delete(c.items, p.key)
		out = append(out, p.key)
		c.taken(p)
	}
	c.shrink()
	slices.SortFunc(out, compareKeys)
	return out
}

// shrinkAbove is the peak past which an emptied Coalescer remakes its map
// and heap rather than keep their room (about 80 bytes a key).
const shrinkAbove = 256

func (c *Coalescer) shrink() {
	if len(c.items) == 0 && c.peak > shrinkAbove {
		c.items, c.heap, c.peak = make(map[render.ServiceKey]*pending), nil, 0
	}
}

// Next returns the earliest time a key becomes due; ok is false when
// nothing is pending.
func (c *Coalescer) Next() (t time.Time, ok bool) {
	if len(c.heap) == 0 {
		return time.Time{}, false
	}
	return c.heap[0].due, true
}

// All removes and returns every pending key, sorted: for the flush at
// shutdown and the first write after sync.
func (c *Coalescer) All() []render.ServiceKey {
	out := make([]render.ServiceKey, 0, len(c.heap))
	for _, p := range c.heap {
		out = append(out, p.key)
		c.taken(p)
	}
	clear(c.items)
	clear(c.heap)
	c.heap = c.heap[:0]
	c.shrink()
	slices.SortFunc(out, compareKeys)
	return out
}

func (c *Coalescer) taken(p *pending) {
	if c.OnTake != nil {
		c.OnTake(p.key, p.first)
	}
}

// Len returns the number of pending keys.
func (c *Coalescer) Len() int { return len(c.items) }

// pendingHeap is a container/heap ordered by due time, then key (so that
// equal times pop in a stable order).
type pendingHeap []*pending

func (h pendingHeap) Len() int { return len(h) }
func (h pendingHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return compareKeys(h[i].key, h[j].key) < 0
}
func (h pendingHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *pendingHeap) Push(x any) {
	p := x.(*pending)
	p.index = len(*h)
	*h = append(*h, p)
}
func (h *pendingHeap) Pop() any {
	old := *h
	n := len(old)
	p := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return p
}
