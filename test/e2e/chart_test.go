package e2e

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// The chart is rendered with Helm's own library (loader, schema validation,
// engine, lint), as `helm template` and `helm lint` do, rather than its
// CLI: the library is compiled with this package (about a minute cold, the
// modules fetched from the Go module proxy like every other), where the CLI
// would be a second build of the same code plus a binary to cache and
// find. See docs/development.md.

const chartDir = "charts/edsync"

// kubeVersion is the e2e API server's, for the chart's kubeVersion check.
var kubeVersion = &common.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

// chartValueSets are the value sets the chart is linted, rendered and
// applied with: its defaults, and the others an operator reaches for.
func chartValueSets() map[string]map[string]any {
	return map[string]map[string]any{
		"defaults": nil,
		// An edsync that reads two namespaces only: Roles there, not a
		// ClusterRole for EndpointSlices.
		"scoped": {
			"rbac":   map[string]any{"namespaces": []any{"chart-shop", "chart-cache"}},
			"config": map[string]any{"namespace": []any{"chart-shop", "chart-cache"}, "topology": "zone", "watch-services": false, "log-level": "debug"},
		},
		// CDS, templates and the declared clusters of the README.
		"cds": {
			"config": map[string]any{
				"cds-file": "/var/run/edsync/eds/cds+clusters.json", "cds-debounce": "2s", "format": "yaml",
				"debounce": "100ms", "max-delay": "1s", "max-file-size": "8Mi",
				"clusters":         []any{map[string]any{"service": "chart-shop/web", "port": "http", "name": "shop-web"}},
				"cluster-template": map[string]any{"connect_timeout": "2s"},
				"cluster-templates": map[string]any{
					"h2": map[string]any{"typed_extension_protocol_options": map[string]any{
						"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
							"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
							"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}},
						}}},
				},
			},
		},
		// Monitoring on, pulled by digest, no node port, another folder.
		"monitoring": {
			"image":          map[string]any{"repository": "registry.example/edsync", "digest": "sha256:" + strings.Repeat("ab", 32)},
			"http":           map[string]any{"port": 9912, "hostPort": 0},
			"files":          map[string]any{"hostPath": "/run/envoy-eds", "mountPath": "/etc/envoy/eds"},
			"podMonitor":     map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
			"prometheusRule": map[string]any{"enabled": true},
			"dashboard":      map[string]any{"enabled": true},
			"tolerations":    []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "gateway", "effect": "NoSchedule"}},
			"nodeSelector":   map[string]any{"node-role.example/gateway": "true"},
		},
	}
}

// renderChart renders the chart as `helm template RELEASE --namespace ns`
// would, the schema checked: the objects, and NOTES.txt.
func renderChart(t *testing.T, release, ns string, vals map[string]any) ([]*unstructured.Unstructured, string, error) {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	chrt, err := loader.Load(filepath.Join(repo, chartDir))
	if err != nil {
		t.Fatalf("load %s: %v", chartDir, err)
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kubeVersion
	values, err := chartutil.ToRenderValuesWithSchemaValidation(chrt, vals,
		common.ReleaseOptions{Name: release, Namespace: ns, Revision: 1, IsInstall: true}, caps, false)
	if err != nil {
		return nil, "", err
	}
	files, err := engine.Render(chrt, values)
	if err != nil {
		return nil, "", err
	}
	var objs []*unstructured.Unstructured
	var notes string
	for _, name := range slices.Sorted(maps.Keys(files)) {
		switch {
		case strings.HasSuffix(name, "NOTES.txt"):
			notes = files[name]
			continue
		case !strings.HasSuffix(name, ".yaml"):
			continue
		}
		for _, doc := range strings.Split(files[name], "\n---") {
			js, err := yamlutil.ToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			if s := strings.TrimSpace(string(js)); s == "null" || s == "" {
				continue // a template that rendered nothing
			}
			obj := &unstructured.Unstructured{}
			if err := runtime.DecodeInto(unstructured.UnstructuredJSONScheme, js, obj); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			objs = append(objs, obj)
		}
	}
	return objs, notes, nil
}

// `helm lint` with each value set: no warning, no error.
func TestChartLint(t *testing.T) {
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for name, vals := range chartValueSets() {
		res := lint.RunAll(filepath.Join(repo, chartDir), vals, "edsync", lint.WithKubeVersion(kubeVersion))
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: %s", name, m)
			} else {
				t.Logf("%s: %s", name, m)
			}
		}
	}
}

// The schema refuses what edsync would refuse at start (a Pod in
// CrashLoopBackOff on every node), and what the chart owns, and the
// templates refuse RBAC that cannot work with the config: each value below
// fails `helm install` with a line naming it.
func TestChartSchemaRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string // in the error
	}{
		{"a duration without a unit", map[string]any{"config": map[string]any{"debounce": "50"}}, "debounce"},
		{"a negative duration", map[string]any{"config": map[string]any{"max-delay": "-1s"}}, "max-delay"},
		{"a duration in a source", map[string]any{"config": map[string]any{"source-stale-after": "five minutes"}}, "source-stale-after"},
		{"an unknown topology", map[string]any{"config": map[string]any{"topology": "nearest"}}, "topology"},
		{"an unknown format", map[string]any{"config": map[string]any{"format": "xml"}}, "format"},
		{"an unknown terminating mode", map[string]any{"config": map[string]any{"clusters": []any{map[string]any{"service": "a/b", "terminating": "keep"}}}}, "terminating"},
		{"a cluster without a Service", map[string]any{"config": map[string]any{"clusters": []any{map[string]any{"name": "x"}}}}, "service"},
		{"a Service not NAMESPACE/NAME", map[string]any{"config": map[string]any{"clusters": []any{map[string]any{"service": "web"}}}}, "service"},
		{"an unknown config key", map[string]any{"config": map[string]any{"debounce-time": "1s"}}, "debounce-time"},
		{"output-dir, which the chart sets", map[string]any{"config": map[string]any{"output-dir": "/x"}}, "output-dir"},
		{"http-addr, which the chart sets", map[string]any{"config": map[string]any{"http-addr": ":80"}}, "http-addr"},
		{"a relative CDS file", map[string]any{"config": map[string]any{"cds-file": "cds.json"}}, "cds-file"},
		{"a relative kubeconfig of a source", map[string]any{"config": map[string]any{"sources": []any{map[string]any{"name": "east", "kubeconfig": "east.yaml"}}}}, "kubeconfig"},
		{"an Envoy admin that is not http://", map[string]any{"config": map[string]any{"envoy-admin": "127.0.0.1:9901"}}, "envoy-admin"},
		{"a bad max-file-size", map[string]any{"config": map[string]any{"max-file-size": "16MB"}}, "max-file-size"},
		{"a relative mount path", map[string]any{"files": map[string]any{"mountPath": "eds"}}, "mountPath"},
		{"the node's root as the folder", map[string]any{"files": map[string]any{"hostPath": "/"}}, "hostPath"},
		{"a port out of range", map[string]any{"http": map[string]any{"port": 70000}}, "port"},
		{"a digest that is not sha256", map[string]any{"image": map[string]any{"digest": "latest"}}, "digest"},
		{"no image repository", map[string]any{"image": map[string]any{"repository": ""}}, "repository"},
		{"an unknown value", map[string]any{"hostNetwork": true}, "hostNetwork"},
		{"a bad namespace for a Role", map[string]any{"rbac": map[string]any{"namespaces": []any{"Shop"}}}, "namespaces"},
		{"a zero connect timeout", map[string]any{"config": map[string]any{"connect-timeout": "0s"}}, "connect-timeout"},
		{"a zone that is no label value", map[string]any{"config": map[string]any{"local-zone": "eu west"}}, "local-zone"},
		{"a source weight over 128", map[string]any{"config": map[string]any{"sources": []any{map[string]any{"name": "east", "in-cluster": true, "weight": 200}}}}, "weight"},
		{"a scrape interval that is no duration", map[string]any{"podMonitor": map[string]any{"interval": "30"}}, "interval"},
		// Not the schema's: the templates' own checks.
		{"Roles while the config watches every namespace", map[string]any{"rbac": map[string]any{"namespaces": []any{"shop"}}}, "rbac.namespaces"},
		{"a cluster outside the Roles' namespaces", map[string]any{"rbac": map[string]any{"namespaces": []any{"shop"}},
			"config": map[string]any{"clusters": []any{map[string]any{"service": "shop/web"}, map[string]any{"service": "cache/redis"}}}}, "namespace cache"},
		{"a CDS file outside the mounted folder", map[string]any{"config": map[string]any{"cds-file": "/tmp/cds.json"}}, "cds-file"},
	} {
		_, _, err := renderChart(t, "edsync", "edsync", tc.vals)
		if err == nil {
			t.Errorf("%s (%v): rendered", tc.name, tc.vals)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: the error does not name %s:\n%v", tc.name, tc.want, err)
		}
	}
	// Values edsync accepts render: no limit on file size, an https admin,
	// a weight of 0 (the default).
	for _, vals := range []map[string]any{
		{"config": map[string]any{"max-file-size": 0}},
		{"config": map[string]any{"envoy-admin": "https://127.0.0.1:9901"}},
		{"config": map[string]any{"sources": []any{map[string]any{"name": "east", "in-cluster": true, "weight": 0}}}},
		{"config": map[string]any{"connect-timeout": "250ms", "local-zone": "eu-west-1a"}, "podMonitor": map[string]any{"interval": "1m30s"}},
	} {
		if _, _, err := renderChart(t, "edsync", "edsync", vals); err != nil {
			t.Errorf("%v: %v", vals, err)
		}
	}
	// And each value set above renders.
	for name, vals := range chartValueSets() {
		if _, _, err := renderChart(t, "edsync", "edsync", vals); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The chart's output, for each value set, applied to the real API server
// with strict field validation (a dry run, then for real), the Prometheus
// Operator's PodMonitor and PrometheusRule CRDs installed first. Then
// edsync runs as the chart's ServiceAccount with exactly the chart's RBAC,
// args, environment and config, and syncs with nothing refused.
func TestChartAppliesAndRuns(t *testing.T) {
	installMonitoringCRDs(t)
	for _, ns := range []string{"chart-shop", "chart-cache"} {
		if err := cluster.EnsureNamespace(t.Context(), ns); err != nil {
			t.Fatal(err)
		}
	}
	sets := chartValueSets()
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		t.Run(name, func(t *testing.T) {
			// A release (and so cluster-scoped names) and a namespace
			// of its own: none clashes with the examples' RBAC.
			release, ns := "edsync-"+name, "edsync-"+name
			if err := cluster.EnsureNamespace(t.Context(), ns); err != nil {
				t.Fatal(err)
			}
			objs, notes, err := renderChart(t, release, ns, sets[name])
			if err != nil {
				t.Fatal(err)
			}
			applyObjects(t, objs)
			if t.Failed() {
				return
			}
			checkStoredDaemonSet(t, ns, release, sets[name])
			checkNotes(t, notes, objs)
			checkConfigAccepted(t, objs)
			if name == "defaults" || name == "scoped" {
				runChartEdsync(t, name, objs)
			}
		})
	}
}

// checkStoredDaemonSet reads the DaemonSet back: what the API server kept
// is what the values asked for (a field it does not know for this version
// would have been dropped, not refused).
func checkStoredDaemonSet(t *testing.T, ns, name string, vals map[string]any) {
	t.Helper()
	ds, err := cluster.Client.AppsV1().DaemonSets(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 1 {
		t.Fatalf("containers %d, init containers %d: want edsync and own-folder", len(spec.Containers), len(spec.InitContainers))
	}
	c := spec.Containers[0]
	wantHostPort := int32(9911)
	if h, ok := vals["http"].(map[string]any); ok {
		wantHostPort = int32(h["hostPort"].(int))
	}
	if len(c.Ports) != 1 || c.Ports[0].HostPort != wantHostPort {
		t.Errorf("ports %+v: want hostPort %d", c.Ports, wantHostPort)
	}
	if _, ok := vals["tolerations"]; !ok {
		// Every taint tolerated: edsync runs wherever Envoys run.
		if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
			t.Errorf("tolerations %+v: want one that tolerates every taint", spec.Tolerations)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("edsync's securityContext %+v: want uid 65532, read-only root, no privilege escalation, drop ALL", sc)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false")
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("probe %+v: want an HTTP GET on port http", p)
		}
	}
}

// checkNotes: NOTES.txt names the folder the DaemonSet mounts and the
// command that prints Envoy's clusters.
func checkNotes(t *testing.T, notes string, objs []*unstructured.Unstructured) {
	t.Helper()
	var ds appsv1.DaemonSet
	objectOf(t, objs, "DaemonSet", &ds)
	mount := ds.Spec.Template.Spec.Containers[0].VolumeMounts[0].MountPath
	var cm corev1.ConfigMap
	objectOf(t, objs, "ConfigMap", &cm)
	var config struct{ Format string }
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &config); err != nil {
		t.Fatal(err)
	}
	file, err := writer.LayoutFolders.Path(mount, "<cluster>", writer.Format(cmp.Or(config.Format, "json")))
	if err != nil {
		t.Fatal(err)
	}
	file = strings.Replace(file, "%3Ccluster%3E", "<cluster>", 1) // the placeholder, not a name
	for _, want := range []string{"path: " + file + "\n", "mountPath: " + mount, "envoy-config --config /etc/edsync/config.yaml"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt does not say %q:\n%s", want, notes)
		}
	}
}

// objectOf converts the object of kind in objs (the first).
func objectOf(t *testing.T, objs []*unstructured.Unstructured, kind string, into any) {
	t.Helper()
	objectOfName(t, objs, kind, "", into)
}

// objectOfName converts the object of kind and name in objs (any name if
// name is "").
func objectOfName(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	i := slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool {
		return o.GetKind() == kind && (name == "" || o.GetName() == name)
	})
	if i < 0 {
		t.Fatalf("no %s %s among the objects", kind, name)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(objs[i].Object, into, true); err != nil {
		t.Fatal(err)
	}
}

// runChartEdsync runs edsync as the rendered ServiceAccount, with the
// rendered RBAC (written to a file for the harness), the DaemonSet's args
// and environment, and the ConfigMap's config with the output folder in a
// temporary one. A Service in each namespace it may read gets a file with
// its endpoints; the API server refuses it nothing.
func runChartEdsync(t *testing.T, name string, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := t.Context()
	var rbac []string
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			data, err := yaml.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			rbac = append(rbac, string(data))
		}
	}
	rbacFile := filepath.Join(t.TempDir(), "rbac.yaml")
	if err := os.WriteFile(rbacFile, []byte(strings.Join(rbac, "---\n")), 0o644); err != nil {
		t.Fatal(err)
	}

	var ds appsv1.DaemonSet
	objectOf(t, objs, "DaemonSet", &ds)
	var cm corev1.ConfigMap
	objectOf(t, objs, "ConfigMap", &cm)
	c := ds.Spec.Template.Spec.Containers[0]
	out := t.TempDir()
	configFile, rendered := configFileOf(t, cm, out)
	if rendered["output-dir"] != c.VolumeMounts[0].MountPath {
		t.Errorf("output-dir %v, the folder mounted at %s", rendered["output-dir"], c.VolumeMounts[0].MountPath)
	}
	node := "chart-" + name
	if err := cluster.CreateNode(ctx, node, "zone-a"); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			if v != "/etc/edsync/config.yaml" || c.VolumeMounts[1].MountPath != "/etc/edsync" {
				t.Fatalf("--config %s is not the mounted ConfigMap's config.yaml", v)
			}
			a = "--config=" + configFile
		}
		args = append(args, a)
	}
	args = append(args, podEnvArgs(t, c.Env, node, "zone-a", map[string]string{"EDSYNC_HTTP_ADDR": "127.0.0.1:0"})...)

	// A ready Pod behind a Service in each namespace the RBAC lets it read
	// (every one for a ClusterRole: chart-shop then).
	namespaces := []string{"chart-shop"}
	if name == "scoped" {
		namespaces = []string{"chart-shop", "chart-cache"}
	}
	files := harness.WatchDir(t, out)
	var want []struct{ cluster, endpoint string }
	for i, ns := range namespaces {
		svc := "web-" + name
		labels := map[string]string{"app": svc}
		if _, err := cluster.CreateService(ctx, ns, svc, labels, harness.TCPPort("http", 80, intstr.FromInt32(8080))); err != nil {
			t.Fatal(err)
		}
		ip := fmt.Sprintf("10.79.%d.%d", len(name), i+1)
		if err := cluster.CreateReadyPods(ctx, ns, node, svc, labels, ip); err != nil {
			t.Fatal(err)
		}
		if err := cluster.WaitSlices(ctx, ns, svc, settle, ip); err != nil {
			t.Fatal(err)
		}
		want = append(want, struct{ cluster, endpoint string }{ns + "/" + svc + "/http", ip + ":8080 HEALTHY"})
	}
	sa := objs[slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "ServiceAccount" })]
	user := "system:serviceaccount:" + sa.GetNamespace() + ":" + sa.GetName()
	for _, ns := range namespaces {
		deadline := time.Now().Add(10 * time.Second)
		for !mayList(t, user, ns) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	e := cluster.StartEdsyncAs(t, rbacFile, args...)
	for _, w := range want {
		files.WaitEndpoints(t, edsFile(t, w.cluster, writer.FormatJSON), w.cluster, settle, w.endpoint)
	}
	e.WaitLog(t, settle, "Nodes synced")
	if name == "scoped" {
		for _, ns := range []string{"default", "kube-system"} {
			if mayList(t, user, ns) {
				t.Errorf("%s may list EndpointSlices in %s, which rbac.namespaces does not name", user, ns)
			}
		}
	}
}

// promOperatorVersion is the Prometheus Operator whose CRDs the chart's
// PodMonitor and PrometheusRule are applied against: the newest release the
// Go module proxy serves here whose module holds the CRD files.
const promOperatorVersion = "v0.85.0"

// installMonitoringCRDs applies the Prometheus Operator's PodMonitor and
// PrometheusRule CRDs, taken from its module (fetched through the Go module
// proxy, cached in the module cache), and waits until the API server
// serves both kinds.
func installMonitoringCRDs(t *testing.T) {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator@"+promOperatorVersion)
	cmd.Dir = t.TempDir() // outside any module: nothing of ours changes
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download prometheus-operator: %v\n%s%s", err, out, stderrOf(err))
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v: %s", err, out)
	}
	var crds []*unstructured.Unstructured
	for _, kind := range []string{"podmonitors", "prometheusrules"} {
		crds = append(crds, readManifests(t, filepath.Join(mod.Dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+kind+".yaml"))...)
	}
	applyObjects(t, crds)
	deadline := time.Now().Add(settle)
	for _, kind := range []string{"PodMonitor", "PrometheusRule"} {
		for {
			resources, err := cluster.Client.Discovery().ServerResourcesForGroupVersion("monitoring.coreos.com/v1")
			if err == nil && slices.ContainsFunc(resources.APIResources, func(r metav1.APIResource) bool { return r.Kind == kind }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the API server does not serve %s after its CRD was applied: %v", kind, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// checkConfigAccepted runs `edsync envoy-config` with the rendered config
// (its output folder in a temporary one) and the DaemonSet's environment:
// edsync accepts every key, the cluster templates included, and prints
// Envoy's clusters.
func checkConfigAccepted(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	var cm corev1.ConfigMap
	objectOf(t, objs, "ConfigMap", &cm)
	file, _ := configFileOf(t, cm, t.TempDir())
	cmd := exec.Command(cluster.Edsync, "envoy-config", "--config", file, "--from-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "EDSYNC_NODE_NAME=node-1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("edsync refuses the chart's config: %v\n%s\nconfig.yaml:\n%s", err, out, cm.Data["config.yaml"])
	}
}

// configFileOf writes the ConfigMap's config.yaml to a file of the test's
// with output-dir set to out, for an edsync run here; it returns the file
// and the config as rendered.
func configFileOf(t *testing.T, cm corev1.ConfigMap, out string) (string, map[string]any) {
	t.Helper()
	var rendered, config map[string]any
	for _, m := range []*map[string]any{&rendered, &config} {
		if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), m); err != nil {
			t.Fatalf("the rendered config.yaml: %v", err)
		}
	}
	config["output-dir"] = out
	data, err := json.Marshal(config) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return file, rendered
}
