package writer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// list finds the files of ours in the folder, for Known. A plain name tells
// its cluster; a shortened one is read: the cluster_name of the CLA inside
// tells whose it is, if FileName gives that cluster this very name.
func (w *Writer) list() error {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if name, ok := ClusterName(e.Name(), w.format); ok {
			w.found[name] = true
			continue
		}
		if !shortened(e.Name(), w.format) {
			continue
		}
		name, err := w.readCluster(filepath.Join(w.dir, e.Name()))
		if err != nil {
			w.log.Debug("not a file of ours", "path", filepath.Join(w.dir, e.Name()), "error", err)
			continue
		}
		if file, _ := FileName(name, w.format); file == e.Name() {
			w.found[name] = true
			w.short[e.Name()] = name
		}
	}
	return nil
}

// Known returns, sorted, the clusters with a file of ours: those found at New
// and those written since (in dry-run, those printed), less the released
// ones. After a change of configuration the caller empties those it no
// longer publishes.
func (w *Writer) Known() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.found)+len(w.files))
	for name := range w.found {
		out = append(out, name)
	}
	for name := range w.files {
		if !w.found[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Owns reports whether the file of cluster holds what edsync writes for it:
// a DiscoveryResponse with one ClusterLoadAssignment named cluster. A name
// alone proves nothing: the folder Envoy reads may also hold its bootstrap
// or other xDS files (envoy.json decodes to a cluster name like any other),
// and those must never be replaced. A cluster written (or, in dry-run,
// printed) by this process is ours without a look.
func (w *Writer) Owns(cluster string) bool {
	w.mu.Lock()
	_, ours := w.files[cluster]
	w.mu.Unlock()
	if ours {
		return true
	}
	path, err := w.Path(cluster)
	if err != nil {
		return false
	}
	name, err := w.readCluster(path)
	return err == nil && name == cluster
}

// readCluster reads the file at path as edsync writes them and returns the
// cluster_name of the one ClusterLoadAssignment in it.
func (w *Writer) readCluster(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	resp := newDiscoveryResponse()
	switch w.format {
	case FormatPB:
		err = proto.Unmarshal(data, resp)
	case FormatYAML:
		var js []byte
		if js, err = yaml.YAMLToJSON(data); err == nil {
			err = protojson.Unmarshal(js, resp)
		}
	default:
		err = protojson.Unmarshal(data, resp)
	}
	if err != nil {
		return "", err
	}
	res := resourcesOf(resp)
	if res.Len() != 1 {
		return "", fmt.Errorf("%d resources, not 1", res.Len())
	}
	typeURL, value := anyOf(res.Get(0).Message())
	if typeURL != claTypeURL {
		return "", fmt.Errorf("resource of type %q, not a ClusterLoadAssignment", typeURL)
	}
	var cla endpointv3.ClusterLoadAssignment
	if err := proto.Unmarshal(value, &cla); err != nil {
		return "", err
	}
	return cla.ClusterName, nil
}
