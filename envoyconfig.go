package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"k8s.io/klog/v2"

	"github.com/edsync/edsync/pipeline"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// envoyConfigCommand is `edsync envoy-config`: with the settings of a
// normal run, it syncs once (a dry run, nothing written) and prints the
// Envoy clusters that read the files that run would write. Deriving the
// clusters from a real sync, not from the flags alone, means the names and
// paths are the ones the writer uses, whatever the template, --cluster list
// or config.
func envoyConfigCommand(stdout, stderr io.Writer, started *bool) *cli.Command {
	return &cli.Command{
		Name:  "envoy-config",
		Usage: "print the Envoy EDS clusters (YAML) that read the files edsync writes",
		Description: "Syncs once without writing anything, and prints a `clusters:` list to paste under an Envoy " +
			"bootstrap's static_resources: one EDS cluster per file, named like the CLA inside it, with a " +
			"path_config_source on that file in the output folder.\n\n" +
			"It reads the same --config file, EDSYNC_* variables and flags as the edsync it goes with, so it " +
			"runs with a sidecar's own settings (kubectl exec POD -c edsync -- /edsync envoy-config --config FILE). " +
			"Listed below are the settings that decide which clusters there are and where their files are; " +
			"the others (timing, endpoints, topology, listener, --once, --dry-run) are accepted and ignored.\n\n" +
			"With --cds, it prints instead an Envoy bootstrap whose clusters come from the CDS file edsync writes " +
			"(--cds-file): new Services then reach Envoy without a restart.",
		Flags: envoyConfigFlags(),
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{flagError(err)}
		},
		Action: func(c *cli.Context) error {
			cfg, err := readConfig(c, false)
			if err != nil {
				return err
			}
			if c.Bool("cds") {
				var zone, region string // node.locality, for zone-aware routing
				if cfg.localCluster != "" {
					zone, region = cfg.render.LocalZone, cfg.render.Region
				}
				out, err := cdsBootstrap(cfg.cdsFile, c.String("envoy-node-id"), c.String("envoy-node-cluster"), c.String("envoy-admin-address"), zone, region)
				if err != nil {
					return err
				}
				if cfg.localCluster != "" {
					if out, err = withLocalCluster(out, cfg); err != nil {
						return err
					}
				}
				_, err = stdout.Write(out)
				return err
			}
			switch {
			case cfg.outputDir == "":
				return usagef("envoy-config: the clusters' paths need edsync's output folder: set --output-dir " +
					"(or EDSYNC_OUTPUT_DIR, or output-dir in the --config file)")
			case !filepath.IsAbs(cfg.outputDir):
				// Envoy resolves a relative path from its own working
				// folder, which is not edsync's.
				return usagef("envoy-config: --output-dir must be an absolute path: the clusters' paths point into it")
			}
			*started = true
			names, err := syncClusterNames(c.Context, cfg, stderr)
			if err != nil {
				return err
			}
			// The mode of the flags: a Service's own annotation is not
			// known here.
			up := render.Upstream{ZoneAware: cfg.render.Topology == render.TopologyZoneAware}
			out, err := envoyClusters(names, cfg.outputDir, cfg.format, cfg.layout, cfg.render.Cluster, cfg.render.Sources, up)
			if err != nil {
				return err
			}
			if cfg.localCluster != "" {
				out = append([]byte(localClusterNote(cfg)), out...)
			}
			_, err = stdout.Write(out)
			return err
		},
	}
}

// envoyClusterFlags are the flags that decide which clusters a run
// publishes and where their files are: the source and its scope, the output
// folder, format and names, and what the names need (--protocol picks the
// ports, --watch-services gives .PortNumber).
var envoyClusterFlags = map[string]bool{
	"config": true, "kubeconfig": true, "context": true, "namespace": true, "selector": true, "service": true,
	"from-dir": true, "sync-timeout": true, "output-dir": true, "format": true, "layout": true, "cluster-name-template": true,
	"cluster": true, "protocol": true, "watch-services": true, "log-level": true, "log-format": true,
	"connect-timeout": true, "cds-file": true, "local-cluster": true,
}

// envoyConfigFlags are edsync's flags, those that do not change the
// clusters hidden from the help but still read (from the command line,
// EDSYNC_* variables and the config file), and --connect-timeout.
func envoyConfigFlags() []cli.Flag {
	fs := flags()
	for _, f := range fs {
		hide := !envoyClusterFlags[f.Names()[0]]
		switch f := f.(type) {
		case *cli.StringFlag:
			f.Hidden = hide
			if f.Name == "output-dir" {
				f.Usage = "`DIR` the edsync it goes with writes into (absolute): the clusters' paths point into it"
			}
		case *cli.StringSliceFlag:
			f.Hidden = hide
		case *cli.BoolFlag:
			f.Hidden = hide
		case *cli.DurationFlag:
			f.Hidden = hide
			if f.Name == "sync-timeout" {
				f.Usage = "give up if the sync takes longer than `DURATION`"
			}
		}
	}
	return append(fs,
		&cli.BoolFlag{Name: "cds", Category: catEnvoyBootstrap,
			Usage: "print an Envoy bootstrap that reads its clusters from --cds-file (no sync: the clusters come and go with the file)"},
		&cli.StringFlag{Name: "envoy-node-id", Category: catEnvoyBootstrap, Value: "envoy",
			Usage: "with --cds: the bootstrap's node.id `ID` (Envoy needs one for dynamic resources)"},
		&cli.StringFlag{Name: "envoy-node-cluster", Category: catEnvoyBootstrap, Value: "edsync",
			Usage: "with --cds: the bootstrap's node.cluster `NAME`"},
		&cli.StringFlag{Name: "envoy-admin-address", Category: catEnvoyBootstrap, Value: "127.0.0.1:9901",
			Usage: "with --cds: Envoy's admin listener, `HOST:PORT`"},
	)
}

const catEnvoyBootstrap = "Envoy bootstrap"

// cdsBootstrap is an Envoy bootstrap whose clusters come from the CDS file
// at path: node (Envoy needs id and cluster for dynamic resources),
// dynamic_resources.cds_config on the file, and an admin listener. The
// listeners are the user's. It is written as text rather than through the
// bootstrap proto, whose package would link most of Envoy's API into edsync
// (a test parses the output with it).
func cdsBootstrap(path, nodeID, nodeCluster, admin, zone, region string) ([]byte, error) {
	switch {
	case path == "":
		return nil, usagef("envoy-config --cds: the bootstrap points at the CDS file: set --cds-file (or EDSYNC_CDS_FILE, or cds-file in the --config file)")
	case !filepath.IsAbs(path):
		return nil, usagef("envoy-config --cds: --cds-file must be an absolute path: Envoy resolves it from its own working folder")
	case strings.TrimSpace(nodeID) == "" || strings.TrimSpace(nodeCluster) == "":
		return nil, usagef("envoy-config --cds: --envoy-node-id and --envoy-node-cluster must not be empty")
	}
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return nil, usagef("envoy-config --cds: --envoy-admin-address %q: %v", admin, err)
	}
	portNum, err := strconv.ParseUint(port, 10, 16)
	if err != nil || net.ParseIP(host) == nil {
		return nil, usagef("envoy-config --cds: --envoy-admin-address %q: want an IP address and a port, such as 127.0.0.1:9901", admin)
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) } // JSON strings are YAML
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Envoy bootstrap whose clusters come from the CDS file edsync writes (edsync envoy-config --cds).
# A cluster appears there once its EDS file exists and leaves before that file is emptied;
# routes name clusters as edsync does (namespace/service/port by default). Add your listeners
# under static_resources (or an lds_config).
node:
  id: %s
  cluster: %s
%sdynamic_resources:
  cds_config:
    resource_api_version: V3
    path_config_source:
      path: %s
admin:
  address:
    socket_address: {address: %s, port_value: %d}
`, q(nodeID), q(nodeCluster), nodeLocality(zone, region), q(path), q(host), portNum)
	return b.Bytes(), nil
}

// nodeLocality is the bootstrap's node.locality line, none without a zone.
func nodeLocality(zone, region string) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	switch {
	case zone == "":
		return ""
	case region == "":
		return fmt.Sprintf("  locality: {zone: %s}\n", q(zone))
	}
	return fmt.Sprintf("  locality: {region: %s, zone: %s}\n", q(region), q(zone))
}

// withLocalCluster adds to a --cds bootstrap what Envoy's zone-aware
// routing needs besides node.locality (--local-cluster):
// cluster_manager.local_cluster_name, and that cluster among the static
// ones, reading its EDS file (Envoy refuses a local cluster that is not
// static; the running edsync leaves it out of the CDS file).
func withLocalCluster(bootstrap []byte, cfg *config) ([]byte, error) {
	if cfg.outputDir == "" || !filepath.IsAbs(cfg.outputDir) {
		return nil, usagef("envoy-config --cds: --local-cluster's file is in the output folder: set an absolute --output-dir")
	}
	static, err := envoyClusters([]string{cfg.localCluster}, cfg.outputDir, cfg.format, cfg.layout, cfg.render.Cluster, nil, render.Upstream{})
	if err != nil {
		return nil, err
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	b := bytes.NewBuffer(bootstrap)
	if cfg.render.LocalZone == "" {
		b.WriteString("# node.locality: start Envoy with --service-zone ZONE (or set --local-zone here), equal to the endpoints' zone\n")
	}
	fmt.Fprintf(b, "# Zone-aware routing (--local-cluster): the callers' own endpoints, a static cluster.\ncluster_manager:\n  local_cluster_name: %s\nstatic_resources:\n", q(cfg.localCluster))
	for line := range strings.Lines(string(static)) {
		b.WriteString("  " + line)
	}
	return b.Bytes(), nil
}

// localClusterNote is the comment before envoy-config's clusters with
// --local-cluster: what the bootstrap needs besides them.
func localClusterNote(cfg *config) string {
	zone := cmp.Or(cfg.render.LocalZone, "ZONE")
	return fmt.Sprintf("# Zone-aware routing (--local-cluster): add to the bootstrap\n"+
		"#   node: {locality: {zone: %s}}   (or start Envoy with --service-zone)\n"+
		"#   cluster_manager: {local_cluster_name: %s}\n", zone, cfg.localCluster)
}

func connectTimeoutFlag() cli.Flag {
	return &cli.DurationFlag{Name: "connect-timeout", Category: catOutput, EnvVars: env("CONNECT_TIMEOUT"),
		Value: time.Second, Usage: "the connect_timeout `DURATION` of the clusters in the CDS file and in envoy-config's output"}
}

// syncClusterNames runs the pipeline once as a dry run with its output
// discarded and returns the clusters of its first flush, declared ones
// included: the clusters a real run publishes. (A dry run reads no output
// folder, so stale files of an earlier run, which a real run would empty,
// are not among them.) The flush hook is the one place that sees the
// flush's cluster names.
func syncClusterNames(ctx context.Context, cfg *config, stderr io.Writer) ([]string, error) {
	run := *cfg
	run.dryRun, run.once = true, true
	// Where the endpoints go does not change the names: no Node is read
	// (nor needs RBAC), and no local zone is needed.
	run.render.Topology, run.render.LocalZone, run.render.LocalNode = render.TopologyOff, "", ""
	run.nodes = watch.NodeOptions{}
	log := newLogger(&run, new(slog.LevelVar), stderr)
	klogOnce.Do(func() { klog.SetSlogLogger(log.With("component", "client-go")) })
	var names []string
	p, _, err := newPipeline(&run, log, pipelineDeps{stdout: io.Discard, onFlush: func(r pipeline.Report) {
		if r.Initial {
			names = r.Clusters // sorted
		}
	}})
	if err != nil {
		return nil, err
	}
	if err := p.Run(ctx); err != nil {
		return nil, err
	}
	return names, nil
}

// envoyClusters renders one EDS cluster per name as YAML: `clusters:` and a
// list, in the order of the names, each cluster's fields in the order of
// Envoy's proto (name first), so the same names give the same bytes.
func envoyClusters(names []string, dir string, format writer.Format, layout writer.Layout, opts render.ClusterOptions, sources map[string]render.Source, up render.Upstream) ([]byte, error) {
	opts.LocalityWeighted = opts.LocalityWeighted || render.SourceWeightsMatter(sources)
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for _, name := range names {
		path, err := layout.Path(dir, name, format)
		if err != nil {
			return nil, err
		}
		c, err := render.EDSCluster(name, path, up, opts)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		if err := c.ValidateAll(); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		// JSON is YAML: decoding it into a node keeps protojson's field
		// order, and dropping the JSON styles (flow, quotes) gives block
		// YAML. protojson's spacing, deliberately unstable, is gone too.
		var doc yaml.Node
		if err := yaml.Unmarshal(js, &doc); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		plain(&doc)
		list.Content = append(list.Content, doc.Content[0])
	}
	if len(list.Content) == 0 {
		list.Style = yaml.FlowStyle // "clusters: []", not "clusters: null"
	}
	top := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "clusters"}, list,
	}}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Envoy clusters for the files edsync writes into %s (edsync envoy-config).\n", dir)
	b.WriteString("# Paste under static_resources of the Envoy bootstrap.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(top); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// plain clears the styles that decoding JSON set. The encoder still quotes a
// string that would read as another type without quotes.
func plain(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		plain(c)
	}
}
