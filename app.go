package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	goruntime "runtime"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/edsync/edsync/internal/metrics"
	"github.com/edsync/edsync/pipeline"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

var klogOnce sync.Once

// start wires the stages for one run of edsync. Each value on hup (SIGHUP)
// reloads the config file.
func start(ctx context.Context, cfg *config, hup <-chan os.Signal, stdout, stderr io.Writer) error {
	level := new(slog.LevelVar)
	log := newLogger(cfg, level, stderr)
	// client-go logs through klog; send it to the same handler so every
	// line has one format. klog's logger is process-global: set it once,
	// before any informer reads it.
	klogOnce.Do(func() { klog.SetSlogLogger(log.With("component", "client-go")) })
	if !cfg.dryRun {
		release, err := claimOutputDir(cfg.outputDir, log)
		if err != nil {
			return err
		}
		defer release()
	}
	m := metrics.New(buildVersion())
	p, err := newPipeline(cfg, log, stdout, m, nil)
	if err != nil {
		return err
	}
	log.Info("edsync starting", "version", buildVersion(), "source", sourceName(cfg),
		"output_dir", cfg.outputDir, "format", cfg.format, "dry_run", cfg.dryRun, "once", cfg.once,
		"config", cfg.configFile, "topology", cfg.render.Topology, "node_name", cfg.nodes.Name,
		"node_topology", cfg.nodes.All, "watch_services", cfg.watchServices)
	m.ConfigLoadedAtStart(time.Now())
	// With --once edsync exits before anyone could scrape or probe it (and
	// an init container has no probes): it serves nothing.
	if cfg.httpAddr != "" && !cfg.once {
		_, stop, err := serveHTTP(cfg.httpAddr, httpHandler(m, p), log.With("component", "http"))
		if err != nil {
			return err
		}
		defer stop()
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() { stop(); <-done }()
	if cfg.configFile != "" && !cfg.once {
		r := newReloader(cfg, p, m, level, log)
		r.hup = hup
		go func() {
			defer close(done)
			if err := r.Run(rctx); err != nil {
				log.Error("config file not followed; changes need a restart", "error", err)
			}
		}()
	} else {
		why := "no --config file"
		if cfg.configFile != "" {
			why = "--once does not follow the config file"
		}
		go func() {
			defer close(done)
			logHangups(rctx, hup, log, why)
		}()
	}
	return p.Run(ctx)
}

// logHangups says, for each SIGHUP until ctx ends, that there is nothing to
// reload: a SIGHUP must not kill edsync (its default action) even when
// nothing follows it.
func logHangups(ctx context.Context, hup <-chan os.Signal, log *slog.Logger, why string) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: nothing to reload", "reason", why)
		}
	}
}

// newReloader follows the config file for the pipeline p, counting each
// reload in m.
func newReloader(cfg *config, p *pipeline.Pipeline, m *metrics.Metrics, level *slog.LevelVar, log *slog.Logger) *reloader {
	return &reloader{
		current:  cfg,
		log:      log.With("component", "config"),
		apply:    func(next *config) error { return apply(p, next, level) },
		onResult: func(err error) { m.ConfigReloaded(err, time.Now()) },
	}
}

// apply hands the settings of a reloaded config file that a running
// pipeline can change to it; see restartOnly for the others.
func apply(p *pipeline.Pipeline, next *config, level *slog.LevelVar) error {
	ren, err := render.New(next.render)
	if err != nil {
		return err
	}
	level.Set(next.logLevel)
	p.Reconfigure(pipeline.Live{
		Renderer:  ren,
		Declared:  declared(next.clusters, ren),
		Debounce:  next.debounce,
		MaxDelay:  next.maxDelay,
		LocalZone: next.render.LocalZone,
	})
	return nil
}

func sourceName(cfg *config) string {
	if cfg.fromDir != "" {
		return "dir:" + cfg.fromDir
	}
	return "kubernetes"
}

// newPipeline makes the pipeline and its stages from the config, reporting
// to m (nil: no metrics); onFlush is a hook for envoy-config and tests.
func newPipeline(cfg *config, log *slog.Logger, stdout io.Writer, m pipeline.Metrics, onFlush func(pipeline.Report)) (*pipeline.Pipeline, error) {
	ren, err := render.New(cfg.render)
	if err != nil {
		return nil, usageError{err}
	}
	w, err := writer.New(writer.Options{
		Dir:    cfg.outputDir,
		Format: cfg.format,
		DryRun: cfg.dryRun,
		Out:    stdout,
		Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	return pipeline.New(pipeline.Options{
		Logger:       log.With("component", "pipeline"),
		NewSource:    func(s *watch.Store, o *watch.Objects) (watch.Source, error) { return newSource(cfg, s, o, log) },
		WatchObjects: cfg.watchServices || cfg.nodes.All || cfg.nodes.Name != "",
		Renderer:     ren,
		Writer:       w,
		Declared:     declared(cfg.clusters, ren),
		Debounce:     cfg.debounce,
		MaxDelay:     cfg.maxDelay,
		NodeName:     cfg.nodes.Name,
		NodeTopology: cfg.nodes.All,
		LocalZone:    cfg.render.LocalZone,
		Once:         cfg.once,
		SyncTimeout:  cfg.syncTimeout,
		DryRun:       cfg.dryRun,
		PruneAfter:   cfg.pruneAfter,
		Metrics:      m,
		OnFlush:      onFlush,
	})
}

// newSource makes the sources the config names, feeding store and objects
// (nil unless Services or Nodes are read).
func newSource(cfg *config, store *watch.Store, objects *watch.Objects, log *slog.Logger) (watch.Source, error) {
	if cfg.fromDir != "" {
		return watch.NewDir(watch.DirOptions{
			Dir: cfg.fromDir, Namespaces: cfg.namespaces, Selector: cfg.selector, Services: cfg.services,
			Store: store, Logger: log,
			Objects: objects, WatchServices: cfg.watchServices, Nodes: cfg.nodes,
		})
	}

	rc, err := restConfig(cfg)
	if err != nil {
		return nil, err
	}
	// Who is asking, in the API server's logs and audit events: not
	// client-go's default, which names the binary and an unset version.
	rc.UserAgent = fmt.Sprintf("edsync/%s (%s/%s)", buildVersion(), goruntime.GOOS, goruntime.GOARCH)
	// Protobuf on the wire, as kube-proxy and the controllers ask for it:
	// less CPU per event for the API server and for edsync than JSON,
	// which stays the fallback for a server (or proxy) without it.
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	src, err := watch.NewKube(watch.KubeOptions{
		Client: client, Namespaces: cfg.namespaces, Selector: cfg.selector, Services: cfg.services,
		Store: store, Logger: log,
	})
	if err != nil {
		return nil, usageError{err}
	}
	all := []watch.Source{src}
	if cfg.watchServices {
		svc, err := watch.NewKubeServices(watch.KubeServicesOptions{
			Client: client, Namespaces: cfg.namespaces, Services: cfg.services, Objects: objects, Logger: log,
		})
		if err != nil {
			return nil, usageError{err}
		}
		all = append(all, svc)
	}
	if cfg.nodes.All || cfg.nodes.Name != "" {
		nodes, err := watch.NewKubeNodes(watch.KubeNodesOptions{Client: client, Nodes: cfg.nodes, Objects: objects, Logger: log})
		if err != nil {
			return nil, usageError{err}
		}
		all = append(all, nodes)
	}
	return watch.Group(all...), nil
}

// declared is every cluster whose file must exist: those of --cluster and
// those of the config file's list.
func declared(flagged []string, ren *render.Renderer) []string {
	out := slices.Concat(flagged, ren.Declared())
	slices.Sort(out)
	return slices.Compact(out)
}

// restConfig uses in-cluster credentials when edsync runs in a Pod and no
// kubeconfig is named, else the kubeconfig (--kubeconfig, $KUBECONFIG or
// ~/.kube/config) and --context.
func restConfig(cfg *config) (*rest.Config, error) {
	if cfg.kubeconfig == "" && cfg.kubeContext == "" {
		rc, err := rest.InClusterConfig()
		if err == nil {
			return rc, nil
		}
		if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("in-cluster credentials: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if cfg.kubeconfig != "" {
		rules.ExplicitPath = cfg.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: cfg.kubeContext})
	rc, err := cc.ClientConfig()
	// What the flags name (or fail to name) does not work: usage errors,
	// before anything starts.
	if clientcmd.IsEmptyConfig(err) {
		return nil, usagef("no Kubernetes credentials: not running in a Pod and no kubeconfig found (use --kubeconfig, or --from-dir to read manifests)")
	}
	if err != nil {
		return nil, usagef("kubeconfig: %v", err)
	}
	return rc, nil
}
