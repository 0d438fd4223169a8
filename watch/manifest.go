package watch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifestDecoder reads YAML and JSON into the registered types: EndpointSlice
// and EndpointSliceList (discovery.k8s.io/v1), and the core v1 kinds, of which
// List (as `kubectl get -o yaml` prints) is the one accepted; the others are
// decoded only to be named in the error. Strict mode reports unknown and
// duplicate fields, which are logged but not fatal: a newer kubectl may print
// fields this build does not know.
var manifestDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{discoveryv1.AddToScheme, corev1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

var endpointSliceGVK = discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice")

// manifest is what one file holds.
type manifest struct {
	slices   []*discoveryv1.EndpointSlice // slimmed, namespace defaulted
	warnings []string                     // unknown or duplicate fields
	empty    bool                         // no document at all
}

// decodeManifest reads a file of EndpointSlices: one or more YAML documents
// separated by `---`, or JSON; each document an EndpointSlice, an
// EndpointSliceList or a v1 List of EndpointSlices. All or nothing: any bad
// document or list item fails the whole file, so that a half-written file
// never removes the slices in its missing part (the caller keeps the file's
// last good slices). A slice without a namespace gets "default"; a slice
// without a name, a duplicate name, another kind or apiVersion are errors.
func decodeManifest(data []byte) (manifest, error) {
	var m manifest
	seen := map[string]bool{}
	add := func(sl *discoveryv1.EndpointSlice) error {
		if sl.Name == "" {
			return errors.New("EndpointSlice without metadata.name")
		}
		if sl.Namespace == "" {
			sl.Namespace = "default"
		}
		id := sl.Namespace + "/" + sl.Name
		if seen[id] {
			return fmt.Errorf("EndpointSlice %s appears twice", id)
		}
		seen[id] = true
		// A saved `kubectl get -o yaml` carries the resourceVersion it had
		// then; an edit of the file keeps it. The Store would take the
		// edited object for the one it has, so a manifest's version means
		// nothing here: content decides.
		sl.ResourceVersion = ""
		m.slices = append(m.slices, Slim(sl))
		return nil
	}

	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	docs := 0
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return manifest{}, fmt.Errorf("document %d: %w", n, err)
		}
		if isEmptyDocument(doc) {
			continue
		}
		docs++
		obj, warn, err := decodeObject(doc, nil)
		if err != nil {
			return manifest{}, fmt.Errorf("document %d: %w", n, err)
		}
		if warn != nil {
			m.warnings = append(m.warnings, fmt.Sprintf("document %d: %v", n, warn))
		}
		switch o := obj.(type) {
		case *discoveryv1.EndpointSlice:
			err = add(o)
		case *discoveryv1.EndpointSliceList:
			for i := range o.Items {
				if err = add(&o.Items[i]); err != nil {
					err = fmt.Errorf("item %d: %w", i, err)
					break
				}
			}
		case *corev1.List:
			for i, item := range o.Items {
				var it runtime.Object
				it, warn, err = decodeObject(item.Raw, &endpointSliceGVK)
				if err == nil {
					sl, ok := it.(*discoveryv1.EndpointSlice)
					if !ok {
						err = notEndpointSlice(it)
					} else {
						err = add(sl)
					}
				}
				if err != nil {
					err = fmt.Errorf("List item %d: %w", i, err)
					break
				}
				if warn != nil {
					m.warnings = append(m.warnings, fmt.Sprintf("document %d: List item %d: %v", n, i, warn))
				}
			}
		default:
			err = notEndpointSlice(obj)
		}
		if err != nil {
			return manifest{}, fmt.Errorf("document %d: %w", n, err)
		}
	}
	m.empty = docs == 0
	return m, nil
}

// decodeObject decodes one document. warn reports unknown or duplicate
// fields in an object that decoded otherwise.
func decodeObject(doc []byte, defaults *schema.GroupVersionKind) (obj runtime.Object, warn, err error) {
	obj, _, err = manifestDecoder.Decode(doc, defaults, nil)
	if err != nil && obj != nil && runtime.IsStrictDecodingError(err) {
		return obj, err, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return obj, nil, nil
}

func notEndpointSlice(obj runtime.Object) error {
	gvk := obj.GetObjectKind().GroupVersionKind()
	return fmt.Errorf("%s %s is not an EndpointSlice (%s)", gvk.GroupVersion(), gvk.Kind, endpointSliceGVK.GroupVersion())
}

// isEmptyDocument reports a document of only blanks and comments.
func isEmptyDocument(doc []byte) bool {
	if len(bytes.TrimSpace(doc)) == 0 {
		return true
	}
	j, err := yaml.YAMLToJSON(doc)
	return err == nil && bytes.Equal(bytes.TrimSpace(j), []byte("null"))
}
