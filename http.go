package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/edsync/edsync/internal/metrics"
	"github.com/edsync/edsync/status"
	"github.com/edsync/edsync/watch"
)

// defaultHTTPAddr is next to Envoy's usual admin port, 9901.
const defaultHTTPAddr = ":9911"

// parseHTTPAddr checks --http-addr: HOST:PORT, or "" / "off" to serve
// nothing (returned as ""). A port name is refused: it would resolve
// differently from machine to machine.
func parseHTTPAddr(s string) (string, error) {
	if s == "" || s == "off" {
		return "", nil
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", usagef("invalid --http-addr %q: want HOST:PORT, :PORT, or off", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", usagef("invalid --http-addr %q: port %q is not a number from 0 to 65535", s, port)
	}
	return s, nil
}

// probes is what /healthz and /readyz ask: the pipeline.
type probes interface {
	Alive() error
	Ready() error
}

// httpHandler serves /metrics, /healthz, /readyz and /debug/clusters.
// Probe bodies are plain text saying why when not OK; with several sources
// (sources not nil), /readyz adds a line per source.
func httpHandler(m *metrics.Metrics, p probes, sources func() []watch.SourceStatus, board *status.Board) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", probe(p.Alive, nil))
	mux.HandleFunc("GET /readyz", probe(p.Ready, sources))
	// The files alone, whatever --ready-waits-for-envoy says: for a
	// native sidecar's startup probe, which holds Envoy back, and so must
	// not wait for it.
	files := p
	if r, ok := p.(*envoyReadiness); ok {
		files = r.probes
	}
	mux.HandleFunc("GET /readyz/files", probe(files.Ready, sources))
	if board != nil {
		mux.HandleFunc("GET "+debugClustersPath, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(board.Snapshot())
		})
	}
	return mux
}

// debugClustersPath serves the status view, read-only: what `edsync
// status` prints. It names files and Services, as /metrics does not; it
// changes nothing.
const debugClustersPath = "/debug/clusters"

// envoyReadiness is /readyz with --ready-waits-for-envoy: the pipeline's
// readiness, then, once, Envoy having applied every file it reads.
type envoyReadiness struct {
	probes
	board   *status.Board
	mu      sync.Mutex
	applied bool
}

func (r *envoyReadiness) Ready() error {
	if err := r.probes.Ready(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied {
		return nil
	}
	if err := r.board.EnvoyApplied(); err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	r.applied = true
	return nil
}

// servePprof serves Go's profiles on addr, a listener of their own, until
// the returned stop is called; bound is the address listened on.
func servePprof(addr string, log *slog.Logger) (bound string, stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("--pprof-addr: %w", err)
	}
	// A CPU profile or a trace takes as long as asked (?seconds=): no
	// write timeout; headers are bounded as on the probe port.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("serving Go's profiles", "addr", ln.Addr().String(), "path", "/debug/pprof/")
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

func probe(check func() error, sources func() []watch.SourceStatus) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := check(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
		} else {
			fmt.Fprintln(w, "ok")
		}
		if sources != nil {
			for _, st := range sources() {
				fmt.Fprintln(w, sourceLine(st))
			}
		}
	}
}

// sourceLine says how a source is, for /readyz.
func sourceLine(st watch.SourceStatus) string {
	line := "source " + st.Name + ": "
	switch {
	case st.Stale:
		line += "unreachable since " + st.DownSince.UTC().Format(time.RFC3339) + ", endpoints removed"
	case !st.Up && !st.DownSince.IsZero():
		line += "unreachable since " + st.DownSince.UTC().Format(time.RFC3339) + ", endpoints kept"
	case !st.Synced:
		line += "not synced yet"
	default:
		line += "synced"
	}
	// Not the error: an API server's errors name its addresses and
	// more, and the probe answers whoever reaches its port; the log has
	// it.
	return line
}

// serveHTTP listens on addr at once, so that a port in use fails the start
// with a clear error, then serves handler until the returned stop is
// called; stop waits (briefly) for requests in flight. bound is the address
// listened on (a port 0 picks one).
func serveHTTP(addr string, handler http.Handler, log *slog.Logger) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("--http-addr: %w", err)
	}
	// Bounds for a port others may reach (the node's, in node-shared
	// mode): a client that sends slowly, never reads, or sends huge
	// headers holds a connection and memory only so long.
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving metrics and probes", "addr", ln.Addr().String(), "paths", "/metrics /healthz /readyz")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped; no metrics or probes from now on", "error", err)
		}
	}()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
