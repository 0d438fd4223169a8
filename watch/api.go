package watch

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// API is what the sources read from the API server: lists and watches of
// EndpointSlices, Services and Nodes. NewAPI makes it from a rest.Config;
// tests adapt client-go's fake clientset to it.
type API interface {
	EndpointSlices(namespace string) ListWatch
	Services(namespace string) ListWatch
	Nodes() ListWatch
}

// ListWatch lists and watches one resource in one namespace ("" for all).
type ListWatch struct {
	List  func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)
	Watch func(ctx context.Context, opts metav1.ListOptions) (apiwatch.Interface, error)
}

// restAPI is API over REST clients whose scheme knows only the types edsync
// reads. client-go's clientset (and any of its typed clients) links the
// scheme of every API group, which costs each sidecar about 10 MB of memory
// (docs/performance.md, Sidecar memory).
type restAPI struct {
	discovery, core *rest.RESTClient
	params          runtime.ParameterCodec
}

// NewAPI makes the API of the server rc names. rc's content type is kept
// (protobuf, see the root's client set-up).
func NewAPI(rc *rest.Config) (API, error) {
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	if err := discoveryv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	client := func(gv schema.GroupVersion, path string) (*rest.RESTClient, error) {
		c := rest.CopyConfig(rc)
		c.GroupVersion = &gv
		c.APIPath = path
		c.NegotiatedSerializer = codecs
		return rest.RESTClientFor(c)
	}
	disc, err := client(discoveryv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	core, err := client(corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &restAPI{discovery: disc, core: core, params: runtime.NewParameterCodec(scheme)}, nil
}

func (a *restAPI) EndpointSlices(ns string) ListWatch {
	return a.listWatch(a.discovery, ns, "endpointslices", func() runtime.Object { return &discoveryv1.EndpointSliceList{} })
}

func (a *restAPI) Services(ns string) ListWatch {
	return a.listWatch(a.core, ns, "services", func() runtime.Object { return &corev1.ServiceList{} })
}

func (a *restAPI) Nodes() ListWatch {
	return a.listWatch(a.core, "", "nodes", func() runtime.Object { return &corev1.NodeList{} })
}

// listWatch is what a generated typed client does for List and Watch.
func (a *restAPI) listWatch(c *rest.RESTClient, ns, resource string, newList func() runtime.Object) ListWatch {
	return ListWatch{
		List: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			out := newList()
			err := c.Get().Namespace(ns).Resource(resource).VersionedParams(&opts, a.params).Do(ctx).Into(out)
			return out, err
		},
		Watch: func(ctx context.Context, opts metav1.ListOptions) (apiwatch.Interface, error) {
			opts.Watch = true
			return c.Get().Namespace(ns).Resource(resource).VersionedParams(&opts, a.params).Watch(ctx)
		},
	}
}
