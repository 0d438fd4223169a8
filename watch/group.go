package watch

import (
	"context"
	"sync"
)

// Group runs several sources as one, synced once every one is: the
// slices, Services and Nodes of the first flush are then all known. One
// source is returned as it is.
func Group(list ...Source) Source {
	if len(list) == 1 {
		return list[0]
	}
	return &group{list: list, synced: make(chan struct{})}
}

type group struct {
	list   []Source
	synced chan struct{}
}

func (s *group) Synced() <-chan struct{} { return s.synced }

// Run runs every source until ctx ends or one fails; it returns the first
// error after every source has returned.
func (s *group) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(s.list))
	var wg sync.WaitGroup
	for _, src := range s.list {
		wg.Go(func() {
			err := src.Run(ctx)
			if err != nil {
				cancel()
			}
			errs <- err
		})
	}
	wg.Go(func() {
		for _, src := range s.list {
			select {
			case <-src.Synced():
			case <-ctx.Done():
				return
			}
		}
		close(s.synced)
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
