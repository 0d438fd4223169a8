package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// reloadSettle is how long the config file's folder must be quiet before the
// file is read again: an editor or `kubectl cp` writing in place fires
// several events, and reading between them would reject a half-written file.
const reloadSettle = 100 * time.Millisecond

// reloadRetry is how long a valid config file that could not be applied
// waits to be tried again.
const reloadRetry = 30 * time.Second

// reloader follows the --config file and applies each valid new version.
// It watches the file's folder, not the file: a Kubernetes ConfigMap volume
// replaces its files by swapping the `..data` symlink, and editors replace
// files by renaming, both of which a watch on the file itself would miss.
type reloader struct {
	current *config
	// last is the content read last, valid or not: the same content is
	// not tried, logged and counted twice.
	last    []byte
	started bool
	log     *slog.Logger
	// apply installs a new config in the running process.
	apply func(*config) error
	// onResult is called after each attempt with its outcome: metrics and
	// tests use it.
	onResult func(err error)
	// hup delivers SIGHUP, which reloads the file even if no change was
	// seen, as consul-template and Prometheus do.
	hup <-chan os.Signal
}

// Run follows the file until ctx ends.
func (r *reloader) Run(ctx context.Context) error {
	path := r.current.configFile
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config file %s: watch: %w", path, err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(path)); err != nil {
		return fmt.Errorf("config file %s: watch its folder: %w", path, err)
	}
	// The file may have changed between the first read and the watch.
	settle := time.NewTimer(0)
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			r.log.Debug("config folder event", "event", ev.String())
			settle.Reset(reloadSettle)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events: read the file anyway.
			r.log.Warn("config file watch error; checking the file", "error", err)
			settle.Reset(reloadSettle)
		case <-settle.C:
			if r.check(false) {
				settle.Reset(reloadRetry)
			}
		case <-r.hup:
			r.log.Info("SIGHUP: reloading the config file", "path", path)
			if r.check(true) {
				settle.Reset(reloadRetry)
			}
		}
	}
}

// check reads the file and applies it if its bytes changed, or even if not
// when forced. An invalid file is refused as a whole and the running config
// stays. A valid file that could not be applied (the watch could not move
// in time) is tried again: check then says to retry.
func (r *reloader) check(force bool) (retry bool) {
	path := r.current.configFile
	if !r.started {
		r.started = true
		if r.current.file != nil {
			r.last = r.current.file.data
		}
	}
	data, err := os.ReadFile(path)
	if err == nil && bytes.Equal(data, r.last) && !force {
		return false
	}
	if err == nil {
		// A file that could not be read for a moment and comes back the
		// same is no change.
		r.last = data
	}
	next, err := r.load(data, err)
	var changed []string
	if err == nil {
		changed = restartOnly(r.current, next)
		// The sources' connections start with the process; their places
		// stay with them until the restart too.
		next.sources, next.render.Sources, next.render.NodesFrom = r.current.sources, r.current.render.Sources, r.current.render.NodesFrom
		next.render.SourceAddresses = r.current.render.SourceAddresses
		if err = r.apply(next); errors.As(err, new(moveError)) {
			r.last, retry = nil, true
			err = fmt.Errorf("%w (trying again in %s)", err, reloadRetry)
		}
	}
	if err != nil {
		r.log.Error("config file rejected; the running configuration stays", "path", path, "error", oneLine(err))
	} else {
		if len(changed) > 0 {
			r.log.Warn("config file changes settings that take effect at the next restart", "path", path, "settings", changed)
		}
		r.current = next
		r.log.Info("config file reloaded", "path", path, "clusters", len(next.render.Clusters))
	}
	if r.onResult != nil {
		r.onResult(err)
	}
	return retry
}

func (r *reloader) load(data []byte, readErr error) (*config, error) {
	path := r.current.configFile
	if readErr != nil {
		return nil, fmt.Errorf("config file: %w", readErr)
	}
	fc, err := parseConfigFile(data, flags())
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	fc.path = path
	return r.current.reread(fc)
}

// restartOnly names the settings that differ between a and b and that a
// running edsync does not change: its source, output and listeners.
func restartOnly(a, b *config) []string {
	var changed []string
	check := func(name string, same bool) {
		if !same {
			changed = append(changed, name)
		}
	}
	check("kubeconfig", a.kubeconfig == b.kubeconfig)
	check("context", a.kubeContext == b.kubeContext)
	check("namespace", slices.Equal(a.namespaces, b.namespaces))
	check("selector", a.selector == b.selector)
	// The API watches follow service: (see apiWatch); a folder's does not.
	check("service", slices.Equal(a.services, b.services) || a.fromDir == "")
	check("from-dir", a.fromDir == b.fromDir)
	check("sync-timeout", a.syncTimeout == b.syncTimeout)
	check("output-dir", a.outputDir == b.outputDir)
	check("format", a.format == b.format)
	check("layout", a.layout == b.layout)
	check("dry-run", a.dryRun == b.dryRun)
	check("once", a.once == b.once)
	check("max-file-size", a.maxFileSize == b.maxFileSize)
	check("prune-after", a.pruneAfter == b.pruneAfter)
	check("source-stale-after", a.sourceStaleAfter == b.sourceStaleAfter)
	check("mcs", a.mcs == b.mcs)
	check("sources", slices.EqualFunc(a.sources, b.sources, func(x, y sourceConfig) bool {
		return x.name == y.name && x.kubeconfig == y.kubeconfig && x.context == y.context && x.inCluster == y.inCluster &&
			slices.Equal(x.namespaces, y.namespaces) && x.selector == y.selector
	}) && maps.Equal(a.render.Sources, b.render.Sources) &&
		maps.EqualFunc(a.render.SourceAddresses, b.render.SourceAddresses, slices.Equal))
	check("cds-file", a.cdsFile == b.cdsFile)
	check("local-cluster", a.localCluster == b.localCluster)
	check("cds-debounce", a.cdsDebounce == b.cdsDebounce)
	check("log-format", a.logFormat == b.logFormat)
	check("envoy-admin", (a.envoyAdmin == nil) == (b.envoyAdmin == nil) && (a.envoyAdmin == nil || *a.envoyAdmin == *b.envoyAdmin))
	check("envoy-poll-interval", a.envoyPoll == b.envoyPoll)
	check("ready-waits-for-envoy", a.readyEnvoy == b.readyEnvoy)
	check("pprof-addr", a.pprofAddr == b.pprofAddr)
	// The Node and Service informers start with the process.
	check("node-name", a.nodes.Name == b.nodes.Name)
	check("node-topology", a.nodes.All == b.nodes.All)
	check("subzone-label", a.nodes.SubZoneLabel == b.nodes.SubZoneLabel)
	check("watch-services", a.watchServices == b.watchServices)
	return changed
}
