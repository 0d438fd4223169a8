package testutil

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/watchlist"

	"github.com/edsync/edsync/watch"
)

// ClientsetAPI adapts client-go's clientset (the fake one) to watch.API,
// for the tests of the packages above watch. (watch's own tests have the
// same adapter: they cannot import this package, which imports watch.)
func ClientsetAPI(c kubernetes.Interface) watch.API { return clientsetAPI{c} }

type clientsetAPI struct{ c kubernetes.Interface }

func (a clientsetAPI) EndpointSlices(ns string) watch.ListWatch {
	api := a.c.DiscoveryV1().EndpointSlices(ns)
	return watch.ListWatch{List: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, o) }, Watch: api.Watch}
}

func (a clientsetAPI) Services(ns string) watch.ListWatch {
	api := a.c.CoreV1().Services(ns)
	return watch.ListWatch{List: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, o) }, Watch: api.Watch}
}

func (a clientsetAPI) Nodes() watch.ListWatch {
	api := a.c.CoreV1().Nodes()
	return watch.ListWatch{List: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, o) }, Watch: api.Watch}
}

// IsWatchListSemanticsUnSupported passes on what the clientset says: the
// fake one cannot stream an initial list.
func (a clientsetAPI) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(a.c)
}
