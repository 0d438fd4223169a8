package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// grant is one permission: verb on resource (resource.group, or resource
// for the core group) in namespace; namespace "" is cluster-wide (a
// ClusterRoleBinding's): every namespace, and cluster-scoped resources.
type grant struct{ namespace, resource, verb string }

func (g grant) String() string {
	where := "in namespace " + g.namespace
	if g.namespace == "" {
		where = "cluster-wide"
	}
	return fmt.Sprintf("%s %s %s", g.verb, g.resource, where)
}

// rbacNeeds is what edsync with cfg lists and watches (sources.go,
// watch.filter): EndpointSlices, and Services with watch-services, in the
// namespaces of the Services it publishes (its clusters: list, or
// --service), else in those of --namespace, else in every namespace; Nodes
// with node-name or node-topology.
func rbacNeeds(t *testing.T, cfg *config) []grant {
	t.Helper()
	if len(cfg.sources) > 0 {
		t.Fatal("a config with sources: is not understood here (each source has its own namespaces)")
	}
	namespaces := cfg.namespaces
	if services := watchedServices(cfg); len(services) > 0 {
		namespaces = nil
		for _, s := range services {
			if !slices.Contains(namespaces, s.Namespace) {
				namespaces = append(namespaces, s.Namespace)
			}
		}
	}
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	var out []grant
	for _, ns := range namespaces {
		resources := []string{"endpointslices.discovery.k8s.io"}
		if cfg.watchServices {
			resources = append(resources, "services")
		}
		for _, r := range resources {
			out = append(out, grant{ns, r, "list"}, grant{ns, r, "watch"})
		}
	}
	if cfg.nodes.All || cfg.nodes.Name != "" {
		out = append(out, grant{"", "nodes", "list"}, grant{"", "nodes", "watch"})
	}
	return out
}

// rbacGrants reads an RBAC manifest file and returns what it grants the
// ServiceAccount namespace/name, which the file must hold, by each of its
// bindings. Rules are taken literally: a wildcard or a resourceNames list
// is a grant no edsync config needs.
func rbacGrants(t *testing.T, path, namespace, name string) []grant {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		haveSA              bool
		roles               = map[string]rbacv1.Role{} // namespace/name
		clusterRoles        = map[string]rbacv1.ClusterRole{}
		roleBindings        []rbacv1.RoleBinding
		clusterRoleBindings []rbacv1.ClusterRoleBinding
	)
	strict := func(doc []byte, into any) {
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	docs := yamlutil.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch tm.Kind {
		case "": // comments only
		case "ServiceAccount":
			var sa corev1.ServiceAccount
			strict(doc, &sa)
			haveSA = haveSA || sa.Namespace == namespace && sa.Name == name
		case "Role":
			var r rbacv1.Role
			strict(doc, &r)
			roles[r.Namespace+"/"+r.Name] = r
		case "ClusterRole":
			var r rbacv1.ClusterRole
			strict(doc, &r)
			clusterRoles[r.Name] = r
		case "RoleBinding":
			var b rbacv1.RoleBinding
			strict(doc, &b)
			roleBindings = append(roleBindings, b)
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			strict(doc, &b)
			clusterRoleBindings = append(clusterRoleBindings, b)
		default:
			t.Errorf("%s: a %s; edsync's RBAC is a ServiceAccount, Roles, ClusterRoles and their bindings", path, tm.Kind)
		}
	}
	if !haveSA {
		t.Errorf("%s has no ServiceAccount %s/%s", path, namespace, name)
	}
	bindsSA := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Namespace == namespace && s.Name == name
		})
	}
	var out []grant
	add := func(ns string, rules []rbacv1.PolicyRule, what string) {
		for _, r := range rules {
			if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
				t.Errorf("%s: %s has a rule with resourceNames or nonResourceURLs, which this check does not understand", path, what)
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					if g != "" {
						res += "." + g
					}
					for _, v := range r.Verbs {
						out = append(out, grant{ns, res, v})
					}
				}
			}
		}
	}
	for _, b := range roleBindings {
		if !bindsSA(b.Subjects) {
			t.Errorf("%s: RoleBinding %s/%s does not bind ServiceAccount %s/%s", path, b.Namespace, b.Name, namespace, name)
			continue
		}
		switch b.RoleRef.Kind {
		case "Role":
			r, ok := roles[b.Namespace+"/"+b.RoleRef.Name]
			if !ok {
				t.Errorf("%s: RoleBinding %s/%s refers to Role %s, which is not in the file", path, b.Namespace, b.Name, b.RoleRef.Name)
			}
			add(b.Namespace, r.Rules, "Role "+b.Namespace+"/"+r.Name)
		case "ClusterRole":
			r, ok := clusterRoles[b.RoleRef.Name]
			if !ok {
				t.Errorf("%s: RoleBinding %s/%s refers to ClusterRole %s, which is not in the file", path, b.Namespace, b.Name, b.RoleRef.Name)
			}
			add(b.Namespace, r.Rules, "ClusterRole "+r.Name)
		default:
			t.Errorf("%s: RoleBinding %s/%s refers to a %q", path, b.Namespace, b.Name, b.RoleRef.Kind)
		}
	}
	for _, b := range clusterRoleBindings {
		r, ok := clusterRoles[b.RoleRef.Name]
		if !bindsSA(b.Subjects) || b.RoleRef.Kind != "ClusterRole" || !ok {
			t.Errorf("%s: ClusterRoleBinding %s does not bind ClusterRole %s of the file to ServiceAccount %s/%s", path, b.Name, b.RoleRef.Name, namespace, name)
			continue
		}
		add("", r.Rules, "ClusterRole "+r.Name)
	}
	// A role nothing binds grants nothing, but says it does.
	for k := range roles {
		if !slices.ContainsFunc(roleBindings, func(b rbacv1.RoleBinding) bool {
			return b.RoleRef.Kind == "Role" && b.Namespace+"/"+b.RoleRef.Name == k
		}) {
			t.Errorf("%s: Role %s is bound by no RoleBinding", path, k)
		}
	}
	for k := range clusterRoles {
		if !slices.ContainsFunc(clusterRoleBindings, func(b rbacv1.ClusterRoleBinding) bool { return b.RoleRef.Name == k }) &&
			!slices.ContainsFunc(roleBindings, func(b rbacv1.RoleBinding) bool { return b.RoleRef.Kind == "ClusterRole" && b.RoleRef.Name == k }) {
			t.Errorf("%s: ClusterRole %s is bound by nothing", path, k)
		}
	}
	return out
}

// The sidecar example's RBAC grants exactly what the configs run with it
// need: list and watch on EndpointSlices (and Services, with
// watch-services) by a Role and RoleBinding in each namespace a config
// names, and a ClusterRole only for Nodes, only when a config reads them
// (node-name, node-topology). The configs are the example Deployment's
// edsync (as kustomize builds it) with edsync.yaml and with
// cds/edsync-config.yaml, and the VM's unit
// with edsync.env and cds/edsync.env (examples/vm applies this file too).
// test/e2e's TestExamplesSidecarRBAC runs edsync as this ServiceAccount
// against a real API server.
func TestKubernetesExampleRBAC(t *testing.T) {
	const rbacFile = "examples/kubernetes/rbac.yaml"
	var dep appsv1.Deployment
	builtObject(t, sidecarExample, "Deployment", "gateway", &dep)
	spec := dep.Spec.Template.Spec
	sidecar := sidecar(t)

	needs := map[grant][]string{} // which configs need each grant
	need := func(t *testing.T, name string, cfg *config, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, g := range rbacNeeds(t, cfg) {
			if !slices.Contains(needs[g], name) {
				needs[g] = append(needs[g], name)
			}
		}
	}
	// Each in a subtest: the environment each sets ends with it.
	var sidecarCM, cdsCM corev1.ConfigMap
	builtObject(t, sidecarExample, "ConfigMap", "edsync-config", &sidecarCM)
	readObject(t, "examples/kubernetes/cds/edsync-config.yaml", &cdsCM)
	for name, cm := range map[string]corev1.ConfigMap{"edsync.yaml": sidecarCM, "cds/edsync-config.yaml": cdsCM} {
		t.Run("sidecar with "+name, func(t *testing.T) {
			cfg, err := parseContainerArgs(t, sidecar, cm)
			need(t, "the sidecar with "+name, cfg, err)
		})
	}
	unit := strings.Fields(unitSettings(t, "examples/vm/edsync.service")["ExecStart"][0])[1:]
	for _, file := range []string{"examples/vm/edsync.env", "examples/vm/cds/edsync.env"} {
		t.Run("vm with "+file, func(t *testing.T) {
			setEnvFile(t, file)
			cfg, err := parseFlags(unit)
			need(t, "edsync.service with "+file, cfg, err)
		})
	}
	if t.Failed() {
		return
	}

	granted := rbacGrants(t, rbacFile, dep.Namespace, spec.ServiceAccountName)
	for _, g := range slices.SortedFunc(maps.Keys(needs), func(a, b grant) int { return strings.Compare(a.String(), b.String()) }) {
		if !slices.Contains(granted, g) {
			how := "a Role and RoleBinding in namespace " + g.namespace
			if g.namespace == "" {
				how = "a ClusterRole and ClusterRoleBinding"
			}
			t.Errorf("%s needs %s; %s does not grant it (%s)", strings.Join(needs[g], ", "), g, rbacFile, how)
		}
	}
	for _, g := range granted {
		switch {
		case needs[g] != nil:
		case g.namespace == "" && g.resource != "nodes":
			t.Errorf("%s grants %s: every namespace, where the configs name theirs; grant it by a Role in each", rbacFile, g)
		case g.resource == "nodes":
			t.Errorf("%s grants %s, which no config run with it needs (none has node-name or node-topology): drop the ClusterRole and its binding", rbacFile, g)
		default:
			t.Errorf("%s grants %s, which no config run with it needs", rbacFile, g)
		}
	}
}
