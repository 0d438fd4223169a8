// Package watch knows Kubernetes and folders of manifests: it keeps the
// current EndpointSlices of each Service in a Store and tells the pipeline
// which Services changed.
//
// Two sources feed a Store: Kube (a client-go informer on
// discovery.k8s.io/v1 EndpointSlices) and Dir (a folder of EndpointSlice
// manifests watched with fsnotify). Sources only write the Store; the
// pipeline's one goroutine reads it when a Service is due. The Coalescer
// decides when a changed Service is due: a per-Service debounce with a
// maximum delay, driven by times passed in, so it needs no clock.
//
// Services and Nodes, when asked for (--watch-services, --node-name,
// --node-topology), come from informers or the same folder into Objects,
// as the plain values render takes (render.ServiceInfo, render.NodeTopology).
//
// Objects in the Store are slimmed (see Slim) and shared, never mutated:
// readers must treat them as read-only.
//
// Imports go watch -> render (for its plain value types only), never back.
package watch
