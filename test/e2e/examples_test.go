package e2e

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestExamplesKubernetesManifestsApply applies the sidecar example
// (examples/kubernetes/rbac.yaml, then its kustomization's output), then every manifest
// under examples/kubernetes/node-shared/ and cds/, to
// the real kube-apiserver as `kubectl apply --server-side` would, each object
// first as a dry run (DryRun: All) and then for real, with strict field
// validation: a misspelt or misplaced field, an invalid value or a refused
// object fails the test. Each folder's rbac.yaml goes first, as its README says,
// into the namespaces of the example's Services (made here as a cluster would
// have them). With no kubelet the Pods never run; the API server's validation
// and admission of the Deployments and the DaemonSet is what is checked.
func TestExamplesKubernetesManifestsApply(t *testing.T) {
	ctx := t.Context()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	sidecarNamespaces(t)
	// The sidecar: rbac.yaml, then what `kubectl apply -k` applies (the
	// sidecar component on the example's Envoy Deployment).
	applyManifests(t, []string{filepath.Join(repo, "examples", "kubernetes", "rbac.yaml")})
	built := kustomizeBuild(t, filepath.Join(repo, "examples", "kubernetes"))
	if len(built) != 4 {
		t.Errorf("the sidecar example builds %d objects, want the Deployment, two ConfigMaps and the ServiceAccount", len(built))
	}
	applyObjects(t, built)
	// The node-shared example's manifests, rbac.yaml first.
	dir := filepath.Join(repo, "examples", "kubernetes", "node-shared")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rbac := filepath.Join(dir, "rbac.yaml")
	slices.SortFunc(files, func(a, b string) int { // rbac.yaml first, then by name
		switch {
		case a == rbac:
			return -1
		case b == rbac:
			return 1
		}
		return strings.Compare(a, b)
	})
	if len(files) < 4 || files[0] != rbac {
		t.Fatalf("manifests %q: want rbac.yaml and the Pods'", files)
	}
	applyManifests(t, files)
	if t.Failed() {
		return
	}
	// The CDS variant: the same Envoy and component, its own two ConfigMaps.
	cds := kustomizeBuild(t, filepath.Join(repo, "examples", "kubernetes", "cds"))
	for _, name := range []string{"edsync-config", "envoy-bootstrap"} {
		var built, file corev1.ConfigMap
		objectOfName(t, cds, "ConfigMap", name, &built)
		fromManifest(t, filepath.Join(repo, "examples", "kubernetes", "cds", name+".yaml"), &file)
		if !maps.Equal(built.Data, file.Data) {
			t.Errorf("the cds variant's ConfigMap %s is not cds/%s.yaml's", name, name)
		}
	}
	applyObjects(t, cds)

	// A field the API server does not know for this version is dropped,
	// not refused, when a feature gate is off: check that the native
	// sidecar and its probe survived, and the DaemonSet's node port.
	dep, err := cluster.Client.AppsV1().Deployments("default").Get(ctx, "gateway", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := dep.Spec.Template.Spec
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].RestartPolicy == nil ||
		*spec.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways || spec.InitContainers[0].StartupProbe == nil {
		t.Errorf("the stored Deployment lost the native sidecar or its startup probe: %+v", spec.InitContainers)
	}
	ds, err := cluster.Client.AppsV1().DaemonSets("edsync").Get(ctx, "edsync", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := ds.Spec.Template.Spec.Containers; len(c) != 1 || len(c[0].Ports) != 1 || c[0].Ports[0].HostPort != 9911 {
		t.Errorf("the stored DaemonSet lost edsync's hostPort: %+v", c)
	}
}

// applyManifests applies the objects of the files in order, each as a dry
// run and then for real.
func applyManifests(t *testing.T, files []string) {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, f := range files {
		objs = append(objs, readManifests(t, f)...)
	}
	applyObjects(t, objs)
}

// applyObjects applies objs in order, each as a dry run and then for real,
// and stops at the first refused.
func applyObjects(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))

	for _, obj := range objs {
		applyObject(t, dyn, mapper, obj)
		if t.Failed() {
			return
		}
	}
}

// applyObject applies obj as a dry run, then for real (so that a Namespace
// exists before the objects after it are tried).
func applyObject(t *testing.T, dyn *dynamic.DynamicClient, mapper *restmapper.DeferredDiscoveryRESTMapper, obj *unstructured.Unstructured) {
	t.Helper()
	gvk := obj.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s %s: %v", gvk, obj.GetName(), err)
	}
	res := dyn.Resource(m.Resource)
	var ri dynamic.ResourceInterface = res
	if m.Scope.Name() == "namespace" {
		if obj.GetNamespace() == "" {
			t.Errorf("%s %s has no namespace: it would land in whatever namespace kubectl is set to", gvk.Kind, obj.GetName())
		}
		ri = res.Namespace(obj.GetNamespace())
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, dryRun := range []bool{true, false} {
		// Strict: an unknown or duplicate field is an error, not a
		// warning (apply refuses unknown fields anyway; this says so).
		opts := metav1.PatchOptions{FieldManager: "edsync-e2e", Force: new(true), FieldValidation: "Strict"}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Patch(t.Context(), obj.GetName(), types.ApplyPatchType, data, opts); err != nil {
			t.Errorf("apply %s %s/%s (dry run %v): %v", gvk.Kind, obj.GetNamespace(), obj.GetName(), dryRun, err)
			return
		}
	}
}

// readManifests decodes every object of a multi-document YAML file.
func readManifests(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	docs, err := harness.YAMLDocuments(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, doc := range docs {
		js, err := yamlutil.ToJSON(doc)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		obj := &unstructured.Unstructured{}
		if err := runtime.DecodeInto(unstructured.UnstructuredJSONScheme, js, obj); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, obj)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no objects", path)
	}
	return out
}

// sidecarNamespaces makes the namespaces the sidecar example's rbac.yaml
// has Roles in: those of the example's Services, which a cluster has
// before edsync's RBAC is applied there.
func sidecarNamespaces(t *testing.T) []string {
	t.Helper()
	r, err := harness.LoadRBAC(harness.SidecarRBACFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, role := range r.Roles {
		if !slices.Contains(out, role.Namespace) {
			out = append(out, role.Namespace)
			if err := cluster.EnsureNamespace(t.Context(), role.Namespace); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestExamplesVMKubeconfigScript runs examples/vm/make-kubeconfig.sh with
// kubectl against the real API server (as its admin), then edsync --once
// with the kubeconfig it printed and the VM's settings (edsync.env, the
// unit's flags): the token authenticates as the edsync ServiceAccount and
// rbac.yaml's Roles let it sync the namespaces edsync.env names.
func TestExamplesVMKubeconfigScript(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	ctx := t.Context()
	// Creates rbac.yaml's objects, as the README says to first.
	sidecarNamespaces(t)
	if _, err := cluster.ServiceAccountKubeconfig(ctx, harness.SidecarRBACFile); err != nil {
		t.Fatal(err)
	}
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := exec.CommandContext(ctx, filepath.Join(repo, "examples", "vm", "make-kubeconfig.sh"))
	script.Env = append(os.Environ(), "KUBECONFIG="+cluster.AdminKubeconfig, "KUBECTL="+kubectl, "DURATION=1h")
	var stderr bytes.Buffer
	script.Stderr = &stderr
	kubeconfig, err := script.Output()
	if err != nil {
		t.Fatalf("make-kubeconfig.sh: %v\n%s", err, stderr.String())
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	// The admin kubeconfig's client certificate must not have leaked in:
	// edsync is to run as the ServiceAccount.
	if bytes.Contains(kubeconfig, []byte("client-certificate")) || !bytes.Contains(kubeconfig, []byte("token: ")) {
		t.Fatalf("the kubeconfig is not a token kubeconfig:\n%s", kubeconfig)
	}

	// The unit's command (edsync.service: --kubeconfig and --output-dir,
	// here the script's kubeconfig and a folder of the test's) with
	// edsync.env as its environment, once; off the VM's port.
	env, err := os.ReadFile(filepath.Join(repo, "examples", "vm", "edsync.env"))
	if err != nil {
		t.Fatal(err)
	}
	run := exec.CommandContext(ctx, cluster.Edsync)
	var clusters []string
	for line := range strings.Lines(string(env)) {
		if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
			run.Env = append(run.Env, line)
			if v, ok := strings.CutPrefix(line, "EDSYNC_CLUSTER="); ok {
				clusters = strings.Split(v, ",")
			}
		}
	}
	if len(clusters) == 0 {
		t.Fatal("edsync.env declares no EDSYNC_CLUSTER")
	}
	out := t.TempDir()
	run.Args = append(run.Args, "--kubeconfig", path, "--output-dir", out, "--once", "--sync-timeout", "30s", "--http-addr", "off")
	run.WaitDelay = 5 * time.Second
	logs, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("edsync --once with the script's kubeconfig and edsync.env: %v\n%s", err, logs)
	}
	if lines := harness.ForbiddenLines(string(logs)); len(lines) > 0 {
		t.Errorf("the API server refused edsync: %s does not grant what edsync.env needs:\n%s", harness.SidecarRBACFile, strings.Join(lines, "\n"))
	}
	for _, c := range clusters {
		if _, err := os.Stat(filepath.Join(out, edsFile(t, c, writer.FormatJSON))); err != nil {
			t.Errorf("edsync --once wrote no file for its declared cluster %s: %v\n%s", c, err, logs)
		}
	}
}

// kustomizeBuild is `kubectl kustomize dir`, with kustomize's own library
// (sigs.k8s.io/kustomize/api, which kubectl embeds).
func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range m.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := runtime.DecodeInto(unstructured.UnstructuredJSONScheme, js, obj); err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		out = append(out, obj)
	}
	return out
}
