package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
)

// watchedServices are the Services whose EndpointSlices edsync asks the API
// server for: the service: list (--service) if given, else the Services of
// the clusters: list, as edsync publishes nothing else then; none (every
// slice the namespaces and selector allow) without either. --cluster names
// files that must exist, not what is published: it does not narrow.
func watchedServices(cfg *config) []render.ServiceKey {
	if len(cfg.services) > 0 {
		return cfg.services
	}
	var out []render.ServiceKey
	for _, c := range cfg.render.Clusters {
		if !slices.Contains(out, c.Service) {
			out = append(out, c.Service)
		}
	}
	slices.SortFunc(out, func(a, b render.ServiceKey) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// apiWatch is what a config reload moves of the sources that read the API
// server: the EndpointSlice watch and, with watch-services, the Services'.
type apiWatch struct {
	slices   []*watch.Kube       // one per source
	clusters *watch.Clusters     // nil for one source
	services *watch.KubeServices // nil without watch-services; the first source's
	log      *slog.Logger
	timeout  time.Duration // a catch-up move's bound

	mu sync.Mutex
	// current are the Services the watches follow (nil: all).
	current []render.ServiceKey
	// behind holds the sources that were unreachable at a move (with
	// several sources): each moves when it answers again (catchUp), so
	// that one unreachable cluster does not hold the others' moves back.
	// catching holds those moving now.
	behind, catching map[*watch.Kube]bool
}

// move moves the watches to the Services a (reloaded) config publishes,
// the Services' first, so that their settings are known when their slices
// come. If one fails, all stay as they were (those moved move back), and
// the running config with them. With several sources, a source that is
// unreachable now is left behind and moved when it answers.
func (w *apiWatch) move(ctx context.Context, services []render.ServiceKey) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	unreachable := func(k *watch.Kube) bool {
		down, _, _ := k.Health()
		return w.clusters != nil && !down.IsZero()
	}
	var skip []*watch.Kube
	for _, k := range w.slices {
		if unreachable(k) {
			skip = append(skip, k)
		}
	}
	firstBehind := slices.Contains(skip, w.slices[0])
	if w.services != nil && !firstBehind {
		if err := w.services.SetServices(ctx, services); err != nil {
			return err
		}
	}
	var moved []*watch.Kube
	for _, k := range w.slices {
		if slices.Contains(skip, k) {
			continue
		}
		if err := k.SetServices(ctx, services); err != nil {
			back, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			var backErrs []error
			for _, m := range moved {
				backErrs = append(backErrs, m.SetServices(back, w.current))
			}
			if w.services != nil && !firstBehind {
				backErrs = append(backErrs, w.services.SetServices(back, w.current))
			}
			if backErr := errors.Join(backErrs...); backErr != nil {
				return fmt.Errorf("%w; and moving the other watches back failed: %w", err, backErr)
			}
			return err
		}
		moved = append(moved, k)
	}
	w.current = services
	for _, k := range moved {
		delete(w.behind, k)
	}
	for _, k := range skip {
		if w.behind == nil {
			w.behind = map[*watch.Kube]bool{}
		}
		w.behind[k] = true
		w.log.Warn("source unreachable: its watch moves to the new Services when it answers", "source", k.Source())
	}
	return nil
}

// catchUp moves the watch of a source left behind by a move, now that it
// answers (watch.Clusters calls it for each source that answers, at each
// check). With the first source go the Services' watch.
func (w *apiWatch) catchUp(k *watch.Kube) {
	w.mu.Lock()
	if !w.behind[k] || w.catching[k] {
		w.mu.Unlock()
		return
	}
	if w.catching == nil {
		w.catching = map[*watch.Kube]bool{}
	}
	w.catching[k] = true
	target := w.current
	w.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
		defer cancel()
		var err error
		if k == w.slices[0] && w.services != nil {
			err = w.services.SetServices(ctx, target)
		}
		if err == nil {
			err = k.SetServices(ctx, target)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.catching, k)
		switch {
		case err != nil:
			w.log.Warn("moving the watch of a source that answers again failed; trying again", "source", k.Source(), "err", err)
		case slices.Equal(target, w.current):
			delete(w.behind, k)
			w.log.Info("source answers again: its watch moved to the Services the config publishes", "source", k.Source())
		}
	}()
}

// newSource makes the sources the config names, feeding store and objects
// (nil unless Services or Nodes are read); api is set when they read the
// API server, through client or else a client made from the config.
func newSource(cfg *config, clients map[string]watch.API, store *watch.Store, objects *watch.Objects, log *slog.Logger,
	onStatus func([]watch.SourceStatus)) (src watch.Source, api *apiWatch, err error) {
	if cfg.fromDir != "" {
		dir, err := watch.NewDir(watch.DirOptions{
			Dir: cfg.fromDir, Namespaces: cfg.namespaces, Selector: cfg.selector, Services: cfg.services,
			Store: store, Logger: log,
			Objects: objects, WatchServices: cfg.watchServices, Nodes: cfg.nodes,
		})
		return dir, nil, err
	}
	sources := cfg.sources
	if len(sources) == 0 {
		// One source, from the flags: its slices carry no source name.
		sources = []sourceConfig{{kubeconfig: cfg.kubeconfig, context: cfg.kubeContext, namespaces: cfg.namespaces, selector: cfg.selector}}
	}
	api = &apiWatch{current: watchedServices(cfg), log: log, timeout: cfg.syncTimeout}
	var others []watch.Source
	// The Services and Nodes are read from the first source: the cluster
	// Envoy runs in, or the one listed first.
	var first watch.API
	for _, sc := range sources {
		c := clients[sc.name]
		if c == nil {
			if c, err = kubeClient(sc); err != nil {
				return nil, nil, err
			}
		}
		if first == nil {
			first = c
		}
		kube, err := watch.NewKube(watch.KubeOptions{
			API: c, Namespaces: sc.namespaces, Selector: sc.selector, Services: watchedServices(cfg),
			Source: sc.name, MCS: cfg.mcs, Sources: slices.Sorted(maps.Keys(cfg.render.Sources)), Store: store, Logger: log,
		})
		if err != nil {
			return nil, nil, usageError{err}
		}
		api.slices = append(api.slices, kube)
	}
	client := first
	if cfg.watchServices {
		api.services, err = watch.NewKubeServices(watch.KubeServicesOptions{
			API: client, Namespaces: cfg.namespaces, Services: watchedServices(cfg), Objects: objects, Logger: log,
		})
		if err != nil {
			return nil, nil, usageError{err}
		}
		others = append(others, api.services)
	}
	if cfg.nodes.All || cfg.nodes.Name != "" {
		nodes, err := watch.NewKubeNodes(watch.KubeNodesOptions{API: client, Nodes: cfg.nodes, Objects: objects, Logger: log})
		if err != nil {
			return nil, nil, usageError{err}
		}
		others = append(others, nodes)
	}
	if len(cfg.sources) == 0 {
		return watch.Group(append([]watch.Source{api.slices[0]}, others...)...), api, nil
	}
	api.clusters = watch.NewClusters(watch.ClustersOptions{
		Sources: api.slices, Others: others, SyncTimeout: cfg.syncTimeout, StaleAfter: cfg.sourceStaleAfter,
		Logger: log, OnStatus: onStatus, Endpoints: store.SourceEndpoints, OnUp: api.catchUp,
	})
	return api.clusters, api, nil
}

// kubeClient makes the API client of a source from its credentials.
func kubeClient(sc sourceConfig) (watch.API, error) {
	rc, err := restConfig(sc)
	if err != nil {
		if sc.name != "" {
			err = fmt.Errorf("source %s: %w", sc.name, err)
		}
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
	return watch.NewAPI(rc)
}

// restConfig uses in-cluster credentials when edsync runs in a Pod and no
// kubeconfig is named (or the source says in-cluster), else the kubeconfig
// (--kubeconfig, $KUBECONFIG or ~/.kube/config) and --context.
func restConfig(sc sourceConfig) (*rest.Config, error) {
	if sc.inCluster || (sc.kubeconfig == "" && sc.context == "") {
		rc, err := rest.InClusterConfig()
		if err == nil {
			return rc, nil
		}
		if sc.inCluster {
			return nil, usagef("in-cluster credentials: %v", err)
		}
		if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("in-cluster credentials: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if sc.kubeconfig != "" {
		rules.ExplicitPath = sc.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: sc.context})
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
