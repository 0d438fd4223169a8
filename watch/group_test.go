package watch

import (
	"context"
	"errors"
	"testing"
	"time"
)

// stepSource is a Source whose sync and failure the test decides.
type stepSource struct {
	synced chan struct{}
	fail   chan error
}

func newStepSource() *stepSource {
	return &stepSource{synced: make(chan struct{}), fail: make(chan error, 1)}
}

func (s *stepSource) Synced() <-chan struct{} { return s.synced }

func (s *stepSource) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.fail:
		return err
	}
}

// A group is synced once every source is, and one failing source stops
// them all with its error.
func TestGroup(t *testing.T) {
	a, b := newStepSource(), newStepSource()
	if g := Group(a); g != Source(a) {
		t.Errorf("a group of one is %T, want the source itself", g)
	}
	g := Group(a, b)
	done := make(chan error, 1)
	go func() { done <- g.Run(t.Context()) }()

	close(a.synced)
	select {
	case <-g.Synced():
		t.Fatal("synced with one source of two")
	default:
	}
	close(b.synced)
	select {
	case <-g.Synced():
	case <-time.After(time.Minute): // a failure guard, not a timing assertion
		t.Fatal("not synced with both")
	}

	boom := errors.New("boom")
	b.fail <- boom
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Errorf("Run = %v, want %v", err, boom)
		}
	case <-time.After(time.Minute): // a failure guard, not a timing assertion
		t.Fatal("Run did not return after a source failed")
	}
}
