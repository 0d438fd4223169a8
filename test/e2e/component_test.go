package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/edsync/edsync/test/e2e/harness"
)

// The sidecar component on a Deployment of the user's own (another name,
// namespace and image, a second container): kustomize adds edsync, its
// volumes, ServiceAccount and the user's generated config, and the output
// applies to the API server with strict field validation. Only the
// container named envoy mounts the files; the other gets nothing; edsync's
// token goes to edsync alone.
func TestSidecarComponentOnYourDeployment(t *testing.T) {
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	component, err := filepath.Rel(dir, filepath.Join(repo, "kustomize", "sidecar"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kustomization.yaml", `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: team-edge
resources: [edge.yaml]
components: [`+component+`]
configMapGenerator:
- name: edsync-config
  files: [config.yaml=edsync.yaml]
  options: {disableNameSuffixHash: true}
images:
- {name: edsync, newName: registry.example/platform/edsync, newTag: "1.2.3"}
`)
	write("edsync.yaml", "namespace: [team-edge]\nwatch-services: true\n")
	write("edge.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: edge}
spec:
  selector: {matchLabels: {app: edge}}
  template:
    metadata: {labels: {app: edge}}
    spec:
      containers:
      - name: envoy
        image: envoyproxy/envoy:v1.40.0
      - name: log-shipper
        image: example/shipper:1
`)
	objs := kustomizeBuild(t, dir)
	if err := cluster.EnsureNamespace(t.Context(), "team-edge"); err != nil {
		t.Fatal(err)
	}
	applyObjects(t, objs)

	var dep appsv1.Deployment
	objectOf(t, objs, "Deployment", &dep)
	spec := dep.Spec.Template.Spec
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != "edsync" ||
		spec.InitContainers[0].Image != "registry.example/platform/edsync:1.2.3" {
		t.Fatalf("init containers %+v: want edsync, on the user's image", spec.InitContainers)
	}
	if spec.ServiceAccountName != "edsync" || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("serviceAccountName %q, automount %v: want edsync's, not mounted in every container", spec.ServiceAccountName, spec.AutomountServiceAccountToken)
	}
	for _, c := range spec.Containers {
		i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "edsync-files" })
		switch c.Name {
		case "envoy":
			if i < 0 || !c.VolumeMounts[i].ReadOnly || c.VolumeMounts[i].MountPath != "/var/run/edsync" {
				t.Errorf("envoy's mounts %+v: want edsync-files read-only at /var/run/edsync", c.VolumeMounts)
			}
		default:
			if len(c.VolumeMounts) > 0 {
				t.Errorf("container %s mounts %+v: the component touches only envoy's", c.Name, c.VolumeMounts)
			}
		}
	}
	var sa corev1.ServiceAccount
	objectOf(t, objs, "ServiceAccount", &sa)
	var cm corev1.ConfigMap
	objectOf(t, objs, "ConfigMap", &cm)
	if sa.Namespace != "team-edge" || cm.Name != "edsync-config" || cm.Namespace != "team-edge" || cm.Data["config.yaml"] == "" {
		t.Errorf("ServiceAccount %s/%s, ConfigMap %s/%s: want both in the user's namespace, the config under its name", sa.Namespace, sa.Name, cm.Namespace, cm.Name)
	}
}
