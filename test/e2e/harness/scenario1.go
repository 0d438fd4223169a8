package harness

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WaitExactly waits until the file name for cluster holds exactly want
// ("ip:port HEALTH" as Endpoints lists them, in any order). Unlike
// WaitEndpoints its complaint is short for large sets: the counts, then
// what is missing and what is extra, each as a sorted list.
func (d *DirWatcher) WaitExactly(t testing.TB, name, cluster string, timeout time.Duration, want []string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	return d.WaitFor(t, name, cluster, timeout, func(cla *endpointv3.ClusterLoadAssignment) error {
		got := Endpoints(cla)
		if slices.Equal(got, want) {
			return nil
		}
		missing, extra := Diff(want, got)
		return fmt.Errorf("want %d endpoints, file has %d\n  missing (%d): %s\n  unexpected (%d): %s",
			len(want), len(got), len(missing), strings.Join(missing, ", "), len(extra), strings.Join(extra, ", "))
	})
}

// Diff returns the elements of sorted want not in sorted got, and those of
// got not in want (duplicates count).
func Diff(want, got []string) (missing, extra []string) {
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j == len(got) || (i < len(want) && want[i] < got[j]):
			missing = append(missing, want[i])
			i++
		case i == len(want) || got[j] < want[i]:
			extra = append(extra, got[j])
			j++
		default:
			i++
			j++
		}
	}
	return missing, extra
}

// ServiceSlices lists the EndpointSlices that the API server holds for the
// Service ns/name (by its kubernetes.io/service-name label).
func (c *Cluster) ServiceSlices(ctx context.Context, ns, name string) ([]discoveryv1.EndpointSlice, error) {
	list, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + name,
	})
	if err != nil {
		return nil, fmt.Errorf("list endpointslices of %s/%s: %w", ns, name, err)
	}
	return list.Items, nil
}

// Parallel runs f(0) .. f(n-1) on at most workers goroutines and returns
// the first error (every call runs either way). For creating many Pods.
func Parallel(n, workers int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
