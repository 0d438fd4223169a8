package watch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

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
// Service, Node, their lists and List (as `kubectl get -o yaml` prints) are
// accepted; the others are decoded only to be named in the error. Strict mode reports unknown and
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
	services []*corev1.Service            // slimmed, namespace defaulted
	nodes    []*corev1.Node
	warnings []string // unknown or duplicate fields
	empty    bool     // no document at all
}

// decodeManifest reads a file of EndpointSlices, Services and Nodes: one or
// more YAML documents separated by `---`, or JSON; each document one such
// object, an EndpointSliceList, ServiceList or NodeList, or a v1 List of
// them. All or nothing: any bad document or list item fails the whole
// file, so that a half-written file never removes the objects in its
// missing part (the caller keeps the file's last good objects). A slice or
// Service without a namespace gets "default"; an object without a name, a
// duplicate, another kind or apiVersion are errors. A Service port's
// protocol defaults to TCP, as the API server does.
func decodeManifest(data []byte) (manifest, error) {
	var m manifest
	seen := map[string]bool{}
	once := func(kind, ns, name string) error {
		if name == "" {
			return fmt.Errorf("%s without metadata.name", kind)
		}
		id := kind + " " + ns + "/" + name
		if ns == "" {
			id = kind + " " + name
		}
		if seen[id] {
			return fmt.Errorf("%s appears twice", strings.TrimPrefix(id, "EndpointSlice "))
		}
		seen[id] = true
		return nil
	}
	var add func(obj runtime.Object) error
	add = func(obj runtime.Object) error {
		switch o := obj.(type) {
		case *discoveryv1.EndpointSlice:
			if o.Namespace == "" {
				o.Namespace = "default"
			}
			if err := once("EndpointSlice", o.Namespace, o.Name); err != nil {
				return err
			}
			// A saved `kubectl get -o yaml` carries the resourceVersion it had
			// then; an edit of the file keeps it. The Store would take the
			// edited object for the one it has, so a manifest's version means
			// nothing here: content decides.
			o.ResourceVersion = ""
			m.slices = append(m.slices, Slim(o))
		case *corev1.Service:
			if o.Namespace == "" {
				o.Namespace = "default"
			}
			if err := once("Service", o.Namespace, o.Name); err != nil {
				return err
			}
			// The API server defaults the protocol; a manifest may leave it out.
			for i := range o.Spec.Ports {
				if o.Spec.Ports[i].Protocol == "" {
					o.Spec.Ports[i].Protocol = corev1.ProtocolTCP
				}
			}
			m.services = append(m.services, SlimService(o))
		case *corev1.Node:
			if err := once("Node", "", o.Name); err != nil {
				return err
			}
			m.nodes = append(m.nodes, o)
		case *discoveryv1.EndpointSliceList:
			for i := range o.Items {
				if err := add(&o.Items[i]); err != nil {
					return fmt.Errorf("item %d: %w", i, err)
				}
			}
		case *corev1.ServiceList:
			for i := range o.Items {
				if err := add(&o.Items[i]); err != nil {
					return fmt.Errorf("item %d: %w", i, err)
				}
			}
		case *corev1.NodeList:
			for i := range o.Items {
				if err := add(&o.Items[i]); err != nil {
					return fmt.Errorf("item %d: %w", i, err)
				}
			}
		default:
			return notAccepted(obj)
		}
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
		if list, ok := obj.(*corev1.List); ok {
			for i, item := range list.Items {
				var it runtime.Object
				// An item without apiVersion and kind is taken for an
				// EndpointSlice, the kind these folders are for.
				it, warn, err = decodeObject(item.Raw, &endpointSliceGVK)
				if err == nil {
					switch it.(type) {
					case *discoveryv1.EndpointSlice, *corev1.Service, *corev1.Node:
						err = add(it)
					default:
						err = notAccepted(it)
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
		} else {
			err = add(obj)
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

func notAccepted(obj runtime.Object) error {
	gvk := obj.GetObjectKind().GroupVersionKind()
	return fmt.Errorf("%s %s is not an EndpointSlice (%s), a Service or a Node (v1)", gvk.GroupVersion(), gvk.Kind, endpointSliceGVK.GroupVersion())
}

// isEmptyDocument reports a document of only blanks and comments.
func isEmptyDocument(doc []byte) bool {
	if len(bytes.TrimSpace(doc)) == 0 {
		return true
	}
	j, err := yaml.YAMLToJSON(doc)
	return err == nil && bytes.Equal(bytes.TrimSpace(j), []byte("null"))
}
