package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestExamplesSidecarRBAC runs the sidecar example's edsync as its
// ServiceAccount with exactly rbac.yaml's objects (Roles in the namespaces
// its config names, a ClusterRole for Nodes only): the Deployment's args
// and environment as kustomize builds them (the sidecar component's), and
// edsync.yaml's config, with the output folder in one of the test's. Every cluster of the config gets its Service's
// endpoints, read with watch-services and the Pod's Node, and the API
// server refuses edsync nothing (StartEdsyncAs fails the test on a
// "forbidden" line): the Roles are enough. The ServiceAccount can read
// EndpointSlices in those namespaces, and not in default or kube-system.
func TestExamplesSidecarRBAC(t *testing.T) {
	ctx := t.Context()
	c := cluster
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}

	// The example's Deployment and edsync's config, as kustomize builds them.
	example := kustomizeBuild(t, filepath.Join(repo, "examples", "kubernetes"))
	var dep appsv1.Deployment
	objectOf(t, example, "Deployment", &dep)
	i := slices.IndexFunc(dep.Spec.Template.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "edsync" })
	if i < 0 {
		t.Fatal("the example's Deployment has no edsync init container")
	}
	sidecar := dep.Spec.Template.Spec.InitContainers[i]
	var cm corev1.ConfigMap
	objectOfName(t, example, "ConfigMap", "edsync-config", &cm)
	js, err := yamlutil.ToJSON([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	var config map[string]any
	if err := json.Unmarshal(js, &config); err != nil {
		t.Fatal(err)
	}
	var clusters []struct{ Service, Port, Name string }
	if data, err := json.Marshal(config["clusters"]); err != nil || json.Unmarshal(data, &clusters) != nil || len(clusters) == 0 {
		t.Fatalf("edsync-config.yaml: clusters %v: want a list of service, port, name", config["clusters"])
	}

	// The Services' namespaces exist before the RBAC, as in a cluster (a
	// namespace the config names but rbac.yaml has no Role in too: edsync
	// is then refused there).
	var namespaces []string
	for _, cl := range clusters {
		if ns, _, _ := strings.Cut(cl.Service, "/"); !slices.Contains(namespaces, ns) {
			namespaces = append(namespaces, ns)
			if err := c.EnsureNamespace(ctx, ns); err != nil {
				t.Fatal(err)
			}
		}
	}
	sidecarNamespaces(t)
	if _, err := c.ServiceAccountKubeconfig(ctx, harness.SidecarRBACFile); err != nil {
		t.Fatal(err)
	}
	rbac, err := harness.LoadRBAC(harness.SidecarRBACFile)
	if err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + rbac.ServiceAccount.Namespace + ":" + rbac.ServiceAccount.Name

	// A Node for the Pod's EDSYNC_NODE_NAME, and each Service of the
	// config with a port per cluster and two ready Pods there.
	const node = "sidecar-rbac"
	if err := c.CreateNode(ctx, node, "zone-a"); err != nil {
		t.Fatal(err)
	}
	ports := map[string][]corev1.ServicePort{} // namespace/name: a port per cluster
	targetPort := map[string]int32{}           // cluster: its endpoints' port
	for _, cl := range clusters {
		if cl.Name == "" {
			t.Fatalf("cluster of %s has no name: the test needs the file's name", cl.Service)
		}
		p := int32(8080 + len(ports[cl.Service]))
		ports[cl.Service] = append(ports[cl.Service], harness.TCPPort(cl.Port, p-8000, intstr.FromInt32(p)))
		targetPort[cl.Name] = p
	}
	ips := map[string][]string{} // namespace/name: its Pods'
	for n, key := range slices.Sorted(maps.Keys(ports)) {
		ns, name, _ := strings.Cut(key, "/")
		labels := map[string]string{"app": name}
		if _, err := c.CreateService(ctx, ns, name, labels, ports[key]...); err != nil {
			t.Fatal(err)
		}
		ips[key] = []string{fmt.Sprintf("10.78.%d.1", n+1), fmt.Sprintf("10.78.%d.2", n+1)}
		if err := c.CreateReadyPods(ctx, ns, node, name, labels, ips[key]...); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitSlices(ctx, ns, name, settle, ips[key]...); err != nil {
			t.Fatal(err)
		}
	}

	// edsync as in the Pod: its args, with the config file and an address
	// of its own; its environment as flags, the downward API's node name
	// being the Node above, and the output folder in out.
	out, dir := t.TempDir(), t.TempDir()
	data, err := json.Marshal(config) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	args := slices.Clone(sidecar.Args)
	for i := range args {
		switch {
		case i > 0 && args[i-1] == "--config":
			args[i] = configFile
		case i > 0 && args[i-1] == "--http-addr":
			args[i] = "127.0.0.1:0"
		}
	}
	args = append(args, podEnvArgs(t, sidecar.Env, node, "zone-a", map[string]string{"EDSYNC_OUTPUT_DIR": out, "EDSYNC_HTTP_ADDR": "127.0.0.1:0"})...)
	// The authorizer follows the Roles' creation through its caches: let it
	// catch up (a namespace without a Role fails edsync below, not here).
	for _, ns := range namespaces {
		deadline := time.Now().Add(10 * time.Second)
		for !mayList(t, user, ns) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	files := harness.WatchDir(t, out)
	e := c.StartEdsyncAs(t, harness.SidecarRBACFile, args...)
	for _, cl := range clusters {
		var endpoints []string
		for _, ip := range ips[cl.Service] {
			endpoints = append(endpoints, fmt.Sprintf("%s:%d HEALTHY", ip, targetPort[cl.Name]))
		}
		files.WaitEndpoints(t, edsFile(t, cl.Name, writer.FormatJSON), cl.Name, settle, endpoints...)
	}
	// The first sync waits for the Services and the Node too: both were
	// read, as this ServiceAccount.
	e.WaitLog(t, settle, "Services synced")
	e.WaitLog(t, settle, "Nodes synced")

	// And no more than that: the ServiceAccount reads EndpointSlices in the
	// config's namespaces, not in others.
	for _, ns := range []string{"default", "kube-system"} {
		if mayList(t, user, ns) {
			t.Errorf("%s may list EndpointSlices in namespace %s, which the config does not name", user, ns)
		}
	}
}

// mayList asks the API server's authorizer whether user may list
// EndpointSlices in namespace ns.
func mayList(t *testing.T, user, ns string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"}}}
	got, err := cluster.Client.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got.Status.Allowed
}

// fromManifest reads a one-object manifest into a typed object.
func fromManifest(t *testing.T, path string, into any) {
	t.Helper()
	objs := readManifests(t, path)
	if len(objs) != 1 {
		t.Fatalf("%s: %d objects, want one", path, len(objs))
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(objs[0].Object, into, true); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// podEnvArgs turns an edsync container's environment into the flags it
// stands for (EDSYNC_X is --x), as the kubelet fills it in for a Pod on
// node in zone: the downward API's spec.nodeName and the Pod's zone label.
// override replaces plain values (a folder or an address of the test's);
// a value the test cannot stand in for fails it.
func podEnvArgs(t *testing.T, env []corev1.EnvVar, node, zone string, override map[string]string) []string {
	t.Helper()
	var args []string
	for _, e := range env {
		flag, ok := strings.CutPrefix(e.Name, "EDSYNC_")
		if !ok {
			t.Fatalf("env %s: the test knows only EDSYNC_* variables", e.Name)
		}
		v, ok := override[e.Name]
		switch {
		case ok:
		case e.ValueFrom == nil:
			v = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			v = node
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.labels['topology.kubernetes.io/zone']":
			v = zone
		default:
			t.Fatalf("env %s: the test knows only spec.nodeName and the zone label from the downward API", e.Name)
		}
		args = append(args, "--"+strings.ReplaceAll(strings.ToLower(flag), "_", "-"), v)
	}
	return args
}
