package writer

import (
	"os"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Owns reports whether the file of cluster holds what edsync writes for it:
// a DiscoveryResponse with one ClusterLoadAssignment named cluster. A name
// alone proves nothing: the folder Envoy reads may also hold its bootstrap
// or other xDS files (envoy.json decodes to a cluster name like any other),
// and those must never be replaced. A cluster written (or, in dry-run,
// printed) by this process is ours without a look.
func (w *Writer) Owns(cluster string) bool {
	w.mu.Lock()
	_, ours := w.written[cluster]
	w.mu.Unlock()
	if ours {
		return true
	}
	path, err := w.Path(cluster)
	if err != nil {
		return false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var resp discoveryv3.DiscoveryResponse
	switch w.format {
	case FormatPB:
		err = proto.Unmarshal(data, &resp)
	case FormatYAML:
		var js []byte
		if js, err = yaml.YAMLToJSON(data); err == nil {
			err = protojson.Unmarshal(js, &resp)
		}
	default:
		err = protojson.Unmarshal(data, &resp)
	}
	if err != nil || len(resp.Resources) != 1 {
		return false
	}
	var cla endpointv3.ClusterLoadAssignment
	if resp.Resources[0].UnmarshalTo(&cla) != nil {
		return false
	}
	return cla.ClusterName == cluster
}
