package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

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
	p, err := build(cfg, log, stdout)
	if err != nil {
		return err
	}
	log.Info("edsync starting", "version", buildVersion(), "source", sourceName(cfg),
		"output_dir", cfg.outputDir, "format", cfg.format, "dry_run", cfg.dryRun, "once", cfg.once,
		"config", cfg.configFile, "topology", cfg.render.Topology, "node_name", cfg.nodes.Name,
		"node_topology", cfg.nodes.All, "watch_services", cfg.watchServices)
	p.metrics.configLoadedAtStart(p.now())
	// With --once edsync exits before anyone could scrape or probe it (and
	// an init container has no probes): it serves nothing.
	if cfg.httpAddr != "" && !cfg.once {
		_, stop, err := serveHTTP(cfg.httpAddr, httpHandler(p.metrics, p.health), log.With("component", "http"))
		if err != nil {
			return err
		}
		defer stop()
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() { stop(); <-done }()
	if cfg.configFile != "" && !cfg.once {
		r := p.reloader(cfg, level, log)
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

// reloader follows the config file for the pipeline, counting each reload.
func (p *pipeline) reloader(cfg *config, level *slog.LevelVar, log *slog.Logger) *reloader {
	return &reloader{
		current:  cfg,
		log:      log.With("component", "config"),
		apply:    func(next *config) error { return p.apply(next, level) },
		onResult: func(err error) { p.metrics.configReloaded(err, p.now()) },
	}
}

// apply hands the settings of a reloaded config file that a running
// pipeline can change to it; see restartOnly for the others.
func (p *pipeline) apply(next *config, level *slog.LevelVar) error {
	ren, err := render.New(next.render)
	if err != nil {
		return err
	}
	level.Set(next.logLevel)
	p.reconfigure(&liveConfig{
		renderer:  ren,
		declared:  declared(next.clusters, ren),
		debounce:  next.debounce,
		maxDelay:  next.maxDelay,
		localZone: next.render.LocalZone,
	})
	return nil
}

func sourceName(cfg *config) string {
	if cfg.fromDir != "" {
		return "dir:" + cfg.fromDir
	}
	return "kubernetes"
}

// build makes the pipeline and its stages from the config.
func build(cfg *config, log *slog.Logger, stdout io.Writer) (*pipeline, error) {
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
	p := newPipeline(&pipeline{
		log:         log.With("component", "pipeline"),
		coalescer:   watch.NewCoalescer(cfg.debounce, cfg.maxDelay),
		renderer:    ren,
		writer:      w,
		declared:    declared(cfg.clusters, ren),
		once:        cfg.once,
		dryRun:      cfg.dryRun,
		syncTimeout: cfg.syncTimeout,
		files:       outputFiles{pruneAfter: cfg.pruneAfter},
	})
	store := p.newStore()
	p.topo.nodeName, p.topo.nodeTopology, p.topo.localZone = cfg.nodes.Name, cfg.nodes.All, cfg.render.LocalZone
	var objects *watch.Objects
	if cfg.watchServices || cfg.nodes.All || cfg.nodes.Name != "" {
		objects = watch.NewObjects(p.objectsChanged)
		p.topo.objects = objects
	}

	if cfg.fromDir != "" {
		src, err := watch.NewDir(watch.DirOptions{
			Dir: cfg.fromDir, Namespaces: cfg.namespaces, Selector: cfg.selector, Services: cfg.services,
			Store: store, Logger: log,
			Objects: objects, WatchServices: cfg.watchServices, Nodes: cfg.nodes,
		})
		if err != nil {
			return nil, err
		}
		p.source = src
		return p, nil
	}

	rc, err := restConfig(cfg)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(rest.AddUserAgent(rc, "edsync/"+buildVersion()))
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
	all := []source{src}
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
	if len(all) == 1 {
		p.source = src
	} else {
		p.source = newSources(all...)
	}
	return p, nil
}

// declared is every cluster whose file must exist: those of --cluster and
// those of the config file's list.
func declared(flagged []string, ren *render.Renderer) []string {
	out := slices.Concat(flagged, ren.Declared())
	slices.Sort(out)
	return slices.Compact(out)
}

// newStore makes the Store the sources write and the pipeline reads: its
// events and skips are counted, and the trigger times of the slices that
// change from now on are kept for the network programming latency.
func (p *pipeline) newStore() *watch.Store {
	s := watch.NewStoreWith(watch.StoreOptions{
		Notify:            p.notify,
		OnEvent:           p.metrics.sliceEvent,
		OnSkip:            p.metrics.skip,
		TriggerTimesSince: p.now(),
	})
	p.store = s
	return s
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
