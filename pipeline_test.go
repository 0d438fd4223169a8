package main

import (
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/edsync/edsync/internal/metrics"
	"github.com/edsync/edsync/internal/testutil"
	"github.com/edsync/edsync/pipeline"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// Shorter names for the shared helpers.
var (
	readAsEnvoy  = testutil.ReadAsEnvoy
	addresses    = testutil.Addresses
	manifest     = testutil.Manifest
	replaceFile  = testutil.ReplaceFile
	checkMetrics = testutil.CheckMetrics
	scrape       = testutil.Scrape
)

// testPipeline is the pipeline edsync builds from a config, running, and
// the reports of its flushes.
type testPipeline struct {
	p   *pipeline.Pipeline
	api *apiWatch // with a client
	m   *metrics.Metrics
	*testutil.Reports[pipeline.Report]
}

func startPipeline(t *testing.T, cfg *config) *testPipeline {
	t.Helper()
	return startPipelineWith(t, cfg, slog.New(slog.DiscardHandler), nil)
}

func startPipelineLog(t *testing.T, cfg *config, log *slog.Logger) *testPipeline {
	t.Helper()
	return startPipelineWith(t, cfg, log, nil)
}

// startPipelineWith builds the pipeline from cfg as edsync does, logging
// to log, with client as the API client (nil: from cfg), and runs it until
// the test ends.
func startPipelineWith(t *testing.T, cfg *config, log *slog.Logger, client watch.API) *testPipeline {
	t.Helper()
	return startPipelineDeps(t, cfg, log, pipelineDeps{client: client})
}

// startPipelineDeps is startPipelineWith with the API clients of deps
// (client, or clients by source name).
func startPipelineDeps(t *testing.T, cfg *config, log *slog.Logger, deps pipelineDeps) *testPipeline {
	t.Helper()
	tp := &testPipeline{
		m:       metrics.New("test"),
		Reports: testutil.NewReports(func(r pipeline.Report) []string { return r.Clusters }),
	}
	deps.stdout, deps.metrics, deps.onFlush, deps.sourceStatus = io.Discard, tp.m, tp.Report, tp.m.Sources
	var err error
	if tp.p, tp.api, err = newPipeline(cfg, log, deps); err != nil {
		t.Fatal(err)
	}
	tp.Run(t, tp.p.Run)
	return tp
}

func statFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Name() == ".tmp" {
			return filepath.SkipDir
		}
		if e.IsDir() || e.Name() == writer.LockFileName { // the lock is rewritten by each run
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(dir, path)
		out[rel] = fmt.Sprintf("inode %d mtime %d", st.Ino, info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Restarting over its own output rewrites nothing; a file left from an
// earlier run for a cluster no longer published is emptied, not left stale.
func TestRestartRewritesNothingAndEmptiesStaleFiles(t *testing.T) {
	out := t.TempDir()
	args := []string{"--from-dir", "examples/endpointslices", "--once", "--output-dir", out, "--format", "pb"}
	if code, _, stderr := edsync(t, args...); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, stderr)
	}
	before := statFiles(t, out)
	if len(before) != 4 {
		t.Fatalf("first run wrote %d files, want 4: %v", len(before), before)
	}
	if code, _, stderr := edsync(t, args...); code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, stderr)
	}
	if after := statFiles(t, out); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("restart rewrote files:\nbefore %v\nafter  %v", before, after)
	}

	// Now publish only shop/web: the other clusters' files are emptied, but
	// a file that is not edsync's (Envoy's own config in the same folder)
	// is left alone although its name decodes like a cluster's.
	foreign := filepath.Join(out, "envoy", "eds.pb")
	if err := os.Mkdir(filepath.Dir(foreign), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(foreign, []byte("not a CLA"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := edsync(t, append(args, "--service", "shop/web")...); code != 0 {
		t.Fatalf("third run: exit %d\n%s", code, stderr)
	}
	if data, err := os.ReadFile(foreign); err != nil || string(data) != "not a CLA" {
		t.Errorf("a file that is not edsync's was replaced: %q, %v", data, err)
	}
	if cla := readAsEnvoy(t, filepath.Join(out, "cache_redis", "eds.pb")); cla.ClusterName != "cache/redis" || len(cla.Endpoints) != 0 {
		t.Errorf("stale cluster: %v, want the name and no endpoints", cla)
	}
	if cla := readAsEnvoy(t, filepath.Join(out, "shop_web_http", "eds.pb")); len(addresses(cla)) != 4 {
		t.Errorf("shop/web/http: %v", addresses(cla))
	}
}

// Restarting over a folder written in the other layout (an edsync from
// before folders, or another --layout) leaves that layout's files exactly
// as they are, never emptied nor removed (an Envoy may still read them),
// says so at Error with what to do, and writes its own beside them; each
// way round.
func TestRestartOverTheOtherLayout(t *testing.T) {
	for _, from := range []string{"flat", "folders"} {
		to := map[string]string{"flat": "folders", "folders": "flat"}[from]
		t.Run(from+" to "+to, func(t *testing.T) {
			out := t.TempDir()
			args := []string{"--from-dir", "examples/endpointslices", "--once", "--output-dir", out}
			if code, _, stderr := edsync(t, append(args, "--layout", from)...); code != 0 {
				t.Fatalf("first run: exit %d\n%s", code, stderr)
			}
			before := statFiles(t, out)
			if len(before) != 4 {
				t.Fatalf("first run wrote %v, want 4 files", before)
			}
			// The new one publishes less: in its own layout it would
			// empty the others' files.
			code, _, stderr := edsync(t, append(args, "--layout", to, "--service", "shop/web")...)
			if code != 0 {
				t.Fatalf("second run: exit %d\n%s", code, stderr)
			}
			if !strings.Contains(stderr, "level=ERROR") || !strings.Contains(stderr, "files of the other layout") || !strings.Contains(stderr, "files=4") {
				t.Errorf("no Error line about the 4 files of the %s layout:\n%s", from, stderr)
			}
			after := statFiles(t, out)
			for rel, st := range before {
				if after[rel] != st {
					t.Errorf("%s (the %s layout's) changed: %s -> %q", rel, from, st, after[rel])
				}
			}
			path, _ := writer.Layout(to).Path(out, "shop/web/http", writer.FormatJSON)
			if got := addresses(readAsEnvoy(t, path)); len(got) != 4 {
				t.Errorf("%s: %v, want 4 endpoints", path, got)
			}
			if len(after) != len(before)+2 { // shop/web's http and admin
				t.Errorf("files after: %v", after)
			}
		})
	}
}
