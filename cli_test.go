package main

import (
	"bytes"
	"context"
	"flag"
	"net"
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

// Bad flags, bad values and bad combinations are usage errors caught
// before anything starts: exit 2, one line that names the flag (or the
// variable, or the file's key), nothing on stdout.
func TestBadFlagsExit2WithOneLine(t *testing.T) {
	dir := t.TempDir()
	notAFolder := filepath.Join(dir, "file")
	writeFile(t, notAFolder, "")
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeFile(t, kubeconfig, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`)
	config := func(name, content string) string {
		path := filepath.Join(dir, name+".yaml")
		writeFile(t, path, content)
		return path
	}
	examples := "examples/endpointslices"
	if err := os.Mkdir(filepath.Join(dir, "cds+x.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // in the one line
	}{
		// Values the flag parser refuses, for every kind of flag, on the
		// command line and from the environment.
		{"unknown flag", []string{"--nope"}, nil, "--nope: unknown flag"},
		{"duration without unit", []string{"--dry-run", "--debounce", "50"}, nil, `--debounce: missing unit in "50"`},
		{"bad duration", []string{"--dry-run", "--debounce", "soon"}, nil, `--debounce: invalid duration "soon"`},
		{"duration with unknown unit", []string{"--dry-run", "--max-delay", "5y"}, nil, `--max-delay: unknown unit "y" in "5y"`},
		{"duration without value", []string{"--dry-run", "--sync-timeout"}, nil, "--sync-timeout: needs a value"},
		{"string without value", []string{"--dry-run", "--format"}, nil, "--format: needs a value"},
		{"list without value", []string{"--dry-run", "--service"}, nil, "--service: needs a value"},
		{"bad bool", []string{"--dry-run", "--once=maybe"}, nil, `--once: want true or false, got "maybe"`},
		{"bad duration from env", []string{"--dry-run"}, map[string]string{"EDSYNC_DEBOUNCE": "50"}, `--debounce (EDSYNC_DEBOUNCE): missing unit in "50"`},
		// The CDS file: a format Envoy knows, paths Envoy can follow, a
		// name no cluster's file can take.
		{"CDS file without a known extension", []string{"--dry-run", "--output-dir", dir, "--cds-file", filepath.Join(dir, "cds.txt")}, nil, `want .json, .yaml, .yml or .pb, not ".txt"`},
		{"CDS file with a relative output folder", []string{"--dry-run", "--output-dir", "out", "--cds-file", filepath.Join(dir, "cds.json")}, nil, "--output-dir must be an absolute path"},
		{"relative CDS file", []string{"--dry-run", "--output-dir", dir, "--cds-file", "cds+clusters.json"}, nil, "--cds-file must be an absolute path"},
		{"CDS file named like a cluster's", []string{"--dry-run", "--output-dir", dir, "--cds-file", filepath.Join(dir, "cds.json")}, nil, `that is the folder of a cluster named "cds.json"`},
		{"CDS file named like a cluster's, flat", []string{"--dry-run", "--output-dir", dir, "--layout", "flat", "--cds-file", filepath.Join(dir, "cds.json")}, nil, `that is the file of a cluster named "cds"`},
		{"bad layout", []string{"--dry-run", "--layout", "tree"}, nil, `--layout: unknown layout "tree" (want folders or flat)`},
		{"bad allow-list", []string{"--dry-run", "--allowed-addresses", "10.0.0.0/8,tenth"}, nil, `--allowed-addresses: "tenth" is not an address or a CIDR prefix`},
		{"negative cap", []string{"--dry-run", "--max-clusters-per-namespace", "-1"}, nil, `--max-clusters-per-namespace: -1 is negative`},
		{"bad Envoy admin", []string{"--dry-run", "--envoy-admin", "127.0.0.1:9901"}, nil, `invalid --envoy-admin "127.0.0.1:9901": want Envoy's admin as http://HOST:PORT`},
		{"waiting for no Envoy", []string{"--dry-run", "--ready-waits-for-envoy"}, nil, "--ready-waits-for-envoy needs --envoy-admin"},
		{"zero poll interval", []string{"--dry-run", "--envoy-admin", "http://127.0.0.1:9901", "--envoy-poll-interval", "0s"}, nil, "--envoy-poll-interval: 0s is not positive"},
		{"bad pprof address", []string{"--dry-run", "--pprof-addr", "6060"}, nil, `invalid --pprof-addr "6060"`},
		{"pprof on the probe port", []string{"--dry-run", "--http-addr", "127.0.0.1:9911", "--pprof-addr", "127.0.0.1:9911"}, nil, "profiles get a listener of their own"},
		{"status: bad output", []string{"status", "-o", "yaml"}, nil, `status: invalid --output "yaml": want text or json`},
		{"bad file size", []string{"--dry-run", "--max-file-size", "16MB"}, nil, `--max-file-size: "16MB" is not a size: want bytes, or a whole number with Ki, Mi or Gi, under 2Gi`},
		{"file size too big", []string{"--dry-run", "--max-file-size", "2Gi"}, nil, `--max-file-size: "2Gi" is not a size`},
		{"negative file size", []string{"--dry-run"}, map[string]string{"EDSYNC_MAX_FILE_SIZE": "-1"}, `--max-file-size: "-1" is not a size`},
		// Namespace a's Service b-c and namespace a-b's Service c: one name.
		{"template joining namespaces", []string{"--dry-run", "--cluster-name-template", "{{.Namespace}}-{{.Service}}-{{.Port}}"}, nil, `both get "a-b-c-"`},
		{"CDS file in a missing folder", []string{"--output-dir", dir, "--cds-file", filepath.Join(dir, "missing", "cds.json")}, nil, "--cds-file " + filepath.Join(dir, "missing", "cds.json") + ": its folder"},
		{"CDS file is a folder", []string{"--output-dir", dir, "--cds-file", filepath.Join(dir, "cds+x.json")}, nil, "is a folder, not a file"},
		{"negative CDS debounce", []string{"--dry-run", "--cds-debounce", "-1s"}, nil, "--cds-debounce: -1s is negative"},
		{"zero connect timeout", []string{"--dry-run", "--connect-timeout", "0s"}, nil, "--connect-timeout: 0s is not positive"},
		{"bad bool from env", []string{"--dry-run"}, map[string]string{"EDSYNC_NODE_TOPOLOGY": "sometimes"}, `--node-topology (EDSYNC_NODE_TOPOLOGY): want true or false, got "sometimes"`},
		{"envoy-config: bad duration", []string{"envoy-config", "--output-dir", "/x", "--connect-timeout", "5"}, nil, `--connect-timeout: missing unit in "5"`},
		{"envoy-config: unknown flag", []string{"envoy-config", "--nope"}, nil, "--nope: unknown flag"},

		// Values edsync checks, each named by its flag.
		{"bad format", []string{"--dry-run", "--format", "xml"}, nil, `--format: unknown format "xml"`},
		{"bad format from env", []string{"--dry-run"}, map[string]string{"EDSYNC_FORMAT": "xml"}, "--format"},
		{"max-delay under debounce", []string{"--dry-run", "--debounce", "1s", "--max-delay", "10ms"}, nil, "--max-delay"},
		{"negative duration", []string{"--dry-run", "--debounce", "-1s"}, nil, "--debounce"},
		{"bad service", []string{"--dry-run", "--service", "web"}, nil, "--service"},
		{"bad terminating", []string{"--dry-run", "--terminating", "keep"}, nil, "--terminating: "},
		{"bad not-ready", []string{"--dry-run", "--not-ready", "keep"}, nil, "--not-ready: "},
		{"bad family", []string{"--dry-run", "--address-family", "ipv5"}, nil, "--address-family: "},
		{"bad protocol", []string{"--dry-run", "--protocol", "QUIC"}, nil, "--protocol: "},
		{"bad template", []string{"--dry-run", "--cluster-name-template", "{{.Pod}}"}, nil, "--cluster-name-template: "},
		{"bad log level", []string{"--dry-run", "--log-level", "loud"}, nil, "--log-level"},
		{"bad log format", []string{"--dry-run", "--log-format", "xml"}, nil, "--log-format"},
		{"bad http addr", []string{"--dry-run", "--http-addr", "9911"}, nil, "--http-addr"},
		{"stray argument", []string{"--dry-run", "extra"}, nil, "unexpected argument"},
		{"bad selector", []string{"--dry-run", "--from-dir", examples, "--selector", "a=(b"}, nil, "--selector"},
		{"bad topology", []string{"--dry-run", "--topology", "nearest"}, nil, "off, zone, hints or zone-aware"},
		{"bad topology from env", []string{"--dry-run"}, map[string]string{"EDSYNC_TOPOLOGY": "nearest"}, "--topology"},
		{"bad local zone", []string{"--dry-run", "--local-zone", "eu west"}, nil, "--local-zone"},
		{"bad region", []string{"--dry-run", "--region", "-r1"}, nil, "--region"},
		{"bad node name", []string{"--dry-run", "--node-name", "Node_1"}, nil, "--node-name"},
		{"bad subzone label", []string{"--dry-run", "--node-topology", "--subzone-label", "a b"}, nil, "--subzone-label"},
		{"empty metadata key", []string{"--dry-run", "--endpoint-metadata", "--endpoint-metadata-key", " "}, nil, "--endpoint-metadata-key"},

		// Combinations, and paths that cannot work: caught before starting,
		// not when the source or the writer meets them.
		{"no output dir", []string{"--from-dir", examples}, nil, "--output-dir is required"},
		{"port number without Services", []string{"--dry-run", "--cluster-name-template", "{{.Service}}-{{.PortNumber}}"}, nil, "needs --watch-services"},
		{"from-dir with kubeconfig", []string{"--dry-run", "--from-dir", examples, "--kubeconfig", kubeconfig}, nil, "--from-dir"},
		{"topology without a local zone", []string{"--dry-run", "--topology", "zone"}, nil, "--local-zone or --node-name"},
		{"service outside the namespaces", []string{"--dry-run", "--once", "--from-dir", examples, "--namespace", "shop", "--service", "cache/redis"}, nil,
			"--service cache/redis is outside the watched namespaces"},
		{"service outside the namespaces, kubernetes", []string{"--dry-run", "--once", "--kubeconfig", kubeconfig, "--namespace", "shop", "--service", "cache/redis"}, nil,
			"--service cache/redis is outside the watched namespaces"},
		{"listed cluster outside the namespaces", []string{"--dry-run", "--once", "--from-dir", examples, "--config",
			config("outside", "namespace: shop\nclusters: [{service: cache/redis, name: redis}]\n")}, nil, "clusters[0]: Service cache/redis is outside the watched namespaces"},
		{"listed cluster not among the services", []string{"--dry-run", "--once", "--from-dir", examples, "--config",
			config("unlisted", "service: [shop/web]\nclusters: [{service: shop/api, port: grpc}]\n")}, nil, "clusters[0]: Service shop/api is not in the service list"},
		{"missing from-dir", []string{"--dry-run", "--once", "--from-dir", filepath.Join(dir, "nope")}, nil, "--from-dir " + filepath.Join(dir, "nope")},
		{"from-dir a socket", []string{"--dry-run", "--once", "--from-dir", sock}, nil, "--from-dir " + sock},
		{"output dir a file", []string{"--once", "--from-dir", examples, "--output-dir", notAFolder}, nil, "--output-dir " + notAFolder},
		{"output dir under a file", []string{"--once", "--from-dir", examples, "--output-dir", filepath.Join(notAFolder, "out")}, nil, "a parent of it is not a folder"},
		{"output dir is the source folder", []string{"--once", "--from-dir", dir, "--output-dir", dir + "/."}, nil, "is the --from-dir folder"},
		{"missing kubeconfig", []string{"--dry-run", "--once", "--kubeconfig", filepath.Join(dir, "nope")}, nil, "kubeconfig"},
		{"unknown context", []string{"--dry-run", "--once", "--kubeconfig", kubeconfig, "--context", "nope"}, nil, `"nope"`},
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

// A --from-dir naming one manifest file passes the checks, like kubectl -f
// FILE; a folder does too.
func TestFromDirTakesAFileOrAFolder(t *testing.T) {
	for _, path := range []string{"examples/endpointslices/web.yaml", "examples/endpointslices"} {
		if _, err := parseFlags([]string{"--dry-run", "--from-dir", path}); err != nil {
			t.Errorf("--from-dir %s: %v", path, err)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, stdout, _ := edsync(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit code %d", code)
	}
	stdout = strings.Join(strings.Fields(stdout), " ") // as wrapped for 80 columns
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
	if got != want || !strings.Contains(got, "shop_web_http/eds.yaml") || strings.Contains(got, "DRAINING") || strings.Contains(got, "shop_api") {
		t.Errorf("environment gave:\n%s\nflags gave:\n%s", got, want)
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

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "1": 1, "512Ki": 512 << 10, "16Mi": 16 << 20, "1Gi": 1 << 30, "2147483647": 1<<31 - 1} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Mi", "1.5Mi", "16MB", "16mi", "-1", " 1", "2Gi", "2147483648", "99999999999999999999"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}
