package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edsync/edsync/internal/syncbuf"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// edsync runs the command in-process as a user would, with its own output
// streams, and returns the exit code and what it printed.
func edsync(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	// stderr is locked: an informer stuck in client-go's retry backoff may
	// still log after edsync returned (see watch.Kube.Run), as it may to
	// os.Stderr in production.
	var out bytes.Buffer
	var errb syncbuf.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	code = runContext(ctx, append([]string{"edsync"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestBadFlagsExit2WithOneLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // in the one line
	}{
		{"unknown flag", []string{"--nope"}, nil, "flag provided but not defined"},
		{"bad format", []string{"--dry-run", "--format", "xml"}, nil, "xml"},
		{"bad format from env", []string{"--dry-run"}, map[string]string{"EDSYNC_FORMAT": "xml"}, "xml"},
		{"bad duration", []string{"--dry-run", "--debounce", "soon"}, nil, "soon"},
		{"bad duration from env", []string{"--dry-run"}, map[string]string{"EDSYNC_DEBOUNCE": "soon"}, "soon"},
		{"max-delay under debounce", []string{"--dry-run", "--debounce", "1s", "--max-delay", "10ms"}, nil, "--max-delay"},
		{"no output dir", []string{"--from-dir", "examples/endpointslices"}, nil, "--output-dir is required"},
		{"bad service", []string{"--dry-run", "--service", "web"}, nil, "NAMESPACE/NAME"},
		{"port number without Services", []string{"--dry-run", "--cluster-name-template", "{{.Service}}-{{.PortNumber}}"}, nil, "needs --watch-services"},
		{"from-dir with kubeconfig", []string{"--dry-run", "--from-dir", "x", "--kubeconfig", "y"}, nil, "--from-dir"},
		{"bad terminating", []string{"--dry-run", "--terminating", "keep"}, nil, "draining or drop"},
		{"bad not-ready", []string{"--dry-run", "--not-ready", "keep"}, nil, "drop or unhealthy"},
		{"bad family", []string{"--dry-run", "--address-family", "ipv5"}, nil, "ipv5"},
		{"bad protocol", []string{"--dry-run", "--protocol", "QUIC"}, nil, "QUIC"},
		{"bad template", []string{"--dry-run", "--cluster-name-template", "{{.Pod}}"}, nil, "template"},
		{"bad log level", []string{"--dry-run", "--log-level", "loud"}, nil, "--log-level"},
		{"bad log format", []string{"--dry-run", "--log-format", "xml"}, nil, "--log-format"},
		{"stray argument", []string{"--dry-run", "extra"}, nil, "unexpected argument"},
		{"bad selector", []string{"--dry-run", "--from-dir", "examples/endpointslices", "--selector", "a=(b"}, nil, "selector"},
		{"bad topology", []string{"--dry-run", "--topology", "nearest"}, nil, "off, zone or hints"},
		{"bad topology from env", []string{"--dry-run"}, map[string]string{"EDSYNC_TOPOLOGY": "nearest"}, "--topology"},
		{"topology without a local zone", []string{"--dry-run", "--topology", "zone"}, nil, "--local-zone or --node-name"},
		{"bad local zone", []string{"--dry-run", "--local-zone", "eu west"}, nil, "--local-zone"},
		{"bad region", []string{"--dry-run", "--region", "-r1"}, nil, "--region"},
		{"bad node name", []string{"--dry-run", "--node-name", "Node_1"}, nil, "--node-name"},
		{"bad subzone label", []string{"--dry-run", "--node-topology", "--subzone-label", "a b"}, nil, "--subzone-label"},
		{"empty metadata key", []string{"--dry-run", "--endpoint-metadata", "--endpoint-metadata-key", " "}, nil, "--endpoint-metadata-key"},
		{"bad node-topology from env", []string{"--dry-run"}, map[string]string{"EDSYNC_NODE_TOPOLOGY": "sometimes"}, "sometimes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := edsync(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr: %s", code, exitUsage, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "edsync: ") || !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q: want one line starting \"edsync: \" that mentions %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, stdout, _ := edsync(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit code %d", code)
	}
	for _, want := range []string{"--output-dir", "EDSYNC_OUTPUT_DIR", "--from-dir", "--debounce", "(default: 50ms)", "Endpoints",
		"Topology", "--node-name", "EDSYNC_NODE_NAME", "--watch-services", "edsync.io/ annotations are not read"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
	code, stdout, _ = edsync(t, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "edsync version ") {
		t.Errorf("--version: code %d, output %q", code, stdout)
	}
}

// TestDryRunOnceExamples is the README's first command: the examples in
// every format, compared with golden files.
func TestDryRunOnceExamples(t *testing.T) {
	for _, format := range []string{"json", "yaml", "pb"} {
		t.Run(format, func(t *testing.T) {
			code, stdout, stderr := edsync(t, "--from-dir", "examples/endpointslices", "--dry-run", "--once",
				"--output-dir", "/var/run/edsync", "--format", format)
			if code != 0 {
				t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
			}
			golden(t, filepath.Join("testdata", "examples-dry-run."+format+".txt"), stdout)
		})
	}
}

func TestEnvironmentVariablesSetFlags(t *testing.T) {
	_, want, _ := edsync(t, "--from-dir", "examples/endpointslices", "--dry-run", "--once", "--format", "yaml",
		"--service", "shop/web", "--terminating", "drop")
	t.Setenv("EDSYNC_FROM_DIR", "examples/endpointslices")
	t.Setenv("EDSYNC_DRY_RUN", "true")
	t.Setenv("EDSYNC_ONCE", "true")
	t.Setenv("EDSYNC_FORMAT", "yaml")
	t.Setenv("EDSYNC_SERVICE", "shop/web")
	t.Setenv("EDSYNC_TERMINATING", "drop")
	code, got, stderr := edsync(t)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
	}
	if got != want || !strings.Contains(got, "shop_web_http.yaml") || strings.Contains(got, "DRAINING") || strings.Contains(got, "shop_api") {
		t.Errorf("environment gave:\n%s\nflags gave:\n%s", got, want)
	}
}

func TestMissingSourceFolderFails(t *testing.T) {
	code, _, stderr := edsync(t, "--from-dir", filepath.Join(t.TempDir(), "nope"), "--dry-run", "--once")
	if code != exitFailure || !strings.Contains(stderr, "nope") {
		t.Errorf("code %d, stderr %q: want exit 1 naming the folder", code, stderr)
	}
}

func TestMissingOutputFolderFails(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "out")
	code, _, stderr := edsync(t, "--from-dir", "examples/endpointslices", "--once", "--output-dir", missing)
	if code != exitFailure || !strings.Contains(stderr, missing) {
		t.Errorf("code %d, stderr %q: want exit 1 naming the folder", code, stderr)
	}
}

// With --once against an API server that is not there, edsync says why and
// exits non-zero once --sync-timeout has passed.
func TestOnceTimesOutWithoutAPIServer(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := edsync(t, "--kubeconfig", kubeconfig, "--dry-run", "--once", "--sync-timeout", "1s")
	if code != exitFailure {
		t.Errorf("exit code %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr, "first sync did not finish within 1s") || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Errorf("stderr does not say what failed:\n%s", stderr)
	}
	if stdout != "" {
		t.Errorf("printed before the first sync:\n%s", stdout)
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test -update after checking it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
