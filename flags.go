package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
)

const (
	catSource    = "Source"
	catOutput    = "Output"
	catTiming    = "Timing"
	catSemantics = "Endpoints"
	catTopology  = "Topology"
	catLogging   = "Logging"
	catMonitor   = "Monitoring"
)

func env(name string) []string { return []string{"EDSYNC_" + name} }

// defaultPruneAfter is --prune-after's default: long enough for every
// Envoy to have read the emptied file (it does within milliseconds of the
// rename) and for a Service deleted and created again by a deploy to come
// back before its file goes; short enough that preview environments and
// CI namespaces leave no more than a few minutes of files behind.
const defaultPruneAfter = 5 * time.Minute

// defaultCDSDebounce is --cds-debounce's default: a Service created with
// its Deployment gets its cluster within seconds, and one whose Pods come
// and go during a rollout does not make Envoy warm clusters each time.
const defaultCDSDebounce = 3 * time.Second

// flags are every knob of edsync, each with its EDSYNC_* variable; their
// long names are also the keys of the --config file.
func flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", EnvVars: env("CONFIG"),
			Usage: "YAML `FILE` of defaults for these flags (keys: flag names) and a clusters list; reloaded on change. Flags and EDSYNC_* variables override it"},
		&cli.StringFlag{Name: "kubeconfig", Category: catSource, EnvVars: env("KUBECONFIG"),
			Usage: "kubeconfig `FILE` for running outside the cluster (default: in-cluster credentials, then $KUBECONFIG / ~/.kube/config)"},
		&cli.StringFlag{Name: "context", Category: catSource, EnvVars: env("CONTEXT"),
			Usage: "kubeconfig context `NAME` to use (default: its current context)"},
		&cli.StringSliceFlag{Name: "namespace", Category: catSource, EnvVars: env("NAMESPACE"),
			Usage: "watch only this `NAMESPACE` (repeatable; default: all)"},
		&cli.StringFlag{Name: "selector", Category: catSource, EnvVars: env("SELECTOR"),
			Usage: "label `SELECTOR` on EndpointSlices, e.g. 'team=payments'"},
		&cli.StringSliceFlag{Name: "service", Category: catSource, EnvVars: env("SERVICE"),
			Usage: "publish only this Service, `NS/NAME` (repeatable); the API server then sends only its slices"},
		&cli.StringFlag{Name: "from-dir", Category: catSource, EnvVars: env("FROM_DIR"),
			Usage: "read EndpointSlice manifests (YAML or JSON) from `PATH`, a folder or one file, instead of a cluster, and follow changes"},
		&cli.DurationFlag{Name: "sync-timeout", Category: catSource, EnvVars: env("SYNC_TIMEOUT"), Value: time.Minute,
			Usage: "with --once: give up if the first full sync takes longer than `DURATION`; with the config file's sources: publish without those not synced by then"},
		&cli.BoolFlag{Name: "mcs", Category: catSource, EnvVars: env("MCS"),
			Usage: "read the EndpointSlices of ServiceImports (Multi-Cluster Services) too: each is its Service's, its endpoints placed as the source its multicluster.kubernetes.io/source-cluster label names"},
		&cli.DurationFlag{Name: "source-stale-after", Category: catSource, EnvVars: env("SOURCE_STALE_AFTER"), Value: 5 * time.Minute,
			Usage: "with the config file's sources: keep the endpoints of a source whose API server stops answering for `DURATION`, then remove them until it answers (0 keeps them)"},

		&cli.StringFlag{Name: "output-dir", Category: catOutput, EnvVars: env("OUTPUT_DIR"),
			Usage: "`DIR` to write one file per cluster into, created if missing; one edsync per folder (required unless --dry-run)"},
		&cli.StringFlag{Name: "format", Category: catOutput, EnvVars: env("FORMAT"), Value: "json",
			Usage: "file `FORMAT`: json, yaml or pb (binary protobuf, fastest for large Services); sets the extension"},
		&cli.StringFlag{Name: "layout", Category: catOutput, EnvVars: env("LAYOUT"), Value: "folders",
			Usage: "`LAYOUT` of the files: folders (DIR/<cluster>/eds.json, so that an update wakes only the Envoy subscription of its cluster) " +
				"or flat (DIR/<cluster>.json, as edsync wrote before; each update wakes every Envoy subscription on DIR)"},
		&cli.StringFlag{Name: "cluster-name-template", Category: catOutput, EnvVars: env("CLUSTER_NAME_TEMPLATE"),
			Value: render.DefaultClusterNameTemplate, Usage: "Go `TEMPLATE` of the cluster name over .Namespace, .Service, .Port (the port name) and .PortNumber (the Service's port number; needs --watch-services)"},
		&cli.StringSliceFlag{Name: "cluster", Category: catOutput, EnvVars: env("CLUSTER"),
			Usage: "cluster `NAME` whose file must exist even with no endpoints, so Envoy can start (repeatable)"},
		&cli.IntFlag{Name: "max-clusters-per-namespace", Category: catOutput, EnvVars: env("MAX_CLUSTERS_PER_NAMESPACE"),
			Usage: "publish at most `N` clusters of the Services of one namespace (0: no cap); each is a file and an inotify instance in every Envoy that reads it. " +
				"Past it a namespace's new clusters are skipped and counted (namespace-cluster-limit) until it frees one"},
		&cli.BoolFlag{Name: "dry-run", Category: catOutput, EnvVars: env("DRY_RUN"),
			Usage: "print each file ('# <path>' then its content) instead of writing it"},
		&cli.BoolFlag{Name: "once", Category: catOutput, EnvVars: env("ONCE"),
			Usage: "sync, write every file, exit (non-zero if a write failed or the sync timed out)"},
		&cli.StringFlag{Name: "max-file-size", Category: catOutput, EnvVars: env("MAX_FILE_SIZE"), Value: defaultMaxFileSize,
			Usage: "write no file larger than `SIZE` (bytes, or with a suffix: 512Ki, 16Mi): a cluster over it keeps its old file and is logged and counted " +
				"(skipped, file-too-large), so that no one Service fills the volume; 0 for no limit"},
		&cli.DurationFlag{Name: "prune-after", Category: catOutput, EnvVars: env("PRUNE_AFTER"), Value: defaultPruneAfter,
			Usage: "`DURATION` after emptying the file of a cluster no Service publishes any more, remove the file (never a declared cluster's); 0 keeps such files"},
		&cli.StringFlag{Name: "cds-file", Category: catOutput, EnvVars: env("CDS_FILE"),
			Usage: "also write the clusters (CDS) into `FILE`, for Envoy's dynamic_resources.cds_config: a cluster per published or declared cluster, " +
				"so new Services reach Envoy without a restart; its extension (.json, .yaml, .pb) is its format"},
		&cli.DurationFlag{Name: "cds-debounce", Category: catOutput, EnvVars: env("CDS_DEBOUNCE"), Value: defaultCDSDebounce,
			Usage: "write a change of the clusters once they have been quiet for `DURATION` (each change makes Envoy warm clusters)"},
		connectTimeoutFlag(),

		&cli.DurationFlag{Name: "debounce", Category: catTiming, EnvVars: env("DEBOUNCE"), Value: 50 * time.Millisecond,
			Usage: "write a Service once its changes have been quiet for `DURATION`"},
		&cli.DurationFlag{Name: "max-delay", Category: catTiming, EnvVars: env("MAX_DELAY"), Value: 500 * time.Millisecond,
			Usage: "write a Service at most `DURATION` after its first unwritten change, even under constant churn"},

		&cli.StringSliceFlag{Name: "allowed-addresses", Category: catSemantics, EnvVars: env("ALLOWED_ADDRESSES"),
			Usage: "publish only endpoints in these `CIDR`s (repeatable; 10.0.0.0/8, fd00::/8, or one address); others are skipped and counted " +
				"(address-not-allowed). Default: any address but loopback, link-local and multicast, which Kubernetes refuses too"},
		&cli.StringFlag{Name: "terminating", Category: catSemantics, EnvVars: env("TERMINATING"), Value: "draining",
			Usage: "terminating but serving endpoints (`MODE`): draining (Envoy finishes open requests) or drop"},
		&cli.StringFlag{Name: "not-ready", Category: catSemantics, EnvVars: env("NOT_READY"), Value: "drop",
			Usage: "not-ready endpoints (`MODE`): drop or unhealthy"},
		&cli.StringFlag{Name: "address-family", Category: catSemantics, EnvVars: env("ADDRESS_FAMILY"), Value: "all",
			Usage: "address families to publish (`FAMILY`): all (a dual-stack Pod is one endpoint, IPv4 address first, IPv6 in additional_addresses), ipv6-first (the same, IPv6 first), ipv4 or ipv6 (that family only)"},
		&cli.StringFlag{Name: "protocol", Category: catSemantics, EnvVars: env("PROTOCOL"), Value: "TCP",
			Usage: "publish the Service ports of `PROTOCOL`: TCP, UDP or SCTP"},

		&cli.StringFlag{Name: "topology", Category: catTopology, EnvVars: env("TOPOLOGY"), Value: "off",
			Usage: "spread endpoints over Envoy priorities (`MODE`): off; zone (the local zone's at priority 0, the rest at 1); " +
				"hints (follow the EndpointSlice hints: the local node's, then the local zone's, then the rest); zone-aware (as off, and the CDS file's clusters get Envoy's zone-aware routing). " +
				"A Service's edsync.io/topology annotation overrides it"},
		&cli.StringFlag{Name: "local-zone", Category: catTopology, EnvVars: env("LOCAL_ZONE"),
			Usage: "the `ZONE` Envoy runs in, which --topology prefers (default: the zone label of the --node-name Node)"},
		&cli.StringFlag{Name: "node-name", Category: catTopology, EnvVars: env("NODE_NAME"),
			Usage: "the `NAME` of the Node Envoy runs on, from the downward API's spec.nodeName: its topology.kubernetes.io/zone label is the local zone " +
				"and hints for it are preferred (reads that Node: RBAC list/watch on nodes)"},
		&cli.BoolFlag{Name: "node-topology", Category: catTopology, EnvVars: env("NODE_TOPOLOGY"),
			Usage: "read every Node: each endpoint's locality gets its Node's topology.kubernetes.io/region label and --subzone-label (RBAC list/watch on nodes)"},
		&cli.StringFlag{Name: "subzone-label", Category: catTopology, EnvVars: env("SUBZONE_LABEL"), Value: watch.DefaultSubZoneLabel,
			Usage: "Node `LABEL` whose value is the locality's sub-zone, with --node-topology"},
		&cli.StringFlag{Name: "local-cluster", Category: catTopology, EnvVars: env("LOCAL_CLUSTER"),
			Usage: "for Envoy's zone-aware routing (topology mode zone-aware): the cluster `NAME` of the callers' own endpoints, " +
				"Envoy's cluster_manager.local_cluster_name. It is left out of the CDS file (Envoy wants it static); envoy-config --cds puts it in the bootstrap, " +
				"with node.locality from the local zone and region settings"},
		&cli.StringFlag{Name: "region", Category: catTopology, EnvVars: env("REGION"),
			Usage: "`REGION` of the localities whose Node gives none (or all, without --node-topology)"},
		&cli.BoolFlag{Name: "watch-services", Category: catTopology, EnvVars: env("WATCH_SERVICES"),
			Usage: "read the Service objects (RBAC list/watch on services): their edsync.io/ annotations and their port numbers (.PortNumber in " +
				"--cluster-name-template); without it, edsync.io/ annotations are not read"},
		&cli.BoolFlag{Name: "endpoint-metadata", Category: catTopology, EnvVars: env("ENDPOINT_METADATA"),
			Usage: "add each endpoint's pod, namespace, node and zone to its metadata, for access logs and subset load balancing"},
		&cli.StringFlag{Name: "endpoint-metadata-key", Category: catTopology, EnvVars: env("ENDPOINT_METADATA_KEY"), Value: render.DefaultMetadataKey,
			Usage: "filter_metadata `KEY` of --endpoint-metadata"},

		&cli.StringFlag{Name: "log-level", Category: catLogging, EnvVars: env("LOG_LEVEL"), Value: "info",
			Usage: "`LEVEL`: debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Category: catLogging, EnvVars: env("LOG_FORMAT"), Value: "text",
			Usage: "`FORMAT` of log lines: text or json"},

		&cli.StringFlag{Name: "http-addr", Category: catMonitor, EnvVars: env("HTTP_ADDR"), Value: defaultHTTPAddr,
			Usage: "serve /metrics (Prometheus), /healthz, /readyz and /debug/clusters (edsync status) on `ADDR` (HOST:PORT); \"off\" or \"\" serves nothing, nor does --once"},
		&cli.StringFlag{Name: "envoy-admin", Category: catMonitor, EnvVars: env("ENVOY_ADMIN"),
			Usage: "read Envoy back from its admin at `URL` (http://127.0.0.1:9901): which files it applied, which it refused (metrics, " +
				"an Error line per refused version, edsync status); off by default"},
		&cli.DurationFlag{Name: "envoy-poll-interval", Category: catMonitor, EnvVars: env("ENVOY_POLL_INTERVAL"), Value: time.Second,
			Usage: "with --envoy-admin: read Envoy back every `DURATION` (doubling up to 30s while its admin does not answer)"},
		&cli.BoolFlag{Name: "ready-waits-for-envoy", Category: catMonitor, EnvVars: env("READY_WAITS_FOR_ENVOY"),
			Usage: "with --envoy-admin: /readyz also waits until Envoy has applied every file it reads (once), so that a rollout does not go on while Envoy runs on nothing"},
		&cli.StringFlag{Name: "pprof-addr", Category: catMonitor, EnvVars: env("PPROF_ADDR"),
			Usage: "serve Go's profiles (/debug/pprof/) on `ADDR`, a listener of its own (:PORT binds 127.0.0.1); off by default, never on --http-addr"},
	}
}

// defaultMaxFileSize is --max-file-size's default. A file takes twice its
// size while it is replaced (the old one and the temp file), and the
// sidecar example's memory volume is 64 MiB: 16 MiB leaves room for the
// other files. It holds a Service of about 95,000 endpoints in JSON (48,000
// with --endpoint-metadata) and 360,000 in pb (docs/performance.md, "File size per endpoint").
const defaultMaxFileSize = "16Mi"

// parseSize reads a size in bytes: a whole number, or one followed by Ki,
// Mi or Gi (powers of 1024, as in Kubernetes quantities).
func parseSize(s string) (int, error) {
	num, shift := s, 0
	for i, suffix := range []string{"Ki", "Mi", "Gi"} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			num, shift = n, 10*(i+1)
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil || n > math.MaxInt32>>shift {
		return 0, fmt.Errorf("%q is not a size: want bytes, or a whole number with Ki, Mi or Gi, under 2Gi", s)
	}
	return int(n << shift), nil
}
