package watch

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/watchlist"
)

// clientsetAPI adapts client-go's clientset (the fake one, in tests) to API.
type clientsetAPI struct{ c kubernetes.Interface }

func (a clientsetAPI) EndpointSlices(ns string) ListWatch {
	api := a.c.DiscoveryV1().EndpointSlices(ns)
	return ListWatch{List: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, o) }, Watch: api.Watch}
}

func (a clientsetAPI) Services(ns string) ListWatch {
	api := a.c.CoreV1().Services(ns)
	return ListWatch{List: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, o) }, Watch: api.Watch}
}

func (a clientsetAPI) Nodes() ListWatch {
	api := a.c.CoreV1().Nodes()
	return ListWatch{List: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, o) }, Watch: api.Watch}
}

// IsWatchListSemanticsUnSupported passes on what the clientset says: the
// fake one cannot stream an initial list.
func (a clientsetAPI) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(a.c)
}
