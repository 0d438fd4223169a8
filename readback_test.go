package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edsync/edsync/internal/envoyadmin"
	"github.com/edsync/edsync/status"
)

// A running edsync reads Envoy back (the stand-in of internal/envoyadmin,
// reading the files as Envoy does): /readyz waits, with
// --ready-waits-for-envoy, until Envoy runs every file (while /readyz/files
// does not); a file Envoy refuses is an Error line naming the cluster,
// file and version, a metric, and `edsync status` exiting 1 with the
// cluster; a later good version fixes all three.
func TestStatusAndReadBack(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.1", "10.0.0.2"))
	replaceFile(t, filepath.Join(in, "api.yaml"), manifest("api", "10.0.1.1"))
	const web, api = "default/web/http", "default/api/http"
	webFile, apiFile := filepath.Join(out, "default_web_http", "eds.json"), filepath.Join(out, "default_api_http", "eds.json")

	// Envoy starts first, with both clusters in its bootstrap and their
	// folders there but no files yet: it runs nothing.
	envoy := envoyadmin.New()
	envoy.Refuse = func(cluster string, hosts int) bool { return cluster == web && hosts > 2 }
	polls := make(chan struct{}, 1)
	envoy.OnRequest = func() {
		select {
		case polls <- struct{}{}:
		default:
		}
	}
	for _, f := range []string{webFile, apiFile} {
		if err := os.Mkdir(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	envoy.AddCluster(web, webFile)
	envoy.AddCluster(api, apiFile)
	admin := httptest.NewServer(envoy)
	defer admin.Close()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()

	logs := newLogWatch()
	exited := make(chan int, 1)
	go func() {
		exited <- runContext(ctx, []string{"edsync", "--from-dir", in, "--output-dir", out, "--http-addr", "127.0.0.1:0",
			"--log-format", "json", "--debounce", "1ms", "--max-delay", "10ms",
			"--envoy-admin", admin.URL, "--envoy-poll-interval", "20ms", "--ready-waits-for-envoy"}, io.Discard, logs)
	}()
	var line struct{ Addr string }
	logs.wait(t, `"msg":"serving metrics and probes"`, exited)
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "serving metrics and probes") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := "http://" + line.Addr
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// until waits for read-backs until ok holds of the status view.
	until := func(what string, ok func(status.Snapshot) bool) status.Snapshot {
		t.Helper()
		guard := time.After(time.Minute) // a failure guard, not a timing assertion
		for {
			select {
			case <-polls:
			case code := <-exited:
				t.Fatalf("edsync exited %d waiting for %s:\n%s", code, what, logs)
			case <-guard:
				_, body := get(debugClustersPath)
				t.Fatalf("no %s:\n%s\n%s", what, body, logs)
			}
			_, body := get(debugClustersPath)
			var s status.Snapshot
			if err := json.Unmarshal([]byte(body), &s); err != nil {
				t.Fatalf("%s: %v\n%s", debugClustersPath, err, body)
			}
			if ok(s) {
				return s
			}
		}
	}
	stateOf := func(s status.Snapshot, name string) status.State {
		for _, c := range s.Clusters {
			if c.Name == name {
				return c.Envoy.State
			}
		}
		return ""
	}
	applied := func(s status.Snapshot) bool {
		return stateOf(s, web) == status.StateApplied && stateOf(s, api) == status.StateApplied
	}

	// The files are written; Envoy has not loaded them yet (its watch is
	// not started): /readyz waits for it, /readyz/files does not.
	until("both files written, Envoy pending", func(s status.Snapshot) bool {
		return stateOf(s, web) == status.StatePending && stateOf(s, api) == status.StatePending
	})
	if code, body := get("/readyz/files"); code != 200 {
		t.Errorf("/readyz/files with the files written: %d %s", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "Envoy has not applied every file yet") {
		t.Errorf("/readyz before Envoy runs the files: %d %s", code, body)
	}
	if err := envoy.Watch(ctx); err != nil {
		t.Fatal(err)
	}
	envoy.LoadAll()

	s := until("both files applied", applied)
	for _, c := range s.Clusters {
		if c.Envoy.Version != c.Version || c.File == "" || !c.Renamed {
			t.Errorf("%s: %+v", c.Name, c)
		}
	}
	if c := s.Clusters[1]; c.Name != web || c.Endpoints.Healthy != 2 || c.File != webFile || c.Service != "default/web" {
		t.Errorf("web: %+v", c)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz once Envoy runs the files: %d %s", code, body)
	}
	runStatus := func() (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runContext(t.Context(), []string{"edsync", "status", "--http-addr", line.Addr}, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	if code, stdout, stderr := runStatus(); code != exitOK || !strings.Contains(stdout, "2 clusters: 2 applied, 0 pending, 0 rejected") ||
		!strings.Contains(stdout, webFile) {
		t.Errorf("edsync status: exit %d\n%s%s", code, stdout, stderr)
	}

	// A third endpoint: this Envoy refuses the file.
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.1", "10.0.0.2", "10.0.0.3"))
	until("web rejected", func(s status.Snapshot) bool { return stateOf(s, web) == status.StateRejected })
	logs.wait(t, `"msg":"Envoy refused the file; it keeps its previous endpoints (its log says why)"`, exited)
	if l := logs.String(); !strings.Contains(l, `"cluster":"default/web/http"`) || !strings.Contains(l, `"path":"`+webFile+`"`) {
		t.Errorf("the rejection's line does not name the cluster and the file:\n%s", l)
	}
	code, stdout, stderr := runStatus()
	if code != exitFailure || !strings.Contains(stderr, "Envoy rejected 1 file(s): default/web/http") || !strings.Contains(stdout, "rejected (runs ") {
		t.Errorf("edsync status with a rejected file: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "edsync_envoy_rejections_total 1") ||
		!strings.Contains(body, `edsync_envoy_files{state="rejected"} 1`) || !strings.Contains(body, "edsync_envoy_admin_up 1") ||
		!strings.Contains(body, "edsync_envoy_apply_seconds_count 2") {
		t.Errorf("metrics:\n%s", body)
	}

	// Back to two: applied again, status clean.
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.1", "10.0.0.4"))
	until("web fixed", applied)
	if code, stdout, stderr := runStatus(); code != exitOK {
		t.Errorf("edsync status once fixed: exit %d\n%s%s", code, stdout, stderr)
	}
	if n := strings.Count(logs.String(), `"level":"ERROR"`); n != 1 {
		t.Errorf("%d Error lines, want the one rejection:\n%s", n, logs)
	}
	stop()
	if code := <-exited; code != exitOK {
		t.Errorf("exit %d", code)
	}
}

// An Envoy admin that accepts the request and never answers holds up no
// write: the files are written and /readyz/files answers 200 while the
// read-back waits (its timeout bounds each request).
func TestReadBackNeverHoldsUpWriting(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.1"))
	hung := make(chan struct{})
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hung:
		case <-r.Context().Done():
		}
	}))
	defer admin.Close()
	defer close(hung)
	files := watchFolder(t, out)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	exited := make(chan int, 1)
	go func() {
		exited <- runContext(ctx, []string{"edsync", "--from-dir", in, "--output-dir", out, "--http-addr", "off",
			"--envoy-admin", admin.URL}, io.Discard, io.Discard)
	}()
	files.wait(t, filepath.Join(out, "default_web_http", "eds.json"), exited)
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.1", "10.0.0.2"))
	file := filepath.Join(out, "default_web_http", "eds.json")
	for len(addresses(readAsEnvoy(t, file))) != 2 {
		files.wait(t, file, exited) // the next rename (wait fails the test after a minute)
	}
	stop()
	if code := <-exited; code != exitOK {
		t.Errorf("exit %d", code)
	}
}
