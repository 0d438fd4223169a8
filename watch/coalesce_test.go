package watch

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edsync/edsync/render"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func svc(ns, name string) render.ServiceKey { return render.ServiceKey{Namespace: ns, Name: name} }

func TestCoalescer(t *testing.T) {
	a, b, c := svc("ns", "a"), svc("ns", "b"), svc("other", "c")
	type mark struct {
		key render.ServiceKey
		ms  int
	}
	type due struct {
		ms   int
		want []render.ServiceKey
	}
	tests := []struct {
		name               string
		debounce, maxDelay time.Duration
		marks              []mark
		dues               []due
	}{
		{
			name:     "debounce waits for quiet",
			debounce: 100 * time.Millisecond, maxDelay: time.Second,
			marks: []mark{{a, 0}, {a, 50}},
			dues:  []due{{100, nil}, {149, nil}, {150, []render.ServiceKey{a}}, {151, nil}},
		},
		{
			name:     "zero debounce is due at once",
			debounce: 0, maxDelay: time.Second,
			marks: []mark{{a, 10}},
			dues:  []due{{10, []render.ServiceKey{a}}},
		},
		{
			name:     "max delay caps constant churn",
			debounce: 100 * time.Millisecond, maxDelay: 300 * time.Millisecond,
			marks: []mark{{a, 0}, {a, 80}, {a, 160}, {a, 240}, {a, 299}},
			dues:  []due{{299, nil}, {300, []render.ServiceKey{a}}},
		},
		{
			name:     "no max delay without cap",
			debounce: 100 * time.Millisecond, maxDelay: 0,
			marks: []mark{{a, 0}, {a, 80}, {a, 160}, {a, 240}, {a, 320}},
			dues:  []due{{400, nil}, {420, []render.ServiceKey{a}}},
		},
		{
			name:     "due keys come sorted whatever their order of marking",
			debounce: 10 * time.Millisecond, maxDelay: time.Second,
			marks: []mark{{c, 0}, {b, 1}, {a, 2}},
			dues:  []due{{5, nil}, {100, []render.ServiceKey{a, b, c}}},
		},
		{
			name:     "only quiet keys are due",
			debounce: 100 * time.Millisecond, maxDelay: time.Second,
			marks: []mark{{a, 0}, {b, 0}, {b, 60}},
			dues:  []due{{100, []render.ServiceKey{a}}, {160, []render.ServiceKey{b}}},
		},
		{
			name:     "a key written then changed again starts a new window",
			debounce: 100 * time.Millisecond, maxDelay: 150 * time.Millisecond,
			marks: []mark{{a, 0}, {a, 120}},
			dues:  []due{{100, []render.ServiceKey{a}}, {150, nil}, {220, []render.ServiceKey{a}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCoalescer(tt.debounce, tt.maxDelay)
			// Interleave marks and dues by time: marks at a time happen
			// before a due at the same time.
			mi := 0
			for _, d := range tt.dues {
				for mi < len(tt.marks) && tt.marks[mi].ms <= d.ms {
					c.Mark(tt.marks[mi].key, at(tt.marks[mi].ms))
					mi++
				}
				if got := c.Due(at(d.ms)); !slices.Equal(got, d.want) {
					t.Errorf("Due(%dms) = %v, want %v", d.ms, got, d.want)
				}
			}
		})
	}
}

func TestCoalescerNext(t *testing.T) {
	c := NewCoalescer(100*time.Millisecond, 250*time.Millisecond)
	if _, ok := c.Next(); ok {
		t.Fatal("Next on empty coalescer: ok")
	}
	c.Mark(svc("ns", "a"), at(0))
	c.Mark(svc("ns", "b"), at(30))
	if got, _ := c.Next(); !got.Equal(at(100)) {
		t.Errorf("Next = %v, want +100ms", got.Sub(t0))
	}
	c.Mark(svc("ns", "a"), at(90)) // a now due at 190; b at 130
	if got, _ := c.Next(); !got.Equal(at(130)) {
		t.Errorf("Next = %v, want +130ms", got.Sub(t0))
	}
	c.Mark(svc("ns", "a"), at(200)) // capped at first+250
	c.Mark(svc("ns", "b"), at(200)) // b: capped at 30+250
	if got, _ := c.Next(); !got.Equal(at(250)) {
		t.Errorf("Next = %v, want +250ms (max delay)", got.Sub(t0))
	}
	if got := c.Due(at(250)); !slices.Equal(got, []render.ServiceKey{svc("ns", "a")}) {
		t.Errorf("Due = %v", got)
	}
	if got, _ := c.Next(); !got.Equal(at(280)) {
		t.Errorf("Next = %v, want +280ms", got.Sub(t0))
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d, want 1", c.Len())
	}
	if got := c.All(); !slices.Equal(got, []render.ServiceKey{svc("ns", "b")}) {
		t.Errorf("All = %v", got)
	}
	if _, ok := c.Next(); ok || c.Len() != 0 {
		t.Error("not empty after All")
	}
}

// TestCoalescerManyKeys marks 10,000 keys at once, as the first sync of a
// large cluster does, and churns them: it must stay fast (a quadratic
// implementation takes seconds here) and exact.
func TestCoalescerManyKeys(t *testing.T) {
	const n = 10000
	c := NewCoalescer(100*time.Millisecond, time.Second)
	keys := make([]render.ServiceKey, n)
	for i := range n {
		keys[i] = svc(fmt.Sprintf("ns%02d", i%37), fmt.Sprintf("svc%05d", i))
	}
	for round := range 5 {
		for i, k := range keys {
			c.Mark(k, at(round*10+i%10))
			if _, ok := c.Next(); !ok {
				t.Fatal("Next: nothing pending")
			}
		}
	}
	if c.Len() != n {
		t.Fatalf("Len = %d, want %d", c.Len(), n)
	}
	if next, _ := c.Next(); !next.Equal(at(140)) {
		t.Errorf("Next = %v, want +140ms", next.Sub(t0))
	}
	got := c.Due(at(144))
	if len(got) != n/2 {
		t.Errorf("Due(+144ms) gave %d keys, want %d", len(got), n/2)
	}
	if !slices.IsSortedFunc(got, compareKeys) {
		t.Error("Due not sorted")
	}
	if rest := c.All(); len(rest) != n/2 {
		t.Errorf("All gave %d keys, want %d", len(rest), n/2)
	}
}

func BenchmarkCoalescer10k(b *testing.B) {
	const n = 10000
	keys := make([]render.ServiceKey, n)
	for i := range n {
		keys[i] = svc("ns", fmt.Sprintf("svc%05d", i))
	}
	for b.Loop() {
		c := NewCoalescer(100*time.Millisecond, time.Second)
		for i, k := range keys {
			c.Mark(k, at(i%100))
			c.Next()
		}
		c.Due(at(1000))
	}
}
