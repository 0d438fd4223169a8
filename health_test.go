package main

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edsync/edsync/internal/metrics"
	"github.com/edsync/edsync/watch"
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

// probeErrors is what the pipeline tells the probes, set by the test.
type probeErrors struct{ alive, ready error }

func (p probeErrors) Alive() error { return p.alive }
func (p probeErrors) Ready() error { return p.ready }

// The probes answer 200 "ok", or 503 and the pipeline's reason, as plain
// text that is never cached.
func TestProbes(t *testing.T) {
	m := metrics.New("test")
	wantProbe(t, httpHandler(m, probeErrors{}, nil, nil), "/healthz", 200, "ok")
	wantProbe(t, httpHandler(m, probeErrors{}, nil, nil), "/readyz", 200, "ok")
	h := httpHandler(m, probeErrors{
		alive: errors.New("the pipeline stopped: source: folder is gone"),
		ready: errors.New("not ready: waiting for the first full sync of EndpointSlices"),
	}, nil, nil)
	wantProbe(t, h, "/healthz", 503, "the pipeline stopped: source: folder is gone\n")
	wantProbe(t, h, "/readyz", 503, "not ready: waiting for the first full sync of EndpointSlices\n")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if ct, cc := rec.Header().Get("Content-Type"), rec.Header().Get("Cache-Control"); ct != "text/plain; charset=utf-8" || cc != "no-store" {
		t.Errorf("probe headers: Content-Type %q, Cache-Control %q", ct, cc)
	}
	wantProbe(t, h, "/metrics", 200, `edsync_build_info{version="test"} 1`)

	// With several sources, /readyz says how each is.
	down := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	h = httpHandler(m, probeErrors{}, func() []watch.SourceStatus {
		return []watch.SourceStatus{
			{Name: "east", Synced: true, Up: true},
			{Name: "west", Synced: true, DownSince: down, Err: errors.New("connection refused")},
			{Name: "north", Synced: true, Stale: true, DownSince: down, Err: errors.New("connection refused")},
			{Name: "south", Up: true},
		}
	}, nil)
	wantProbe(t, h, "/readyz", 200, "ok\nsource east: synced\n"+
		"source west: unreachable since 2026-12-01T06:00:00Z, endpoints kept\n"+
		"source north: unreachable since 2026-12-01T06:00:00Z, endpoints removed\n"+
		"source south: not synced yet\n")
	wantProbe(t, h, "/healthz", 200, "ok\n")
	if _, body := get(t, h, "/healthz"); strings.Contains(body, "source") {
		t.Errorf("/healthz lists the sources: %q", body)
	}
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
	addr, stop, err := serveHTTP("127.0.0.1:0", httpHandler(metrics.New("test"), probeErrors{}, nil, nil), slog.New(slog.DiscardHandler))
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
	// Whoever reaches the port cannot make it hold huge headers.
	req, _ := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 64<<10))
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Errorf("big headers: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("64 KiB of headers: %d, want 431", resp.StatusCode)
		}
	}
	stop()
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("the server still answers after stop")
	}
}

// Profiles are served only when asked for, on a listener of their own
// bound to 127.0.0.1 when no host is given, never on the probe port.
func TestPprofOnItsOwnListener(t *testing.T) {
	cfg := configForTest(t, "--dry-run", "--pprof-addr", ":0")
	if cfg.pprofAddr != "127.0.0.1:0" {
		t.Errorf("--pprof-addr :0 binds %q, want 127.0.0.1:0", cfg.pprofAddr)
	}
	if cfg := configForTest(t, "--dry-run"); cfg.pprofAddr != "" {
		t.Errorf("pprof served by default on %q", cfg.pprofAddr)
	}
	addr, stop, err := servePprof(cfg.pprofAddr, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if code, body := getURL(t, "http://"+addr+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof listener: %d %.200s", code, body)
	}
	if code, _ := get(t, httpHandler(metrics.New("test"), probeErrors{}, nil, nil), "/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ on the probe port: %d, want 404", code)
	}
}

func getURL(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
