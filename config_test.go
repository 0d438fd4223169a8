package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/edsync/edsync/render"
)

// configForTest parses args as edsync's command line does and returns the
// checked config.
func configForTest(t *testing.T, args ...string) *config {
	t.Helper()
	var cfg *config
	app := &cli.App{Name: "edsync", Flags: flags(), Action: func(c *cli.Context) (err error) {
		cfg, err = configFrom(c)
		return err
	}}
	if err := app.Run(append([]string{"edsync"}, args...)); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The file gives the flags' defaults; the command line and EDSYNC_*
// variables override it.
func TestConfigFileLayers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, path, `
format: yaml
debounce: 20ms
namespace: shop            # one item as a plain string
service: [shop/web, shop/api]
dry-run: true
terminating: drop
max-file-size: 1048576     # a number where the flag takes a string
max-clusters-per-namespace: 50
allowed-addresses: [10.0.0.0/8]
clusters:
- service: shop/web
  port: http
  name: web
  terminating: draining
- service: shop/api
  not-ready: unhealthy
  address-family: ipv6-first
`)
	cfg := configForTest(t, "--config", path, "--debounce", "30ms")
	if cfg.format != "yaml" || cfg.debounce != 30*time.Millisecond || !cfg.dryRun ||
		!slices.Equal(cfg.namespaces, []string{"shop"}) || len(cfg.services) != 2 || cfg.maxFileSize != 1<<20 ||
		cfg.render.MaxClustersPerNamespace != 50 || fmt.Sprint(cfg.render.AllowedAddresses) != "[10.0.0.0/8]" {
		t.Errorf("config: %+v", cfg)
	}
	specs := cfg.render.Clusters
	if len(specs) != 2 || specs[0].Name != "web" || specs[0].Terminating != 0 || specs[1].Terminating == 0 || specs[1].NotReady == 0 ||
		specs[0].Family != render.FamilyAll || specs[1].Family != render.FamilyIPv6First {
		t.Errorf("clusters: %+v", specs)
	}
	t.Setenv("EDSYNC_FORMAT", "pb")
	if cfg := configForTest(t, "--config", path); cfg.format != "pb" || cfg.debounce != 20*time.Millisecond {
		t.Errorf("env over file: format %s debounce %s", cfg.format, cfg.debounce)
	}
}

// A variable the downward API left empty (the Pod has no zone label) does
// not hide the config file's local zone; a set one overrides it, as every
// variable does.
func TestEmptyPodVariableKeepsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, path, "dry-run: true\ntopology: zone\nlocal-zone: zone-x\nregion: east\n")
	t.Setenv("EDSYNC_LOCAL_ZONE", "")
	t.Setenv("EDSYNC_REGION", "")
	if cfg := configForTest(t, "--config", path); cfg.render.LocalZone != "zone-x" || cfg.render.Region != "east" {
		t.Errorf("with empty variables: zone %q, region %q; want the file's", cfg.render.LocalZone, cfg.render.Region)
	}
	t.Setenv("EDSYNC_LOCAL_ZONE", "zone-y")
	if cfg := configForTest(t, "--config", path); cfg.render.LocalZone != "zone-y" {
		t.Errorf("EDSYNC_LOCAL_ZONE=zone-y: zone %q", cfg.render.LocalZone)
	}
	// Other flags keep the rule that a set variable wins, empty or not:
	// an empty EDSYNC_HTTP_ADDR turns the listener off.
	writeFile(t, path, "dry-run: true\nhttp-addr: \":9999\"\n")
	t.Setenv("EDSYNC_HTTP_ADDR", "")
	if cfg := configForTest(t, "--config", path); cfg.httpAddr != "" {
		t.Errorf("EDSYNC_HTTP_ADDR empty: http-addr %q, want off", cfg.httpAddr)
	}
}

// A bad file stops edsync at start with one line naming what is wrong, and
// exit code 2, like a bad flag.
func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"unknown key", "formt: yaml\n", `unknown key "formt"`},
		{"not a mapping", "- a\n- b\n", "want a mapping"},
		{"bad yaml", "format: [yaml\n", "yaml"},
		{"wrong type", "debounce: [1]\n", "debounce: want a duration"},
		{"bad duration", "debounce: soon\n", `debounce: want a duration such as "50ms", got "soon"`},
		{"bad bool", "once: maybe\n", "once: want true or false"},
		{"bad number", "max-clusters-per-namespace: many\n", "max-clusters-per-namespace: want a whole number"},
		{"bad size", "max-file-size: 1.5\n", `--max-file-size: "1.5" is not a size`},
		{"bad value", "format: xml\n", "xml"},
		{"config in config", "config: other.yaml\n", `unknown key "config"`},
		{"bad service", "clusters: [{service: web}]\n", "clusters[0]: service \"web\": want NAMESPACE/NAME"},
		{"unknown cluster field", "clusters: [{service: a/b, prot: http}]\n", `unknown field "prot"`},
		{"bad cluster option", "clusters: [{service: a/b, terminating: keep}]\n", "clusters[0]: invalid terminating mode"},
		{"duplicate cluster", "clusters: [{service: a/b, name: x}, {service: a/c, name: x}]\n", `cluster name "x" given to both`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			writeFile(t, path, tc.content)
			var stdout, stderr bytes.Buffer
			// A guard against a case that would run: every one must stop at the config.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			code := runContext(ctx, []string{"edsync", "--config", path, "--dry-run", "--from-dir", dir}, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr: %s", code, exitUsage, stderr.String())
			}
			if lines := strings.Count(stderr.String(), "\n"); lines != 1 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q: want one line containing %q", stderr.String(), tc.want)
			}
		})
	}
	var stderr bytes.Buffer
	if code := runContext(t.Context(), []string{"edsync", "--config", filepath.Join(dir, "missing.yaml"), "--dry-run"}, io.Discard, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "no such file") {
		t.Errorf("missing file: exit %d, %q", code, stderr.String())
	}
}

// configMapDir lays out a folder as the kubelet does for a ConfigMap
// volume: the file is a symlink through ..data to a timestamped folder, and
// an update swaps ..data by rename.
type configMapDir struct {
	dir string
	gen int
}

func (c *configMapDir) update(t *testing.T, content string) {
	t.Helper()
	c.gen++
	old, _ := os.Readlink(filepath.Join(c.dir, "..data"))
	ts := filepath.Join(c.dir, "..gen"+strings.Repeat("x", c.gen))
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(ts, "edsync.yaml"), content)
	if err := os.Symlink(filepath.Base(ts), filepath.Join(c.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(c.dir, "..data_tmp"), filepath.Join(c.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old == "" {
		if err := os.Symlink("..data/edsync.yaml", filepath.Join(c.dir, "edsync.yaml")); err != nil {
			t.Fatal(err)
		}
	} else if err := os.RemoveAll(filepath.Join(c.dir, old)); err != nil {
		t.Fatal(err)
	}
}

// A config file in a ConfigMap volume is followed: a valid new version
// changes the clusters published without a restart (the file of a cluster
// no longer published is emptied), an invalid one is refused and the
// running config stays.
func TestConfigReload(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	cm := &configMapDir{dir: t.TempDir()}
	cm.update(t, "clusters: [{service: default/web, port: http, name: web}]\n")
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.1"))
	cfg := configForTest(t, "--config", filepath.Join(cm.dir, "edsync.yaml"), "--from-dir", in, "--output-dir", out,
		"--debounce", "1ms", "--max-delay", "10ms")

	tp := startPipeline(t, cfg)
	tp.WaitCluster(t, "web")
	if _, err := os.Stat(filepath.Join(out, "default_web_http", "eds.json")); !os.IsNotExist(err) {
		t.Fatalf("a Service port not in the list has a file: %v", err)
	}
	waitResult := runReloader(t, cfg, tp, nil)
	checkReloads := func(success, failure, lastOK float64) {
		t.Helper()
		checkMetrics(t, "config reloads", tp.m, map[string]float64{
			`edsync_config_reloads_total{result="success"}`: success,
			`edsync_config_reloads_total{result="failure"}`: failure,
			`edsync_config_last_reload_successful`:          lastOK,
		})
	}

	cm.update(t, "clusters: [{service: default/web, port: http, name: web-v2}]\n")
	waitResult("")
	checkReloads(1, 0, 1)
	f := tp.WaitCluster(t, "web-v2")
	if !f.Reload || !slices.Contains(f.Clusters, "web") {
		t.Errorf("reload flush %+v: want the new cluster written and the old one emptied", f)
	}
	if got := addresses(readAsEnvoy(t, filepath.Join(out, "web-v2", "eds.json"))); !slices.Equal(got, []string{"10.0.0.1:8080 HEALTHY"}) {
		t.Errorf("web-v2: %v", got)
	}
	if cla := readAsEnvoy(t, filepath.Join(out, "web", "eds.json")); len(cla.Endpoints) != 0 {
		t.Errorf("the cluster dropped from the list still has endpoints: %v", cla)
	}

	cm.update(t, "clusters: [{service: default/web, port: http, name: web-v3, terminating: sometimes}]\n")
	waitResult("invalid terminating mode")
	checkReloads(1, 1, 0)
	// The running config stays: a change is still written to web-v2.
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.2"))
	tp.WaitCluster(t, "web-v2")
	if got := addresses(readAsEnvoy(t, filepath.Join(out, "web-v2", "eds.json"))); !slices.Equal(got, []string{"10.0.0.2:8080 HEALTHY"}) {
		t.Errorf("web-v2 after a refused reload: %v", got)
	}
	if _, err := os.Stat(filepath.Join(out, "web-v3", "eds.json")); !os.IsNotExist(err) {
		t.Errorf("the refused config was applied: %v", err)
	}
}

// SIGHUP reloads the config file even when no change was seen (a missed
// event, a file system without inotify): the file is read and applied
// again, and counted like any reload.
func TestConfigReloadOnSIGHUP(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	path := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, path, "clusters: [{service: default/web, port: http, name: web}]\n")
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.1"))
	cfg := configForTest(t, "--config", path, "--from-dir", in, "--output-dir", out, "--debounce", "1ms", "--max-delay", "10ms")
	tp := startPipeline(t, cfg)
	tp.WaitCluster(t, "web")

	hup := make(chan os.Signal, 1)
	waitResult := runReloader(t, cfg, tp, hup)
	hup <- syscall.SIGHUP
	waitResult("")
	checkMetrics(t, "after SIGHUP", tp.m, map[string]float64{`edsync_config_reloads_total{result="success"}`: 1})
	if f := tp.WaitCluster(t, "web"); !f.Reload || f.Written != 0 {
		t.Errorf("flush after SIGHUP %+v: want a reload flush that rewrites nothing (the bytes are the same)", f)
	}
}

// --prune-after comes from the flag, EDSYNC_PRUNE_AFTER or the config
// file's prune-after, 5m by default; 0 is allowed (keep the files).
func TestPruneAfterSetting(t *testing.T) {
	if cfg := configForTest(t, "--dry-run"); cfg.pruneAfter != 5*time.Minute {
		t.Errorf("default %s, want 5m", cfg.pruneAfter)
	}
	if cfg := configForTest(t, "--dry-run", "--prune-after", "0"); cfg.pruneAfter != 0 {
		t.Errorf("--prune-after 0 gave %s", cfg.pruneAfter)
	}
	path := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, path, "prune-after: 90s\n")
	if cfg := configForTest(t, "--dry-run", "--config", path); cfg.pruneAfter != 90*time.Second {
		t.Errorf("from the config file: %s, want 1m30s", cfg.pruneAfter)
	}
	t.Setenv("EDSYNC_PRUNE_AFTER", "1h")
	if cfg := configForTest(t, "--dry-run", "--config", path); cfg.pruneAfter != time.Hour {
		t.Errorf("EDSYNC_PRUNE_AFTER over the file: %s, want 1h", cfg.pruneAfter)
	}
	if code, _, stderr := edsync(t, "--dry-run", "--prune-after", "-1m"); code != exitUsage || strings.Count(stderr, "\n") != 1 {
		t.Errorf("--prune-after -1m: exit %d, stderr %q; want exit 2 and one line", code, stderr)
	}
}

// runReloader runs the reloader of the test pipeline's config until the
// test ends (hup, if not nil, stands for SIGHUP) and returns a function
// that waits for its next result: success if wantErr is empty, else an
// error containing it.
func runReloader(t *testing.T, cfg *config, tp *testPipeline, hup chan os.Signal) (waitResult func(wantErr string)) {
	t.Helper()
	results := make(chan error, 10)
	r := newReloader(cfg, tp.p, tp.api, tp.m, new(slog.LevelVar), slog.New(slog.DiscardHandler))
	count := r.onResult
	r.onResult = func(err error) { count(err); results <- err }
	if hup != nil {
		r.hup = hup
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(t.Context()) }()
	t.Cleanup(func() { <-done })
	return func(wantErr string) {
		t.Helper()
		select {
		case err := <-results:
			if (err == nil) != (wantErr == "") || (err != nil && !strings.Contains(err.Error(), wantErr)) {
				t.Fatalf("reload result %v, want error containing %q", err, wantErr)
			}
		case <-time.After(30 * time.Second): // a failure guard, not a timing assertion
			t.Fatal("no reload")
		}
	}
}
