package render

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Upstream is what a cluster's entry in the CDS file takes from
// Kubernetes. It is comparable: a change of it, and only that, changes the
// entry.
type Upstream struct {
	// AppProtocol is the appProtocol of the cluster's port in its
	// EndpointSlices (copied there from the Service port).
	AppProtocol string
}

// HTTP2 says whether the port's appProtocol asks for HTTP/2 to the
// upstream: h2c as Kubernetes names it, and the names gRPC and HTTP/2
// services are commonly given (gRPC is HTTP/2).
func (u Upstream) HTTP2() bool {
	switch u.AppProtocol {
	case "kubernetes.io/h2c", "h2c", "http2", "grpc":
		return true
	}
	return false
}

// httpOptionsKey is where Envoy looks for a cluster's HTTP protocol
// options in typed_extension_protocol_options.
const httpOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// http2Options are HttpProtocolOptions speaking HTTP/2 to every endpoint
// (prior knowledge, no TLS: h2c), marshalled once.
var http2Options = func() *anypb.Any {
	a, err := anypb.New(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		},
	}})
	if err != nil {
		panic(fmt.Sprintf("render: HTTP/2 protocol options: %v", err))
	}
	return a
}()

// ClusterOptions are the settings of every generated cluster.
type ClusterOptions struct {
	// ConnectTimeout is each cluster's connect_timeout; 0 leaves Envoy's
	// default (5 s).
	ConnectTimeout time.Duration
}

// EDSCluster is the Envoy cluster whose endpoints come from one of our
// files, at path. Its name is the CLA's cluster_name (Envoy needs
// service_name to match it; using it as the cluster's name too keeps routes
// readable).
//
// The config source is a path_config_source on the file, without
// watched_directory. Envoy then watches the file's folder for a move onto
// that very name (inotify IN_MOVED_TO), which is how edsync writes: a temp
// file renamed over the target. watched_directory is for a path Envoy
// cannot see moved onto, such as a file in a ConfigMap volume, whose ..data
// symlink is swapped instead. With it, every rename into the folder would
// reload every cluster reading from it: N clusters re-read N files for each
// changed one.
func EDSCluster(name, path string, up Upstream, o ClusterOptions) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig: &corev3.ConfigSource{
				ResourceApiVersion: corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{
					PathConfigSource: &corev3.PathConfigSource{Path: path},
				},
			},
		},
	}
	if o.ConnectTimeout > 0 {
		c.ConnectTimeout = durationpb.New(o.ConnectTimeout)
	}
	if up.HTTP2() {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpOptionsKey: http2Options}
	}
	return c
}
