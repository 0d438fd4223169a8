package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// parseFlags runs edsync's own flag parsing and checks (configFrom) over
// args, as the main command would, without starting anything.
func parseFlags(args []string) (*config, error) {
	var cfg *config
	app := &cli.App{
		Name: "edsync", Flags: flags(), Writer: io.Discard, ErrWriter: io.Discard,
		OnUsageError:   func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unexpected argument %q", c.Args().First())
			}
			var err error
			cfg, err = configFrom(c)
			return err
		},
	}
	if err := app.Run(append([]string{"edsync"}, args...)); err != nil {
		return nil, err
	}
	return cfg, nil
}

// sidecarExample is the folder of the sidecar example, a kustomization
// that adds the sidecar component (kustomize/sidecar) to Envoy's
// Deployment.
const sidecarExample = "examples/kubernetes"

// sidecar is the edsync container of the example's Deployment, as
// `kubectl kustomize` builds it.
func sidecar(t *testing.T) corev1.Container {
	t.Helper()
	var dep appsv1.Deployment
	builtObject(t, sidecarExample, "Deployment", "gateway", &dep)
	for _, c := range dep.Spec.Template.Spec.InitContainers {
		if c.Name == "edsync" {
			return c
		}
	}
	t.Fatalf("no edsync init container in the Deployment %s builds", sidecarExample)
	return corev1.Container{}
}

// sidecarEnv is the value of the sidecar's environment variable name, set
// as a plain value.
func sidecarEnv(t *testing.T, name string) string {
	t.Helper()
	for _, e := range sidecar(t).Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value
		}
	}
	t.Fatalf("the sidecar has no %s value", name)
	return ""
}

var built sync.Map // folder -> resmap.ResMap, each built once

// builtObject decodes the object of kind and name that `kubectl kustomize
// dir` makes, strictly: a misspelt field fails.
func builtObject(t *testing.T, dir, kind, name string, into any) {
	t.Helper()
	m, ok := built.Load(dir)
	if !ok {
		k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
		rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		m, _ = built.LoadOrStore(dir, rm)
	}
	for _, r := range m.(resmap.ResMap).Resources() {
		if r.GetKind() != kind || r.GetName() != name {
			continue
		}
		data, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(data, into); err != nil {
			t.Fatalf("%s %s built from %s: %v", kind, name, dir, err)
		}
		return
	}
	t.Fatalf("kustomize build %s makes no %s %s", dir, kind, name)
}

// readObject reads a one-object manifest strictly: a misspelt field fails.
func readObject(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// The sidecar example's pieces fit together: the Envoy bootstrap in its
// ConfigMap is valid and its clusters are what envoy-config prints for the
// clusters of edsync's ConfigMap, and both containers agree on the folder.
func TestKubernetesExampleEnvoyBootstrap(t *testing.T) {
	var envoyCM, edsyncCM corev1.ConfigMap
	builtObject(t, sidecarExample, "ConfigMap", "envoy-bootstrap", &envoyCM)
	builtObject(t, sidecarExample, "ConfigMap", "edsync-config", &edsyncCM)
	boot := parseBootstrap(t, "envoy.yaml in examples/kubernetes/envoy-bootstrap.yaml", []byte(envoyCM.Data["envoy.yaml"]))

	var edsyncConfig struct {
		Clusters []struct {
			Name string `json:"name"`
		} `json:"clusters"`
	}
	if err := yaml.UnmarshalStrict([]byte(edsyncCM.Data["config.yaml"]), &edsyncConfig); err == nil {
		t.Fatal("the example's config.yaml decodes as clusters alone: the check below would not see the rest")
	}
	if err := yaml.Unmarshal([]byte(edsyncCM.Data["config.yaml"]), &edsyncConfig); err != nil {
		t.Fatalf("config.yaml of ConfigMap edsync-config: %v", err)
	}
	if len(edsyncConfig.Clusters) == 0 {
		t.Fatalf("edsync's config names no clusters: %+v", edsyncConfig)
	}
	// The output folder is the sidecar component's, in the environment.
	outputDir := sidecarEnv(t, "EDSYNC_OUTPUT_DIR")
	// envoy-config runs with exactly the sidecar's config file, arguments
	// and output folder (only the source differs: an empty folder of
	// manifests for the Pod's API server), without the Pod's
	// EDSYNC_NODE_NAME: the clusters' names do not depend on topology.
	config := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, config, edsyncCM.Data["config.yaml"])
	t.Setenv("EDSYNC_OUTPUT_DIR", outputDir)
	args := slices.Concat([]string{"--from-dir", t.TempDir()}, sidecar(t).Args)
	for i, a := range args {
		if a == "/etc/edsync/config.yaml" {
			args[i] = config
		}
	}
	printed, want := envoyConfig(t, args...)
	if len(want) != len(edsyncConfig.Clusters) {
		t.Errorf("envoy-config printed %d clusters for the %d of edsync's config", len(want), len(edsyncConfig.Clusters))
	}
	// In the Pod (kubectl exec ... edsync envoy-config --config ...), with
	// its environment: the same clusters.
	t.Setenv("EDSYNC_NODE_NAME", "node-1")
	if inPod, _ := envoyConfig(t, args...); inPod != printed {
		t.Errorf("with the Pod's environment, envoy-config printed:\n%s\nwithout:\n%s", inPod, printed)
	}
	var got []*clusterv3.Cluster
	for _, c := range boot.GetStaticResources().GetClusters() {
		c = proto.Clone(c).(*clusterv3.Cluster)
		c.TypedExtensionProtocolOptions = nil // HTTP/2 for gRPC, added by hand
		got = append(got, c)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("envoy-bootstrap.yaml's clusters differ from what `edsync envoy-config` prints for edsync-config.yaml (-printed +example):\n%s", diff)
	}

	var dep appsv1.Deployment
	builtObject(t, sidecarExample, "Deployment", "gateway", &dep)
	spec := dep.Spec.Template.Spec
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		// The output folder is one edsync makes inside the volume, whose
		// root an emptyDir makes 0777.
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == "edsync-files" && filepath.Dir(outputDir) == m.MountPath
		}) {
			t.Errorf("container %s does not mount edsync-files at the folder of %s, edsync's output-dir", c.Name, outputDir)
		}
	}
}

// The edsync sidecar is a native sidecar gated by a startup probe on
// /readyz, and its args parse with edsync's own flags, with the config file
// from the ConfigMap where --config points.
func TestKubernetesExampleEdsyncContainer(t *testing.T) {
	var dep appsv1.Deployment
	builtObject(t, sidecarExample, "Deployment", "gateway", &dep)
	spec := dep.Spec.Template.Spec
	if spec.ServiceAccountName != "edsync" {
		t.Errorf("serviceAccountName %q, want edsync (rbac.yaml)", spec.ServiceAccountName)
	}
	i := slices.IndexFunc(spec.InitContainers, func(c corev1.Container) bool { return c.Name == "edsync" })
	if i < 0 {
		t.Fatal("no init container named edsync")
	}
	c := spec.InitContainers[i]
	if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("edsync is not a native sidecar (restartPolicy: Always)")
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		want := "/readyz"
		switch name {
		case "liveness":
			want = "/healthz"
		case "startup":
			// The files alone: /readyz waits for Envoy with
			// ready-waits-for-envoy, and Envoy waits for this probe.
			want = "/readyz/files"
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "edsync-http" {
			t.Errorf("%s probe %+v: want GET %s on port edsync-http", name, p, want)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "edsync-http" || c.Ports[0].ContainerPort != 9911 {
		t.Errorf("ports %+v: want edsync-http 9911", c.Ports)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("edsync's securityContext %+v: want non-root, read-only root, no privilege escalation, drop ALL", sc)
	}

	var cm corev1.ConfigMap
	builtObject(t, sidecarExample, "ConfigMap", "edsync-config", &cm)
	cfg, err := parseContainerArgs(t, c, cm)
	if err != nil {
		t.Fatalf("edsync's args %q do not parse: %v", c.Args, err)
	}
	if cfg.httpAddr != ":9911" {
		t.Errorf("--http-addr %q: want :9911, the probes' port", cfg.httpAddr)
	}
	if cfg.render.LocalZone != "zone-a" || cfg.nodes.Name != "node-1" {
		t.Errorf("local zone %q, node %q: want the Pod's zone label and its Node (EDSYNC_LOCAL_ZONE, EDSYNC_NODE_NAME)", cfg.render.LocalZone, cfg.nodes.Name)
	}
}

// parseContainerArgs parses an edsync container's args with edsync's own
// flags, in the container's environment, with the --config file taken from
// the ConfigMap cm where the container mounts it.
func parseContainerArgs(t *testing.T, c corev1.Container, cm corev1.ConfigMap) (*config, error) {
	t.Helper()
	// --config names a file in the mounted ConfigMap folder: give the
	// parser that file's content.
	args := slices.Clone(c.Args)
	j := slices.Index(args, "--config")
	if j < 0 || j+1 >= len(args) {
		t.Fatalf("args %q: want --config FILE", args)
	}
	mount := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == "edsync-config" && filepath.Dir(args[j+1]) == m.MountPath
	})
	content, ok := cm.Data[filepath.Base(args[j+1])]
	if mount < 0 || !ok {
		t.Errorf("--config %s is not a key of ConfigMap %s mounted at its folder", args[j+1], cm.Name)
	}
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	args[j+1] = file
	// The container's environment takes part: a value from the downward
	// API gets a stand-in of the right shape.
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				t.Fatalf("env %s: only values and fieldRefs are understood here", e.Name)
			}
			v = map[string]string{"spec.nodeName": "node-1", "metadata.namespace": "default",
				"metadata.labels['topology.kubernetes.io/zone']": "zone-a"}[e.ValueFrom.FieldRef.FieldPath]
		}
		t.Setenv(e.Name, v)
	}
	return parseFlags(args)
}

// Only edsync gets the ServiceAccount's token, in the sidecar Deployment
// and in the node-shared DaemonSet: no automatic mount in every container
// (Envoy faces the network), and a projected token where client-go's
// in-cluster config reads it, in edsync's container alone.
func TestExamplesGiveTheTokenToEdsyncAlone(t *testing.T) {
	var dep appsv1.Deployment
	builtObject(t, sidecarExample, "Deployment", "gateway", &dep)
	var ds appsv1.DaemonSet
	readObject(t, nodeShared+"daemonset.yaml", &ds)
	const tokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	for name, spec := range map[string]corev1.PodSpec{"deployment.yaml": dep.Spec.Template.Spec, "node-shared/daemonset.yaml": ds.Spec.Template.Spec} {
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false: every container gets the token", name)
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == tokenDir })
			if c.Name != "edsync" {
				if i >= 0 {
					t.Errorf("%s: container %s mounts the API token", name, c.Name)
				}
				continue
			}
			if i < 0 {
				t.Errorf("%s: edsync does not mount a token at %s", name, tokenDir)
				continue
			}
			v := spec.Volumes[slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })]
			var paths []string
			for _, src := range v.Projected.Sources {
				switch {
				case src.ServiceAccountToken != nil:
					paths = append(paths, src.ServiceAccountToken.Path)
				case src.ConfigMap != nil:
					for _, it := range src.ConfigMap.Items {
						paths = append(paths, it.Path)
					}
				case src.DownwardAPI != nil:
					for _, it := range src.DownwardAPI.Items {
						paths = append(paths, it.Path)
					}
				}
			}
			if slices.Sort(paths); !slices.Equal(paths, []string{"ca.crt", "namespace", "token"}) {
				t.Errorf("%s: edsync's token volume holds %v, want what in-cluster config reads: ca.crt, namespace, token", name, paths)
			}
		}
	}
}
