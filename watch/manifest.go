package watch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifestDecoder reads YAML and JSON into the registered types: EndpointSlice
// and EndpointSliceList (discovery.k8s.io/v1), and the core v1 kinds, of which
// Service, Node, their lists and List (as `kubectl get -o yaml` prints) are
// read; the others are skipped. Strict mode reports unknown and duplicate
// fields, which are logged but not fatal: a newer kubectl may print fields
// this build does not know.
var manifestDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{discoveryv1.AddToScheme, corev1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

var (
	endpointSliceGVK = discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice")
	serviceGVK       = corev1.SchemeGroupVersion.WithKind("Service")
	nodeGVK          = corev1.SchemeGroupVersion.WithKind("Node")
)

// manifest is what one file holds.
type manifest struct {
	slices   []*discoveryv1.EndpointSlice // slimmed, namespace defaulted
	services []*corev1.Service            // slimmed, namespace defaulted
	nodes    []*corev1.Node
	skipped  []otherObject // objects of other kinds, left out
	warnings []string      // unknown or duplicate fields
	empty    bool          // no document at all
}

// otherObject names an object of a kind edsync does not read.
type otherObject struct {
	apiVersion, kind, namespace, name string
}

// Kind is "apiVersion kind", e.g. "apps/v1 Deployment".
func (o otherObject) Kind() string { return o.apiVersion + " " + o.kind }

// Name is "namespace/name", or the name alone if the manifest gives no namespace.
func (o otherObject) Name() string {
	if o.namespace == "" {
		return o.name
	}
	return o.namespace + "/" + o.name
}

func (o otherObject) String() string { return o.Kind() + " " + o.Name() }

// decodeManifest reads a file of EndpointSlices, Services and Nodes: one or
// more YAML documents separated by `---`, or JSON; each document one such
// object, an EndpointSliceList, ServiceList or NodeList, or a v1 List of
// them. Objects of other kinds or apiVersions (a Deployment, a v1
// Endpoints, a discovery.k8s.io/v1beta1 slice), alone or in a list, are
// left out and named in skipped: a folder of manifests often holds the
// rest of an application. Otherwise all or nothing: any document or list
// item that cannot be read fails the whole file, so that a half-written
// file never removes the objects in its missing part (the caller keeps the
// file's last good objects). A slice or Service without a namespace gets
// "default"; an object without a name or a duplicate is an error. A
// Service port's protocol defaults to TCP, as the API server does.
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
		default: // a list in a list
			m.skipped = append(m.skipped, describe(obj))
		}
		return nil
	}
	// addItems decodes the raw items of a list, each taken for the list's
	// kind of item (def) unless it says otherwise.
	addItems := func(n int, what string, items [][]byte, def *schema.GroupVersionKind) error {
		for i, raw := range items {
			it, warn, other, err := decodeObject(raw, def)
			if err == nil && other != nil {
				m.skipped = append(m.skipped, *other)
				continue
			}
			if err == nil {
				err = add(it)
			}
			if err != nil {
				return fmt.Errorf("%s item %d: %w", what, i, err)
			}
			if warn != nil {
				m.warnings = append(m.warnings, fmt.Sprintf("document %d: %s item %d: %v", n, what, i, warn))
			}
		}
		return nil
	}
	// addTypedItems reads the items of a typed list. Decoded with the
	// list, an item of another kind would pass for the list's kind: each
	// is decoded again on its own.
	addTypedItems := func(n int, what string, doc []byte, def *schema.GroupVersionKind) error {
		items, err := rawItems(doc)
		if err != nil {
			return err
		}
		return addItems(n, what, items, def)
	}

	// A JSON file is one document: the YAML reader, which looks for
	// "---" line by line, has nothing to split (a YAML file in flow style
	// may start with '{' too: one with a separator takes the YAML path).
	read := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data))).Read
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' && !bytes.Contains(t, []byte("\n---")) {
		done := false
		read = func() ([]byte, error) {
			if done {
				return nil, io.EOF
			}
			done = true
			return data, nil
		}
	}
	docs := 0
	for n := 1; ; n++ {
		doc, err := read()
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
		// A JSON list (as `kubectl get -o json` prints) goes straight to
		// its items: decoding it whole first, then each item again, read
		// every object twice.
		if def, items, ok := jsonList(doc); ok {
			if err := addItems(n, "list", items, def); err != nil {
				return manifest{}, fmt.Errorf("document %d: %w", n, err)
			}
			continue
		}
		obj, warn, other, err := decodeObject(doc, nil)
		if err != nil {
			return manifest{}, fmt.Errorf("document %d: %w", n, err)
		}
		if other != nil {
			m.skipped = append(m.skipped, *other)
			continue
		}
		switch list := obj.(type) {
		case *corev1.List:
			if warn != nil {
				m.warnings = append(m.warnings, fmt.Sprintf("document %d: %v", n, warn))
			}
			items := make([][]byte, len(list.Items))
			for i := range list.Items {
				items[i] = list.Items[i].Raw
			}
			// An item without apiVersion and kind is taken for an
			// EndpointSlice, the kind these folders are for.
			err = addItems(n, "List", items, &endpointSliceGVK)
		case *discoveryv1.EndpointSliceList:
			err = addTypedItems(n, "EndpointSliceList", doc, &endpointSliceGVK)
		case *corev1.ServiceList:
			err = addTypedItems(n, "ServiceList", doc, &serviceGVK)
		case *corev1.NodeList:
			err = addTypedItems(n, "NodeList", doc, &nodeGVK)
		default:
			if warn != nil {
				m.warnings = append(m.warnings, fmt.Sprintf("document %d: %v", n, warn))
			}
			err = add(obj)
		}
		if err != nil {
			return manifest{}, fmt.Errorf("document %d: %w", n, err)
		}
	}
	m.empty = docs == 0
	return m, nil
}

// decodeObject decodes one document or list item. warn reports unknown or
// duplicate fields in an object that decoded otherwise. other, if not nil,
// names an object of a kind that is not read (obj is then nil): one this
// build does not know (its fields are not checked), or one it knows but
// does not read.
func decodeObject(doc []byte, defaults *schema.GroupVersionKind) (obj runtime.Object, warn error, other *otherObject, err error) {
	obj, _, err = manifestDecoder.Decode(doc, defaults, nil)
	if runtime.IsNotRegisteredError(err) {
		o, perr := peek(doc)
		if perr != nil {
			return nil, nil, nil, err
		}
		return nil, nil, &o, nil
	}
	if err != nil && obj != nil && runtime.IsStrictDecodingError(err) {
		warn, err = err, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	switch obj.(type) {
	case *discoveryv1.EndpointSlice, *corev1.Service, *corev1.Node,
		*corev1.List, *discoveryv1.EndpointSliceList, *corev1.ServiceList, *corev1.NodeList:
		return obj, warn, nil, nil
	}
	o := describe(obj)
	return nil, nil, &o, nil
}

// describe names a decoded object of another kind.
func describe(obj runtime.Object) otherObject {
	gvk := obj.GetObjectKind().GroupVersionKind()
	o := otherObject{apiVersion: gvk.GroupVersion().String(), kind: gvk.Kind}
	if m, err := meta.Accessor(obj); err == nil {
		o.namespace, o.name = m.GetNamespace(), m.GetName()
	}
	return o
}

// peek reads the kind and name of an object of a kind this build does not know.
func peek(doc []byte) (otherObject, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return otherObject{}, err
	}
	return otherObject{apiVersion: tm.APIVersion, kind: tm.Kind, namespace: tm.Metadata.Namespace, name: tm.Metadata.Name}, nil
}

// rawItems returns the items of a list document, each as JSON.
func rawItems(doc []byte) ([][]byte, error) {
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := yaml.Unmarshal(doc, &list); err != nil {
		return nil, err
	}
	items := make([][]byte, len(list.Items))
	for i, it := range list.Items {
		items[i] = it
	}
	return items, nil
}

// isEmptyDocument reports a document of only blanks, comments and a null.
// It looks at lines, not at a parse: converting a 250 KB document to JSON
// to find it is not empty took half the time of reading a folder.
func isEmptyDocument(doc []byte) bool {
	var content []byte
	for line := range bytes.Lines(doc) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		if content != nil {
			return false // two lines of content
		}
		content = t
	}
	if content == nil {
		return true
	}
	if i := bytes.Index(content, []byte(" #")); i >= 0 {
		content = bytes.TrimSpace(content[:i])
	}
	switch string(content) {
	case "null", "~", "Null", "NULL":
		return true
	}
	return false
}

// listKinds are the lists a JSON document is read as directly, with the
// kind their items are taken for when they say none.
var listKinds = map[schema.GroupVersionKind]*schema.GroupVersionKind{
	corev1.SchemeGroupVersion.WithKind("List"):                   &endpointSliceGVK,
	discoveryv1.SchemeGroupVersion.WithKind("EndpointSliceList"): &endpointSliceGVK,
	corev1.SchemeGroupVersion.WithKind("ServiceList"):            &serviceGVK,
	corev1.SchemeGroupVersion.WithKind("NodeList"):               &nodeGVK,
}

// jsonList splits a JSON document that is one of listKinds into its raw
// items, in one pass of the standard JSON decoder. ok is false for
// anything else (YAML, another kind, invalid JSON): the general path reads
// it, and reports what is wrong.
func jsonList(doc []byte) (def *schema.GroupVersionKind, items [][]byte, ok bool) {
	t := bytes.TrimLeft(doc, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return nil, nil, false
	}
	var list struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(t, &list); err != nil {
		return nil, nil, false
	}
	gv, err := schema.ParseGroupVersion(list.APIVersion)
	if err != nil {
		return nil, nil, false
	}
	def, ok = listKinds[gv.WithKind(list.Kind)]
	if !ok {
		return nil, nil, false
	}
	items = make([][]byte, len(list.Items))
	for i, it := range list.Items {
		items[i] = it
	}
	return def, items, true
}
