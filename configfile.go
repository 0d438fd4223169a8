package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/edsync/edsync/render"
)

// fileConfig is a parsed --config file: the defaults of the flags, keyed by
// their long names, and the explicit cluster list.
type fileConfig struct {
	path     string
	data     []byte // as read, to tell a real change from a touch
	values   map[string]json.RawMessage
	clusters []clusterEntry
	// template and templates are the cluster templates, as JSON: the
	// default one and the named ones.
	template  json.RawMessage
	templates map[string]json.RawMessage
	// templateNamespaces: the namespaces whose Services may pick each
	// template limited so.
	templateNamespaces map[string][]string
	sources            []sourceEntry
}

// sourceEntry is one item of the file's sources list: a Kubernetes cluster
// to read, and where its endpoints go.
type sourceEntry struct {
	Name       string `json:"name"`
	Kubeconfig string `json:"kubeconfig"`
	Context    string `json:"context"`
	// InCluster reads the cluster edsync runs in, with the Pod's
	// credentials.
	InCluster bool `json:"in-cluster"`
	// Namespace and Selector narrow the source as the flags do; unset,
	// the flags' values.
	Namespace []string `json:"namespace"`
	Selector  *string  `json:"selector"`
	Priority  int      `json:"priority"`
	Region    string   `json:"region"`
	Weight    uint32   `json:"weight"`
	// AllowedAddresses replaces --allowed-addresses for this source.
	AllowedAddresses []string `json:"allowed-addresses"`
}

// The keys of the config file that are not flags.
const (
	keyClusters         = "clusters"
	keyClusterTemplate  = "cluster-template"
	keyClusterTemplates = "cluster-templates"
	// keyTemplateNamespaces limits named templates to namespaces.
	keyTemplateNamespaces = "cluster-template-namespaces"
	keySources            = "sources"
)

// clusterEntry is one item of the file's clusters list. The option fields
// are named like the flags they override for this one cluster.
type clusterEntry struct {
	Service       string `json:"service"`
	Port          string `json:"port"`
	Name          string `json:"name"`
	Terminating   string `json:"terminating"`
	NotReady      string `json:"not-ready"`
	AddressFamily string `json:"address-family"`
}

// notInFile are the flags that make no sense as a default in the file.
var notInFile = map[string]bool{"config": true, "help": true, "version": true}

// readConfigFile reads and parses the file; known are the flag names it may set.
func readConfigFile(path string, known []cli.Flag) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	fc, err := parseConfigFile(data, known)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	fc.path = path
	return fc, nil
}

func parseConfigFile(data []byte, known []cli.Flag) (*fileConfig, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	fc := &fileConfig{data: data, values: map[string]json.RawMessage{}}
	if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
		return fc, nil // an empty file sets nothing
	}
	if err := json.Unmarshal(js, &fc.values); err != nil {
		return nil, fmt.Errorf("want a mapping of flag names to values: %w", err)
	}
	names := map[string]bool{}
	for _, f := range known {
		names[f.Names()[0]] = !notInFile[f.Names()[0]]
	}
	for key := range fc.values {
		if key == keyClusters || key == keyClusterTemplate || key == keyClusterTemplates || key == keyTemplateNamespaces || key == keySources {
			continue
		}
		if !names[key] {
			return nil, fmt.Errorf("unknown key %q (keys are flag names without the dashes, clusters, cluster-template, cluster-templates, cluster-template-namespaces and sources)", key)
		}
	}
	if raw, ok := fc.values[keyClusterTemplate]; ok {
		fc.template = raw
		delete(fc.values, keyClusterTemplate)
	}
	if raw, ok := fc.values[keyClusterTemplates]; ok {
		if err := json.Unmarshal(raw, &fc.templates); err != nil {
			return nil, fmt.Errorf("%s: want a mapping of names to clusters: %w", keyClusterTemplates, err)
		}
		delete(fc.values, keyClusterTemplates)
	}
	if raw, ok := fc.values[keyTemplateNamespaces]; ok {
		if err := json.Unmarshal(raw, &fc.templateNamespaces); err != nil {
			return nil, fmt.Errorf("%s: want a mapping of template names to lists of namespaces: %w", keyTemplateNamespaces, err)
		}
		delete(fc.values, keyTemplateNamespaces)
	}
	if raw, ok := fc.values[keySources]; ok {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fc.sources); err != nil {
			return nil, fmt.Errorf("%s: %w", keySources, err)
		}
		delete(fc.values, keySources)
	}
	if raw, ok := fc.values[keyClusters]; ok {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fc.clusters); err != nil {
			return nil, fmt.Errorf("clusters: %w", err)
		}
		delete(fc.values, keyClusters)
	}
	return fc, nil
}

// settings are the flag values as configFrom reads them.
type settings interface {
	String(name string) string
	StringSlice(name string) []string
	Bool(name string) bool
	Duration(name string) time.Duration
	Int(name string) int
}

// layered reads a flag from the command line or its EDSYNC_* variable if
// set there, else from the config file, else the flag's default. The first
// value of the wrong type in the file is kept in err.
type layered struct {
	c    *cli.Context
	file *fileConfig
	err  error
}

// fromPod are the flags whose variables a Pod fills from its own labels
// or its Node through the downward API: a label the Pod lacks (a cluster
// that does not copy the Node's zone onto its Pods) makes the variable
// empty, and an empty one then does not hide the config file's value.
var fromPod = map[string]bool{"local-zone": true, "region": true, "node-name": true}

// fileFirst reports whether the file's value of name, if it has one, is
// the one to take: the command line and the environment did not set the
// flag, or set one of fromPod to nothing.
func (l *layered) fileFirst(name string) bool {
	return l.file != nil && (!l.c.IsSet(name) || fromPod[name] && l.c.String(name) == "")
}

// fromFile decodes the file's value for name into v; false if the command
// line or the environment set the flag (fileFirst), or the file does not.
func (l *layered) fromFile(name string, v any, want string) bool {
	if !l.fileFirst(name) {
		return false
	}
	raw, ok := l.file.values[name]
	if !ok {
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil && l.err == nil {
		l.err = fmt.Errorf("config file %s: %s: want %s, got %s", l.file.path, name, want, raw)
	}
	return true
}

func (l *layered) String(name string) string {
	if l.fileFirst(name) {
		// A number where a string is wanted (max-file-size: 1048576)
		// is its digits.
		var n json.Number
		if raw, ok := l.file.values[name]; ok && json.Unmarshal(raw, &n) == nil {
			return n.String()
		}
	}
	var s string
	if l.fromFile(name, &s, "a string") {
		return s
	}
	return l.c.String(name)
}

func (l *layered) Int(name string) int {
	var n int
	if l.fromFile(name, &n, "a whole number") {
		return n
	}
	return l.c.Int(name)
}

func (l *layered) StringSlice(name string) []string {
	var list []string
	if l.file != nil && !l.c.IsSet(name) {
		// One item may be given as a plain string.
		var s string
		if raw, ok := l.file.values[name]; ok && json.Unmarshal(raw, &s) == nil {
			return []string{s}
		}
	}
	if l.fromFile(name, &list, "a list of strings") {
		return list
	}
	return l.c.StringSlice(name)
}

func (l *layered) Bool(name string) bool {
	var b bool
	if l.fromFile(name, &b, "true or false") {
		return b
	}
	return l.c.Bool(name)
}

func (l *layered) Duration(name string) time.Duration {
	var s string
	if !l.fromFile(name, &s, `a duration such as "50ms"`) {
		return l.c.Duration(name)
	}
	d, err := time.ParseDuration(s)
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("config file %s: %s: want a duration such as \"50ms\", got %q", l.file.path, name, s)
	}
	return d
}

// clusterSpecs turns the file's clusters into render specs, each option
// starting from the flag's value.
func (fc *fileConfig) clusterSpecs(defaults render.Options) ([]render.ClusterSpec, error) {
	if fc == nil {
		return nil, nil
	}
	var specs []render.ClusterSpec
	for i, e := range fc.clusters {
		where := fmt.Sprintf("config file %s: clusters[%d]", fc.path, i)
		ns, name, ok := strings.Cut(e.Service, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("%s: service %q: want NAMESPACE/NAME", where, e.Service)
		}
		spec := render.ClusterSpec{
			Service: render.ServiceKey{Namespace: ns, Name: name},
			Port:    e.Port,
			Name:    e.Name,
			Selection: render.Selection{
				Terminating: defaults.Terminating, NotReady: defaults.NotReady, Family: defaults.Family,
			},
		}
		var err error
		if e.Terminating != "" {
			if spec.Terminating, err = render.ParseTerminating(e.Terminating); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
		if e.NotReady != "" {
			if spec.NotReady, err = render.ParseNotReady(e.NotReady); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
		if e.AddressFamily != "" {
			if spec.Family, err = render.ParseFamily(e.AddressFamily); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
		specs = append(specs, spec)
	}
	// Names and duplicates are checked by render.New, which the caller runs.
	return slices.Clip(specs), nil
}

// clusterTemplates reads the file's cluster templates into o: each must be
// a cluster edsync can complete (render.ParseClusterTemplate).
func (fc *fileConfig) clusterTemplates(o *render.ClusterOptions) error {
	if fc == nil {
		return nil
	}
	if len(fc.template) > 0 && string(fc.template) != "null" {
		t, err := render.ParseClusterTemplate(fc.template)
		if err != nil {
			return fmt.Errorf("config file %s: %s: %w", fc.path, keyClusterTemplate, err)
		}
		o.Default = t
	}
	for _, name := range slices.Sorted(maps.Keys(fc.templates)) {
		if name == "" {
			return fmt.Errorf("config file %s: %s: a template without a name", fc.path, keyClusterTemplates)
		}
		t, err := render.ParseClusterTemplate(fc.templates[name])
		if err != nil {
			return fmt.Errorf("config file %s: %s: %s: %w", fc.path, keyClusterTemplates, name, err)
		}
		if o.Templates == nil {
			o.Templates = make(map[string]*clusterv3.Cluster, len(fc.templates))
		}
		o.Templates[name] = t
	}
	for _, name := range slices.Sorted(maps.Keys(fc.templateNamespaces)) {
		at := fmt.Sprintf("config file %s: %s: %s", fc.path, keyTemplateNamespaces, name)
		if _, ok := fc.templates[name]; !ok {
			return fmt.Errorf("%s: no such template in %s", at, keyClusterTemplates)
		}
		for _, ns := range fc.templateNamespaces[name] {
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				return fmt.Errorf("%s: namespace %q: %s", at, ns, strings.Join(errs, "; "))
			}
		}
		if o.TemplateNamespaces == nil {
			o.TemplateNamespaces = make(map[string][]string, len(fc.templateNamespaces))
		}
		// An empty list: no Service may pick it.
		o.TemplateNamespaces[name] = slices.Sorted(slices.Values(fc.templateNamespaces[name]))
	}
	return nil
}

// sourceConfig is one source of a run: a Kubernetes cluster, how to reach
// it and what to read of it.
type sourceConfig struct {
	name                string
	kubeconfig, context string
	inCluster           bool
	namespaces          []string
	selector            string
}

// readSources reads the file's sources list into cfg: each source's
// connection and scope, and its place for render. Sources replace
// --kubeconfig, --context and --from-dir.
func (fc *fileConfig) readSources(cfg *config) error {
	if fc == nil || len(fc.sources) == 0 {
		return nil
	}
	where := fmt.Sprintf("config file %s: %s", fc.path, keySources)
	switch {
	case cfg.fromDir != "":
		return fmt.Errorf("%s: the sources are Kubernetes clusters: drop --from-dir", where)
	case cfg.kubeconfig != "" || cfg.kubeContext != "":
		return fmt.Errorf("%s: each source names its kubeconfig and context: drop --kubeconfig and --context", where)
	}
	cfg.render.Sources = make(map[string]render.Source, len(fc.sources))
	// The Services and Nodes are read from the first source.
	cfg.render.NodesFrom = fc.sources[0].Name
	for i, e := range fc.sources {
		at := fmt.Sprintf("%s[%d]", where, i)
		if errs := validation.IsDNS1123Label(e.Name); len(errs) > 0 {
			return fmt.Errorf("%s: name %q: %s", at, e.Name, strings.Join(errs, "; "))
		}
		if _, dup := cfg.render.Sources[e.Name]; dup {
			return fmt.Errorf("%s: a second source named %s", at, e.Name)
		}
		if e.InCluster && (e.Kubeconfig != "" || e.Context != "") {
			return fmt.Errorf("%s (%s): in-cluster or a kubeconfig and context, not both", at, e.Name)
		}
		if !e.InCluster && e.Kubeconfig == "" {
			return fmt.Errorf("%s (%s): give a kubeconfig (and context), or in-cluster: true", at, e.Name)
		}
		if e.Priority < 0 || e.Priority > 127 {
			return fmt.Errorf("%s (%s): priority %d: want 0 (preferred) to 127", at, e.Name, e.Priority)
		}
		if e.Weight > 128 {
			return fmt.Errorf("%s (%s): weight %d: want 1 to 128", at, e.Name, e.Weight)
		}
		sc := sourceConfig{name: e.Name, kubeconfig: e.Kubeconfig, context: e.Context, inCluster: e.InCluster,
			namespaces: cfg.namespaces, selector: cfg.selector}
		if len(e.Namespace) > 0 {
			sc.namespaces = e.Namespace
		}
		if e.Selector != nil {
			if _, err := labels.Parse(*e.Selector); err != nil {
				return fmt.Errorf("%s (%s): selector %q: %w", at, e.Name, *e.Selector, err)
			}
			sc.selector = *e.Selector
		}
		if len(e.AllowedAddresses) > 0 {
			list, err := render.ParsePrefixes(e.AllowedAddresses)
			if err != nil {
				return fmt.Errorf("%s (%s): allowed-addresses: %w", at, e.Name, err)
			}
			if cfg.render.SourceAddresses == nil {
				cfg.render.SourceAddresses = make(map[string][]netip.Prefix)
			}
			cfg.render.SourceAddresses[e.Name] = list
		}
		cfg.sources = append(cfg.sources, sc)
		cfg.render.Sources[e.Name] = render.Source{Priority: e.Priority, Region: e.Region, Weight: e.Weight}
	}
	return nil
}
