package main

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const nodeShared = "examples/kubernetes/node-shared/"

// hostPathOf returns the node folder a container mounts at path, "" if none.
func hostPathOf(spec corev1.PodSpec, c corev1.Container, path string) (hostPath string, readOnly bool) {
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.HostPath != nil {
				return filepath.Join(v.HostPath.Path, rel), m.ReadOnly
			}
		}
	}
	return "", false
}

// The node-shared example fits together: edsync's args parse with its
// config; it writes into a hostPath folder that the gateway's Envoy mounts
// read-only where its bootstrap's files are; the gateway waits on the node
// address and port where edsync serves /readyz; edsync publishes the
// clusters of that bootstrap (the sidecar example's, checked against
// envoy-config by TestKubernetesExampleEnvoyBootstrap).
func TestKubernetesNodeSharedExample(t *testing.T) {
	var ds appsv1.DaemonSet
	readObject(t, nodeShared+"daemonset.yaml", &ds)
	spec := ds.Spec.Template.Spec
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == "edsync" })
	if i < 0 {
		t.Fatal("no container named edsync in the DaemonSet")
	}
	c := spec.Containers[i]
	var cm corev1.ConfigMap
	readObject(t, nodeShared+"edsync-config.yaml", &cm)
	cfg, err := parseContainerArgs(t, c, cm)
	if err != nil {
		t.Fatalf("edsync's args %q do not parse: %v", c.Args, err)
	}
	if cfg.nodes.Name != "node-1" {
		t.Errorf("node name %q: want the Pod's spec.nodeName (EDSYNC_NODE_NAME)", cfg.nodes.Name)
	}
	folder, ro := hostPathOf(spec, c, cfg.outputDir)
	if folder == "" || ro {
		t.Fatalf("edsync does not mount a hostPath read-write at its output-dir %s", cfg.outputDir)
	}
	own := slices.IndexFunc(spec.InitContainers, func(c corev1.Container) bool {
		if len(c.Command) != 3 || c.Command[0] != "chown" || c.Command[1] != "65532:65532" {
			return false
		}
		p, _ := hostPathOf(spec, c, c.Command[2])
		return p == folder
	})
	if own < 0 {
		t.Errorf("no init container hands %s to edsync's user 65532", folder)
	}
	_, port, err := net.SplitHostPort(cfg.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Ports) != 1 || fmt.Sprint(c.Ports[0].HostPort) != port || fmt.Sprint(c.Ports[0].ContainerPort) != port {
		t.Errorf("ports %+v: want --http-addr's port %s on the container and the node", c.Ports, port)
	}

	var gw appsv1.Deployment
	readObject(t, nodeShared+"gateway.yaml", &gw)
	gspec := gw.Spec.Template.Spec
	var envoyCM corev1.ConfigMap
	readObject(t, "examples/kubernetes/envoy-bootstrap.yaml", &envoyCM)
	boot := parseBootstrap(t, "envoy-bootstrap.yaml", []byte(envoyCM.Data["envoy.yaml"]))
	for _, cl := range boot.GetStaticResources().GetClusters() {
		path := cl.GetEdsClusterConfig().GetEdsConfig().GetPathConfigSource().GetPath()
		if path == "" {
			continue
		}
		for _, e := range gspec.Containers {
			// The output folder: the cluster's file is in a folder of its own there.
			if p, ro := hostPathOf(gspec, e, filepath.Dir(filepath.Dir(path))); p != folder || !ro {
				t.Errorf("container %s reads %s but mounts %q (read-only %v) there, want the node folder %s read-only", e.Name, path, p, ro, folder)
			}
		}
	}
	if len(gspec.InitContainers) != 1 {
		t.Fatalf("gateway: %d init containers, want the wait for edsync", len(gspec.InitContainers))
	}
	wait := gspec.InitContainers[0]
	if cmd := strings.Join(wait.Command, " "); !strings.Contains(cmd, "http://$(HOST_IP):"+port+"/readyz") {
		t.Errorf("the gateway waits with %q, want a poll of http://$(HOST_IP):%s/readyz", cmd, port)
	}
	if len(wait.Env) != 1 || wait.Env[0].Name != "HOST_IP" || wait.Env[0].ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("the wait's env %+v: want HOST_IP from status.hostIP", wait.Env)
	}

	// The node edsync publishes every cluster of the bootstrap: the same
	// list and folder as the sidecar's config, which envoy-config matches.
	clusters := func(cm corev1.ConfigMap) string {
		var c struct {
			Clusters []map[string]string `json:"clusters"`
		}
		if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &c); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(c.Clusters)
	}
	var sidecarCM corev1.ConfigMap
	builtObject(t, sidecarExample, "ConfigMap", "edsync-config", &sidecarCM)
	if a, b := clusters(cm), clusters(sidecarCM); a != b {
		t.Errorf("node edsync's clusters %s, the sidecar's (which the bootstrap matches) %s", a, b)
	}
	if a, b := cfg.outputDir, sidecarEnv(t, "EDSYNC_OUTPUT_DIR"); a != b {
		t.Errorf("node edsync's output-dir %s, the sidecar's %s: one Envoy bootstrap fits both only if they are the same", a, b)
	}
}
