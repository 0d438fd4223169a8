package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/edsync/edsync/render"
)

// sliceDoc is one EndpointSlice document of Service ns/web.
func sliceDoc(name, addr string) string { return fmt.Sprintf(sliceYAML, name, addr) }

const sliceYAML = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s
  namespace: ns
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - addresses: [%s]
`

func TestDecodeManifest(t *testing.T) {
	fixture := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name      string
		data      string
		want      []string // ns/name
		wantEmpty bool
		wantWarn  string
		wantErr   string

		wantServices, wantNodes []string
		wantSkipped             []string // objects of other kinds, as named in the log
	}{
		{name: "multi-document YAML", data: fixture("multi.yaml"), want: []string{"shop/web-abc12", "shop/web-def34"}},
		{name: "kubectl List", data: fixture("list.yaml"), want: []string{"shop/api-q8h2k"}},
		{name: "EndpointSliceList JSON, namespace defaulted", data: fixture("slicelist.json"), want: []string{"default/db-1"}},
		{
			name: "single JSON object",
			data: `{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"j","namespace":"ns"},"addressType":"IPv4","endpoints":[]}`,
			want: []string{"ns/j"},
		},
		{name: "empty file", data: "", wantEmpty: true},
		{name: "only comments", data: "# nothing yet\n---\n# still nothing\n", wantEmpty: true},
		{name: "empty List is not empty", data: "apiVersion: v1\nkind: List\nitems: []\n"},
		{
			name:     "unknown field is a warning",
			data:     strings.Replace(sliceDoc("x", "10.0.0.1"), "addressType:", "colour: blue\naddressType:", 1),
			want:     []string{"ns/x"},
			wantWarn: `unknown field "colour"`,
		},
		{name: "ConfigMap", data: fixture("configmap.yaml"), wantSkipped: []string{"v1 ConfigMap not-a-slice"}},
		{
			name: "other kinds next to slices are skipped, the slices kept",
			data: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: ns}\nspec: {replicas: 2}\n---\n" +
				sliceDoc("a", "10.0.0.1") +
				"---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: ns}\nsubsets: []\n---\n" +
				strings.Replace(sliceDoc("old", "10.0.0.2"), "discovery.k8s.io/v1", "discovery.k8s.io/v1beta1", 1) +
				"---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {colour: blue}\n",
			want: []string{"ns/a"},
			wantSkipped: []string{"apps/v1 Deployment ns/web", "v1 Endpoints ns/web", "discovery.k8s.io/v1beta1 EndpointSlice ns/old",
				"example.com/v1 Widget w"},
		},
		{
			name: "List with other kinds among its items",
			data: "apiVersion: v1\nkind: List\nitems:\n" +
				"- {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: ns}, spec: {containers: []}}\n" +
				"- {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: a, namespace: ns}, addressType: IPv4}\n" +
				"- {apiVersion: apps/v1, kind: Deployment, metadata: {name: d, namespace: ns}}\n" +
				"- {metadata: {name: b, namespace: ns}, addressType: IPv4}\n",
			want:        []string{"ns/a", "ns/b"},
			wantSkipped: []string{"v1 Pod ns/p", "apps/v1 Deployment ns/d"},
		},
		{
			name: "EndpointSliceList with other kinds among its items",
			data: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSliceList\nitems:\n" +
				"- {metadata: {name: a, namespace: ns}, addressType: IPv4}\n" +
				"- {apiVersion: apps/v1, kind: Deployment, metadata: {name: d, namespace: ns}, spec: {replicas: 1}}\n" +
				"- {apiVersion: discovery.k8s.io/v1beta1, kind: EndpointSlice, metadata: {name: old, namespace: ns}, addressType: IPv4}\n",
			want:        []string{"ns/a"},
			wantSkipped: []string{"apps/v1 Deployment ns/d", "discovery.k8s.io/v1beta1 EndpointSlice ns/old"},
		},
		{
			name:     "unknown field in a list item is a warning",
			data:     "apiVersion: discovery.k8s.io/v1\nkind: EndpointSliceList\nitems:\n- {metadata: {name: a, namespace: ns}, addressType: IPv4, colour: blue}\n",
			want:     []string{"ns/a"},
			wantWarn: `item 0: .*unknown field "colour"`,
		},
		{
			name:    "malformed slice among other kinds fails the whole file",
			data:    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n" + strings.Replace(sliceDoc("a", "10.0.0.1"), "addressType: IPv4", "addressType: [IPv4]", 1),
			wantErr: "document 2",
		},
		{
			name:    "malformed List item fails the whole file",
			data:    "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: a}, endpoints: 5}\n",
			wantErr: "List item 0",
		},
		{
			name: "Services and Nodes, alone and in Lists",
			data: sliceDoc("a", "10.0.0.1") + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\n" +
				"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Node, metadata: {name: n1}}\n- {apiVersion: v1, kind: Service, metadata: {name: api, namespace: ns}}\n" +
				"---\napiVersion: v1\nkind: NodeList\nitems: [{metadata: {name: n2}}]\n",
			want: []string{"ns/a"}, wantServices: []string{"default/web", "ns/api"}, wantNodes: []string{"n1", "n2"},
		},
		{name: "duplicate Node", data: "apiVersion: v1\nkind: NodeList\nitems: [{metadata: {name: nx}}, {metadata: {name: nx}}]\n", wantErr: "Node nx appears twice"},
		{name: "unknown kind", data: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlise\nmetadata: {name: x}\n", wantSkipped: []string{"discovery.k8s.io/v1 EndpointSlise x"}},
		{name: "no kind", data: "metadata: {name: x}\n", wantErr: "Kind"},
		{name: "no apiVersion", data: "kind: EndpointSlice\nmetadata: {name: x}\n", wantErr: "document 1"},
		{name: "missing name", data: strings.Replace(sliceDoc("x", "10.0.0.1"), "  name: x\n", "", 1), wantErr: "without metadata.name"},
		{name: "bad YAML", data: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: [\n", wantErr: "document 1"},
		{
			name:    "half-written second document fails the whole file",
			data:    sliceDoc("a", "10.0.0.1") + "---\n" + sliceDoc("b", "10.0.0.2")[:60],
			wantErr: "document 2",
		},
		{
			name:    "duplicate slice",
			data:    sliceDoc("a", "10.0.0.1") + "---\n" + sliceDoc("a", "10.0.0.2"),
			wantErr: "ns/a appears twice",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := decodeManifest([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, sl := range m.slices {
				got = append(got, sl.Namespace+"/"+sl.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("slices = %v, want %v", got, tt.want)
			}
			got = nil
			for _, s := range m.services {
				got = append(got, s.Namespace+"/"+s.Name)
			}
			if !slices.Equal(got, tt.wantServices) {
				t.Errorf("services = %v, want %v", got, tt.wantServices)
			}
			got = nil
			for _, n := range m.nodes {
				got = append(got, n.Name)
			}
			if !slices.Equal(got, tt.wantNodes) {
				t.Errorf("nodes = %v, want %v", got, tt.wantNodes)
			}
			if m.empty != tt.wantEmpty {
				t.Errorf("empty = %v, want %v", m.empty, tt.wantEmpty)
			}
			if w := strings.Join(m.warnings, "; "); (tt.wantWarn == "") != (w == "") || !regexp.MustCompile(tt.wantWarn).MatchString(w) {
				t.Errorf("warnings = %q, want %q", w, tt.wantWarn)
			}
			got = nil
			for _, o := range m.skipped {
				got = append(got, o.String())
			}
			if !slices.Equal(got, tt.wantSkipped) {
				t.Errorf("skipped = %q, want %q", got, tt.wantSkipped)
			}
		})
	}
}

// TestDecodeManifestSlims checks that manifests go through Slim like
// informer objects, so that both sources give render the same shape.
func TestDecodeManifestSlims(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "list.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	sl := m.slices[0]
	if sl.ManagedFields != nil || sl.OwnerReferences != nil || sl.UID != "" || sl.Kind != "" {
		t.Errorf("not slimmed: %+v", sl.ObjectMeta)
	}
	if sl.Annotations[corev1.EndpointsLastChangeTriggerTime] != "2026-03-01T10:00:00Z" {
		t.Errorf("lost metadata: %+v", sl.ObjectMeta)
	}
	// The saved resourceVersion (48211) is dropped: an edited file keeps
	// it, and the Store would take the edit for the object it already has.
	if sl.ResourceVersion != "" {
		t.Errorf("resourceVersion %q kept from the manifest", sl.ResourceVersion)
	}
	// The Pod's name is kept as the endpoint's hostname (render reads it
	// there), its targetRef shared.
	if ep := sl.Endpoints[0]; ep.TargetRef.UID != "" || ep.TargetRef.Name != "" || ep.TargetRef.FieldPath != render.RefNameInHostname ||
		ep.Hostname == nil || *ep.Hostname != "api-5c6b-xyz12" || *ep.Zone != "zone-b" {
		t.Errorf("endpoint = %+v", ep)
	}
}

// A document of blanks, comments and a null is empty; JSON documents
// separated by "---" are still split.
func TestDecodeManifestEmptyDocuments(t *testing.T) {
	m, err := decodeManifest([]byte(`{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}` + "\n---\n" +
		`{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}}` + "\n"))
	if err != nil || len(m.nodes) != 2 {
		t.Errorf("two JSON documents: %d nodes, %v", len(m.nodes), err)
	}
	for _, doc := range []string{"", "# nothing\n\n", "null\n", "# a\n~ # b\n"} {
		if m, err := decodeManifest([]byte(doc)); err != nil || !m.empty {
			t.Errorf("%q: empty %v, %v", doc, m.empty, err)
		}
	}
	if m, err := decodeManifest([]byte("# a\nnull: 1\n")); err == nil && m.empty {
		t.Error("a document with content was taken for empty")
	}
}
