package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// get asks the handler for path and returns the status and body.
func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func wantProbe(t *testing.T, h http.Handler, path string, code int, body string) {
	t.Helper()
	gotCode, gotBody := get(t, h, path)
	if gotCode != code || !strings.Contains(gotBody, body) {
		t.Errorf("GET %s = %d %q, want %d and a body with %q", path, gotCode, gotBody, code, body)
	}
}

// /healthz follows the loop: not started, idle, busy, busy too long, stopped.
func TestHealthzSaysWhenTheLoopIsStuck(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	h := newHealth(func() time.Time { return now })
	handler := httpHandler(newMetrics("test"), h)

	wantProbe(t, handler, "/healthz", 503, "has not started")
	h.start()
	wantProbe(t, handler, "/healthz", 200, "ok")
	h.begin("a flush of 3 Services")
	now = now.Add(stuckAfter)
	wantProbe(t, handler, "/healthz", 200, "ok")
	now = now.Add(time.Second)
	wantProbe(t, handler, "/healthz", 503, "busy with a flush of 3 Services for 1m1s")
	h.end()
	wantProbe(t, handler, "/healthz", 200, "ok")
	h.stop("source: folder is gone")
	wantProbe(t, handler, "/healthz", 503, "stopped: source: folder is gone")
}

// manualSource is a source whose first sync the test decides.
type manualSource struct {
	running chan struct{}
	synced  chan struct{}
}

func (s *manualSource) Run(ctx context.Context) error {
	close(s.running)
	<-ctx.Done()
	return nil
}

func (s *manualSource) Synced() <-chan struct{} { return s.synced }

func TestReadyzWaitsForTheFirstSync(t *testing.T) {
	out := t.TempDir()
	src := &manualSource{running: make(chan struct{}), synced: make(chan struct{})}
	p := newTestPipeline(t, out, &pipeline{declared: []string{"default/declared"}, source: src})
	p.newStore()
	handler := httpHandler(p.metrics, p.health)

	wantProbe(t, handler, "/readyz", 503, "not ready: the pipeline has not started")
	tp := runPipeline(t, p, "", out)
	<-src.running
	wantProbe(t, handler, "/readyz", 503, "not ready: waiting for the first full sync")
	wantProbe(t, handler, "/healthz", 200, "ok") // waiting is not being stuck

	close(src.synced)
	tp.waitFlush(t, "default/declared")
	wantProbe(t, handler, "/readyz", 200, "ok")
}

// A failed write of the first flush keeps edsync not ready until a retry
// writes it; once ready, a later failure changes nothing (the old files
// keep serving).
func TestReadyzAfterAFailedInitialWrite(t *testing.T) {
	cfg := testConfig(t)
	src := filepath.Join(cfg.fromDir, "web.yaml")
	replaceFile(t, src, manifest("web", "10.0.0.1"))
	target := filepath.Join(cfg.outputDir, "default_web_http.json")
	if err := os.Mkdir(target, 0o755); err != nil { // a folder in the way fails the write, even as root
		t.Fatal(err)
	}
	tp := startPipeline(t, cfg)
	handler := httpHandler(tp.p.metrics, tp.p.health)

	if r := tp.waitFlush(t, "default/web/http"); r.Failed != 1 {
		t.Fatalf("first flush: %+v, want one failure", r)
	}
	wantProbe(t, handler, "/readyz", 503, "not every file of the first flush is written (1 pending); retrying (last error: ")
	checkMetrics(t, "after the failure", tp.p.metrics, map[string]float64{
		`edsync_cluster_writes_total{result="failed"}`: 1,
	})

	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	for r := tp.nextFlush(t); !r.Retry || r.Written != 1; r = tp.nextFlush(t) {
	}
	wantProbe(t, handler, "/readyz", 200, "ok")

	// Fail a later write: still ready. Not with a folder in the file's
	// way: the output folder watch writes a removed file again at once, so
	// the folder would race with that write. A file where the temp folder
	// should be fails every write instead.
	tmp := filepath.Join(cfg.outputDir, ".tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, src, manifest("web", "10.0.0.2"))
	if r := tp.waitFlush(t, "default/web/http"); r.Failed != 1 {
		t.Fatalf("later flush: %+v, want one failure", r)
	}
	wantProbe(t, handler, "/readyz", 200, "ok")
}

func TestParseHTTPAddr(t *testing.T) {
	for in, want := range map[string]string{"": "", "off": "", ":9911": ":9911", "127.0.0.1:0": "127.0.0.1:0", "[::1]:80": "[::1]:80"} {
		if got, err := parseHTTPAddr(in); err != nil || got != want {
			t.Errorf("parseHTTPAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"9911", "localhost", ":http", ":70000", ":-1", "a:b:c"} {
		if got, err := parseHTTPAddr(in); err == nil {
			t.Errorf("parseHTTPAddr(%q) = %q, want an error", in, got)
		}
	}
}

func TestHTTPAddrErrors(t *testing.T) {
	code, _, stderr := edsync(t, "--from-dir", "examples/endpointslices", "--dry-run", "--http-addr", "9911")
	if code != exitUsage || !strings.Contains(stderr, `invalid --http-addr "9911"`) {
		t.Errorf("bad --http-addr: exit %d, stderr %q; want %d and the address", code, stderr, exitUsage)
	}
	t.Setenv("EDSYNC_HTTP_ADDR", ":nope")
	code, _, stderr = edsync(t, "--from-dir", "examples/endpointslices", "--dry-run")
	if code != exitUsage || !strings.Contains(stderr, `invalid --http-addr ":nope"`) {
		t.Errorf("bad EDSYNC_HTTP_ADDR: exit %d, stderr %q; want %d and the address", code, stderr, exitUsage)
	}

	// A port in use fails the start: a runtime error, exit 1.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, stderr = edsync(t, "--from-dir", "examples/endpointslices", "--dry-run", "--http-addr", ln.Addr().String())
	if code != exitFailure || !strings.Contains(stderr, "edsync: --http-addr: listen tcp "+ln.Addr().String()) {
		t.Errorf("port in use: exit %d, stderr %q; want %d and the listen error", code, stderr, exitFailure)
	}
}

// The server answers on its address until stopped.
func TestServeHTTP(t *testing.T) {
	h := newHealth(time.Now)
	h.start()
	addr, stop, err := serveHTTP("127.0.0.1:0", httpHandler(newMetrics("test"), h), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/healthz": "ok\n", "/metrics": `edsync_build_info{version="test"} 1`} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %q, %v; want 200 and %q", path, resp.StatusCode, body, err, want)
		}
	}
	stop()
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("the server still answers after stop")
	}
}
