package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // a run that started and failed
	exitUsage   = 2 // bad flags or flag combinations
)

// usageError marks an error in what the user asked for: one line, exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// run is the whole program: it owns its output streams and returns the exit
// code, so tests drive it like a user would.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, hup, stop := signalContext()
	defer stop()
	return runWith(ctx, hup, args, stdout, stderr)
}

// runContext is run with ctx in place of the signals: tests stop it by
// cancelling ctx.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, nil, args, stdout, stderr)
}

// runWith runs edsync until ctx ends; each value on hup (SIGHUP) reloads
// the --config file.
func runWith(ctx context.Context, hup <-chan os.Signal, args []string, stdout, stderr io.Writer) int {
	started := false // the Action ran: later errors are runtime failures
	// --help and --version go through help, wrapped to the terminal.
	help := &helpWriter{out: stdout, width: helpWidth(stdout)}
	app := &cli.App{
		Name:  "edsync",
		Usage: "write Kubernetes EndpointSlices as Envoy file-based EDS",
		Description: "edsync watches EndpointSlices, renders one Envoy ClusterLoadAssignment per Service port and " +
			"writes it atomically to a file that an Envoy cluster's eds_config path_config_source names.\n\n" +
			"Every flag can also be set by the environment variable shown beside it, or by its name as a key of the --config file.",
		Version:         buildVersion(),
		Flags:           flags(),
		Writer:          help,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		Commands:        []*cli.Command{envoyConfigCommand(stdout, stderr, &started), statusCommand(stdout)},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{flagError(err)}
		},
		// Errors come back from RunContext; main decides the exit code.
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			cfg, err := configFrom(c)
			if err != nil {
				return err
			}
			started = true
			return start(c.Context, cfg, hup, stdout, stderr)
		},
	}
	err := app.RunContext(ctx, args)
	help.Flush()
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "edsync: %v (see --help)\n", oneLine(ue.err))
		return exitUsage
	case !started && isFlagError(err):
		// urfave/cli reports bad environment values this way.
		fmt.Fprintf(stderr, "edsync: %v (see --help)\n", oneLine(flagError(err)))
		return exitUsage
	default:
		fmt.Fprintf(stderr, "edsync: %v\n", oneLine(err))
		return exitFailure
	}
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// signalContext cancels on the first SIGINT or SIGTERM, so edsync flushes
// what is pending and exits 0; a second signal exits at once. SIGHUP is
// handed over on its channel: it asks for a reload of --config.
func signalContext() (context.Context, <-chan os.Signal, func()) { return signalContextExit(os.Exit) }

// signalContextExit is signalContext with the exit injected, for its test.
func signalContextExit(exit func(int)) (context.Context, <-chan os.Signal, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	// Caught from the start, before the flags are even read: SIGHUP's
	// default action kills the process. A full channel drops the signal,
	// which is what a reload wants: several coalesce into one.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
			return
		}
		<-sigs
		fmt.Fprintln(os.Stderr, "edsync: second signal, exiting now")
		exit(exitFailure)
	}()
	return ctx, hup, func() { signal.Stop(sigs); signal.Stop(hup); cancel() }
}

// config is everything the flags say, checked.
type config struct {
	kubeconfig, kubeContext string
	namespaces              []string
	selector                string
	services                []render.ServiceKey
	fromDir                 string
	syncTimeout             time.Duration

	outputDir string
	format    writer.Format
	layout    writer.Layout
	clusters  []string
	dryRun    bool
	once      bool
	// pruneAfter is how long the emptied file of a cluster no Service
	// publishes stays before it is removed; 0 keeps it.
	pruneAfter time.Duration
	// maxFileSize bounds each cluster's file, in bytes; 0: no bound.
	maxFileSize int

	debounce, maxDelay time.Duration
	render             render.Options

	// cdsFile is the CDS file ("" writes none), cdsDebounce how long its
	// changes wait for quiet; render.Cluster has what its clusters get.
	cdsFile string
	// localCluster is Envoy's local cluster for zone-aware routing
	// (--local-cluster): out of the CDS file, static in envoy-config --cds.
	localCluster string
	cdsDebounce  time.Duration

	// sources are the Kubernetes clusters of the config file's sources
	// list (their places in render.Sources); nil: one source, from the
	// flags.
	sources []sourceConfig
	// sourceStaleAfter is how long an unreachable source's endpoints stay.
	sourceStaleAfter time.Duration
	// mcs reads the slices of ServiceImports too.
	mcs bool

	// Topology sources. The local zone and node are also in render
	// (LocalZone is --local-zone's there; the pipeline sets the Node's).
	nodes         watch.NodeOptions
	watchServices bool

	logLevel  slog.Level
	logFormat string
	httpAddr  string // "" serves nothing

	// envoyAdmin is Envoy's admin to read back (nil: none), polled every
	// envoyPoll; readyEnvoy makes /readyz wait for Envoy.
	envoyAdmin *url.URL
	envoyPoll  time.Duration
	readyEnvoy bool
	pprofAddr  string // "" serves none

	configFile string
	file       *fileConfig // as read at start or at the last reload
	// reread reads the flags again over a new version of the config file.
	reread func(*fileConfig) (*config, error)
}

// configFrom reads and checks the settings of a run of edsync: flags,
// EDSYNC_* variables and the --config file.
func configFrom(c *cli.Context) (*config, error) { return readConfig(c, true) }

// readConfig reads the settings for a run of edsync, or (run false) for
// envoy-config, which writes nothing and places no endpoints: the checks of
// what only a run uses are left out. Errors are usage errors.
func readConfig(c *cli.Context, run bool) (*config, error) {
	if c.NArg() > 0 {
		return nil, usagef("unexpected argument %q", c.Args().First())
	}
	var fc *fileConfig
	if path := c.String("config"); path != "" {
		var err error
		if fc, err = readConfigFile(path, flags()); err != nil {
			return nil, usageError{err}
		}
	}
	cfg, err := configWith(c, fc, run)
	if err != nil {
		return nil, err
	}
	// Checked at start only: a reload changes neither path.
	if err := checkPaths(cfg, run); err != nil {
		return nil, err
	}
	return cfg, nil
}

// configWith reads the flags over the config file (nil if none) and checks
// them. Errors are usage errors: one line, naming the flag or file key.
func configWith(c *cli.Context, fc *fileConfig, run bool) (*config, error) {
	l := &layered{c: c, file: fc}
	cfg, err := readSettings(l)
	if err == nil && l.err != nil {
		err = usageError{l.err}
	}
	if err == nil && run {
		err = checkRun(cfg)
	}
	if err != nil {
		return nil, err
	}
	cfg.configFile, cfg.file = c.String("config"), fc
	cfg.reread = func(fc *fileConfig) (*config, error) { return configWith(c, fc, run) }
	if err := fc.readSources(cfg); err != nil {
		return nil, usageError{err}
	}
	if err := fc.clusterTemplates(&cfg.render.Cluster); err != nil {
		return nil, usageError{err}
	}
	if cfg.render.Clusters, err = fc.clusterSpecs(cfg.render); err != nil {
		return nil, usageError{err}
	}
	if err := checkListedServices(cfg, fc); err != nil {
		return nil, err
	}
	// render.New checks the cluster names (the template's included) for
	// duplicates, so a bad list is refused before anything runs.
	if _, err := render.New(cfg.render); err != nil {
		return nil, usageError{fmt.Errorf("clusters: %w", err)}
	}
	return cfg, nil
}

func readSettings(c settings) (*config, error) {
	cfg := &config{
		kubeconfig:       c.String("kubeconfig"),
		kubeContext:      c.String("context"),
		namespaces:       nonEmpty(c.StringSlice("namespace")),
		selector:         c.String("selector"),
		fromDir:          c.String("from-dir"),
		syncTimeout:      c.Duration("sync-timeout"),
		sourceStaleAfter: c.Duration("source-stale-after"),
		mcs:              c.Bool("mcs"),
		outputDir:        c.String("output-dir"),
		clusters:         nonEmpty(c.StringSlice("cluster")),
		dryRun:           c.Bool("dry-run"),
		once:             c.Bool("once"),
		pruneAfter:       c.Duration("prune-after"),
		cdsFile:          c.String("cds-file"),
		cdsDebounce:      c.Duration("cds-debounce"),
		debounce:         c.Duration("debounce"),
		maxDelay:         c.Duration("max-delay"),
		logFormat:        c.String("log-format"),
	}
	var err error
	if cfg.fromDir != "" && (cfg.kubeconfig != "" || cfg.kubeContext != "") {
		return nil, usagef("--from-dir reads manifests, not a cluster: drop --kubeconfig/--context")
	}
	if _, err := labels.Parse(cfg.selector); err != nil {
		return nil, usagef("invalid --selector %q: %v", cfg.selector, err)
	}
	for _, s := range nonEmpty(c.StringSlice("service")) {
		ns, name, ok := strings.Cut(s, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, usagef("invalid --service %q: want NAMESPACE/NAME", s)
		}
		key := render.ServiceKey{Namespace: ns, Name: name}
		if len(cfg.namespaces) > 0 && !slices.Contains(cfg.namespaces, ns) {
			// Neither the API server nor a folder would ever give its slices.
			return nil, usagef("--service %s is outside the watched namespaces (--namespace %s)", key, strings.Join(cfg.namespaces, ","))
		}
		cfg.services = append(cfg.services, key)
	}
	if cfg.format, err = writer.ParseFormat(c.String("format")); err != nil {
		return nil, usagef("--format: %v", err)
	}
	if cfg.layout, err = writer.ParseLayout(c.String("layout")); err != nil {
		return nil, usagef("--layout: %v", err)
	}
	if _, err = render.ParseClusterNameTemplate(c.String("cluster-name-template")); err != nil {
		return nil, usagef("--cluster-name-template: %v", err)
	}
	cfg.render.ClusterNameTemplate = c.String("cluster-name-template")
	if list := nonEmpty(c.StringSlice("allowed-addresses")); len(list) > 0 {
		if cfg.render.AllowedAddresses, err = render.ParsePrefixes(list); err != nil {
			return nil, usagef("--allowed-addresses: %v", err)
		}
	}
	if cfg.render.Terminating, err = render.ParseTerminating(c.String("terminating")); err != nil {
		return nil, usagef("--terminating: %v", err)
	}
	if cfg.render.NotReady, err = render.ParseNotReady(c.String("not-ready")); err != nil {
		return nil, usagef("--not-ready: %v", err)
	}
	if cfg.render.Family, err = render.ParseFamily(c.String("address-family")); err != nil {
		return nil, usagef("--address-family: %v", err)
	}
	if cfg.render.Protocol, err = render.ParseProtocol(c.String("protocol")); err != nil {
		return nil, usagef("--protocol: %v", err)
	}
	if cfg.debounce < 0 {
		return nil, usagef("--debounce: %s is negative", cfg.debounce)
	}
	if cfg.maxDelay < 0 {
		return nil, usagef("--max-delay: %s is negative", cfg.maxDelay)
	}
	if cfg.render.MaxClustersPerNamespace = c.Int("max-clusters-per-namespace"); cfg.render.MaxClustersPerNamespace < 0 {
		return nil, usagef("--max-clusters-per-namespace: %d is negative", cfg.render.MaxClustersPerNamespace)
	}
	if cfg.maxFileSize, err = parseSize(c.String("max-file-size")); err != nil {
		return nil, usagef("--max-file-size: %v", err)
	}
	if cfg.pruneAfter < 0 {
		return nil, usagef("--prune-after: %s is negative", cfg.pruneAfter)
	}
	if cfg.cdsFile != "" {
		if _, err := writer.CDSFormat(cfg.cdsFile); err != nil {
			return nil, usagef("--cds-file %v", err)
		}
	}
	if cfg.cdsDebounce < 0 {
		return nil, usagef("--cds-debounce: %s is negative", cfg.cdsDebounce)
	}
	cfg.render.Cluster.ConnectTimeout = c.Duration("connect-timeout")
	if cfg.render.Cluster.ConnectTimeout <= 0 {
		return nil, usagef("--connect-timeout: %s is not positive", cfg.render.Cluster.ConnectTimeout)
	}
	if cfg.mcs && cfg.fromDir != "" {
		return nil, usagef("--mcs reads ServiceImports' slices from the API server, not with --from-dir")
	}
	if cfg.sourceStaleAfter < 0 {
		return nil, usagef("--source-stale-after: %s is negative", cfg.sourceStaleAfter)
	}
	if cfg.syncTimeout <= 0 {
		return nil, usagef("--sync-timeout: %s is not positive", cfg.syncTimeout)
	}
	if cfg.maxDelay < cfg.debounce {
		return nil, usagef("--max-delay (%s) must not be shorter than --debounce (%s)", cfg.maxDelay, cfg.debounce)
	}
	if err := cfg.logLevel.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usagef("invalid --log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	if cfg.logFormat != "text" && cfg.logFormat != "json" {
		return nil, usagef("invalid --log-format %q: want text or json", cfg.logFormat)
	}
	if cfg.httpAddr, err = parseHTTPAddr(c.String("http-addr")); err != nil {
		return nil, err
	}
	if err := readEnvoyAdmin(c, cfg); err != nil {
		return nil, err
	}
	if err := readTopology(c, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// readEnvoyAdmin reads the flags of the read-back of Envoy and of pprof.
func readEnvoyAdmin(c settings, cfg *config) error {
	if s := c.String("envoy-admin"); s != "" {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
			return usagef("invalid --envoy-admin %q: want Envoy's admin as http://HOST:PORT", s)
		}
		cfg.envoyAdmin = u
	}
	if cfg.envoyPoll = c.Duration("envoy-poll-interval"); cfg.envoyPoll <= 0 {
		return usagef("--envoy-poll-interval: %s is not positive", cfg.envoyPoll)
	}
	if cfg.readyEnvoy = c.Bool("ready-waits-for-envoy"); cfg.readyEnvoy && cfg.envoyAdmin == nil {
		return usagef("--ready-waits-for-envoy needs --envoy-admin: it is what tells whether Envoy applied the files")
	}
	if s := c.String("pprof-addr"); s != "" && s != "off" {
		host, port, err := net.SplitHostPort(s)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
			return usagef("invalid --pprof-addr %q: want HOST:PORT or :PORT", s)
		}
		if host == "" {
			// Profiles show what edsync holds: not for the network.
			host = "127.0.0.1"
		}
		cfg.pprofAddr = net.JoinHostPort(host, port)
		if cfg.pprofAddr == cfg.httpAddr {
			return usagef("--pprof-addr %s is --http-addr's: profiles get a listener of their own", s)
		}
	}
	return nil
}

// readTopology reads the flags of the Topology category.
func readTopology(c settings, cfg *config) error {
	var err error
	if cfg.render.Topology, err = render.ParseTopology(c.String("topology")); err != nil {
		return usagef("invalid --topology %q: want off, zone, hints or zone-aware", c.String("topology"))
	}
	cfg.render.LocalZone = c.String("local-zone")
	cfg.render.Region = c.String("region")
	cfg.localCluster = c.String("local-cluster")
	for _, flag := range []string{"local-zone", "region"} {
		// Both are compared with label values.
		if v := c.String(flag); len(validation.IsValidLabelValue(v)) > 0 {
			return usagef("invalid --%s %q: %s", flag, v, strings.Join(validation.IsValidLabelValue(v), "; "))
		}
	}
	cfg.nodes = watch.NodeOptions{
		All:          c.Bool("node-topology"),
		Name:         c.String("node-name"),
		SubZoneLabel: c.String("subzone-label"),
	}
	cfg.render.LocalNode = cfg.nodes.Name
	if n := cfg.nodes.Name; n != "" {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return usagef("invalid --node-name %q: %s", n, strings.Join(errs, "; "))
		}
	}
	if errs := validation.IsQualifiedName(cfg.nodes.SubZoneLabel); len(errs) > 0 {
		return usagef("invalid --subzone-label %q: %s", cfg.nodes.SubZoneLabel, strings.Join(errs, "; "))
	}
	cfg.watchServices = c.Bool("watch-services")
	if strings.Contains(cfg.render.ClusterNameTemplate, ".PortNumber") && !cfg.watchServices {
		// Without the Service objects the number is unknown (0) and every
		// cluster would be renamed once they were read.
		return usagef("--cluster-name-template uses .PortNumber, the Service's port number: it needs --watch-services")
	}
	cfg.render.EndpointMetadata = c.Bool("endpoint-metadata")
	cfg.render.MetadataKey = c.String("endpoint-metadata-key")
	if strings.TrimSpace(cfg.render.MetadataKey) == "" {
		return usagef("--endpoint-metadata-key must not be empty")
	}
	return nil
}

// nonEmpty drops empty items, which an empty environment variable gives.
func nonEmpty(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// newLogger logs at level, which a config reload may change.
func newLogger(cfg *config, level *slog.LevelVar, stderr io.Writer) *slog.Logger {
	level.Set(cfg.logLevel)
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: replaceAttr}
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}
