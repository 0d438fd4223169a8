package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/edsync/edsync/internal/metrics"
	"github.com/edsync/edsync/pipeline"
	"github.com/edsync/edsync/readback"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/status"
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
	board := newBoard(cfg)
	p, api, err := newPipeline(cfg, log, pipelineDeps{stdout: stdout, metrics: m, sourceStatus: m.Sources, status: board})
	if err != nil {
		return err
	}
	log.Info("edsync starting", "version", buildVersion(), "source", sourceName(cfg),
		"output_dir", cfg.outputDir, "format", cfg.format, "layout", cfg.layout, "dry_run", cfg.dryRun, "once", cfg.once,
		"config", cfg.configFile, "topology", cfg.render.Topology, "node_name", cfg.nodes.Name,
		"node_topology", cfg.nodes.All, "watch_services", cfg.watchServices)
	m.ConfigLoadedAtStart(time.Now())
	// With --once edsync exits before anyone could scrape or probe it (and
	// an init container has no probes): it serves nothing.
	if cfg.httpAddr != "" && !cfg.once {
		var sources func() []watch.SourceStatus
		if api != nil && api.clusters != nil {
			sources = api.clusters.Status
		}
		m.Ready(p.Ready) // the files', as /readyz/files: what an alert on a stuck start needs
		var probes probes = p
		if cfg.readyEnvoy {
			probes = &envoyReadiness{probes: p, board: board}
		}
		_, stop, err := serveHTTP(cfg.httpAddr, httpHandler(m, probes, sources, board), log.With("component", "http"))
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.pprofAddr != "" && !cfg.once {
		_, stop, err := servePprof(cfg.pprofAddr, log.With("component", "pprof"))
		if err != nil {
			return err
		}
		defer stop()
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() { stop(); <-done }()
	if cfg.envoyAdmin != nil && !cfg.once && !cfg.dryRun {
		poller, err := readback.New(readback.Options{Admin: cfg.envoyAdmin, Interval: cfg.envoyPoll, Board: board,
			Logger: log, Metrics: m})
		if err != nil {
			return usageError{err}
		}
		polled := make(chan struct{})
		defer func() { <-polled }()
		go func() {
			defer close(polled)
			poller.Run(rctx)
		}()
	}
	if cfg.configFile != "" && !cfg.once {
		r := newReloader(cfg, p, api, m, level, log)
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

// newReloader follows the config file for the pipeline p and its API
// watches (nil for a folder), counting each reload in m.
func newReloader(cfg *config, p *pipeline.Pipeline, api *apiWatch, m *metrics.Metrics, level *slog.LevelVar, log *slog.Logger) *reloader {
	return &reloader{
		current:  cfg,
		log:      log.With("component", "config"),
		apply:    func(next *config) error { return apply(p, api, next, level) },
		onResult: func(err error) { m.ConfigReloaded(err, time.Now()) },
	}
}

// moveError is a failure to move the API watches on a reload: the config
// is valid, and trying it again may work.
type moveError struct{ err error }

func (e moveError) Error() string { return e.err.Error() }
func (e moveError) Unwrap() error { return e.err }

// apply hands the settings of a reloaded config file that a running
// pipeline can change to it; see restartOnly for the others. The
// API watches move first, to the Services the new config publishes, so
// that the full flush after the reload finds their slices.
func apply(p *pipeline.Pipeline, api *apiWatch, next *config, level *slog.LevelVar) error {
	ren, err := render.New(next.render)
	if err != nil {
		return err
	}
	if api != nil {
		// Bounded as the first sync is; a watch stays as it was if its
		// new informers cannot list in time.
		ctx, cancel := context.WithTimeout(context.Background(), next.syncTimeout)
		defer cancel()
		if err := api.move(ctx, watchedServices(next)); err != nil {
			return moveError{err}
		}
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

// pipelineDeps are what newPipeline takes besides the config.
type pipelineDeps struct {
	stdout  io.Writer             // where a dry run prints
	metrics pipeline.Metrics      // nil: none
	onFlush func(pipeline.Report) // a hook for envoy-config and tests
	client  watch.API             // nil: made from the config
	// clients are the API clients of the config's named sources (tests);
	// a source missing here gets one made from the config.
	clients map[string]watch.API
	// sourceStatus gets the sources' status after each check (metrics);
	// only with the config file's sources.
	sourceStatus func([]watch.SourceStatus)
	// status is told what the files hold (nil: nothing).
	status pipeline.Status
	// inotifyDir holds the inotify sysctls; empty is
	// writer.InotifySysctlDir (tests give a folder of their own).
	inotifyDir string
}

// newPipeline makes the pipeline and its stages from the config. api is
// set when its sources read the API server (nil for a folder): a config
// reload moves their watches.
func newPipeline(cfg *config, log *slog.Logger, deps pipelineDeps) (p *pipeline.Pipeline, api *apiWatch, err error) {
	ren, err := render.New(cfg.render)
	if err != nil {
		return nil, nil, usageError{err}
	}
	w, err := writer.New(writer.Options{
		Dir:    cfg.outputDir,
		Format: cfg.format,
		Layout: cfg.layout,
		DryRun: cfg.dryRun,
		Out:    deps.stdout,
		Logger: log,

		MaxFileSize: cfg.maxFileSize,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("output: %w", err)
	}
	var cds pipeline.CDSWriter
	if cfg.cdsFile != "" {
		c, err := writer.NewCDS(writer.CDSOptions{Path: cfg.cdsFile, DryRun: cfg.dryRun, Out: deps.stdout, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("output: %w", err)
		}
		cds = c
	}
	p, err = pipeline.New(pipeline.Options{
		Logger: log.With("component", "pipeline"),
		NewSource: func(s *watch.Store, o *watch.Objects) (src watch.Source, err error) {
			clients := deps.clients
			if deps.client != nil {
				clients = map[string]watch.API{"": deps.client}
			}
			src, api, err = newSource(cfg, clients, s, o, log, deps.sourceStatus)
			return src, err
		},
		WatchObjects:  cfg.watchServices || cfg.nodes.All || cfg.nodes.Name != "",
		Renderer:      ren,
		Writer:        w,
		Declared:      declared(cfg.clusters, ren),
		Debounce:      cfg.debounce,
		MaxDelay:      cfg.maxDelay,
		NodeName:      cfg.nodes.Name,
		NodeTopology:  cfg.nodes.All,
		LocalZone:     cfg.render.LocalZone,
		Once:          cfg.once,
		SyncTimeout:   onceTimeout(cfg),
		DryRun:        cfg.dryRun,
		PruneAfter:    cfg.pruneAfter,
		CDS:           cds,
		CDSDebounce:   cfg.cdsDebounce,
		LocalCluster:  cfg.localCluster,
		InotifyLimits: inotifyLimits(cfg, deps),
		Metrics:       deps.metrics,
		Status:        deps.status,
		OnFlush:       deps.onFlush,
	})
	return p, api, err
}

// newBoard makes the status view of a run: the files of cfg's output
// folder, and its CDS file.
func newBoard(cfg *config) *status.Board {
	return status.NewBoard(func(cluster string) string {
		path, _ := cfg.layout.Path(cfg.outputDir, cluster, cfg.format) // a name it refuses is never written
		return path
	}, cfg.cdsFile, nil)
}

// inotifyLimits reads the limits that bound an Envoy reading the files;
// nil in a dry run, which writes none.
func inotifyLimits(cfg *config, deps pipelineDeps) func() (writer.InotifyLimits, error) {
	if cfg.dryRun {
		return nil
	}
	dir := cmp.Or(deps.inotifyDir, writer.InotifySysctlDir)
	return func() (writer.InotifyLimits, error) { return writer.ReadInotifyLimits(dir) }
}

// declared is every cluster whose file must exist: those of --cluster and
// those of the config file's list.
func declared(flagged []string, ren *render.Renderer) []string {
	out := slices.Concat(flagged, ren.Declared())
	slices.Sort(out)
	return slices.Compact(out)
}

// onceTimeout bounds --once's wait for the first sync. With the config
// file's sources, watch.Clusters gives up on the missing ones at
// --sync-timeout and publishes what it has: the pipeline's own limit comes
// later, for a sync stuck elsewhere (the Services or Nodes).
func onceTimeout(cfg *config) time.Duration {
	if len(cfg.sources) > 0 {
		return cfg.syncTimeout + cfg.syncTimeout/2
	}
	return cfg.syncTimeout
}
