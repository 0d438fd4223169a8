package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unitSettings reads the Key=Value lines of a systemd unit, in order.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]string)
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is not Key=Value", path, line)
		}
		out[k] = append(out[k], v)
	}
	return out
}

// setEnvFile sets, for the test, the variables of an EnvironmentFile's
// KEY=VALUE lines (blank lines and # comments skipped), and returns their
// names in order.
func setEnvFile(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: %q is not KEY=VALUE", path, line)
			continue
		}
		t.Setenv(k, v)
		keys = append(keys, k)
	}
	return keys
}

// The unit's ExecStart parses with edsync's flags and the variables of the
// example EnvironmentFile, each of which sets a flag; the output folder is
// the one the unit lets edsync write.
func TestVMExampleUnit(t *testing.T) {
	unit := unitSettings(t, "examples/vm/edsync.service")
	for _, key := range []string{"User", "ExecStart", "EnvironmentFile", "Restart", "NoNewPrivileges", "ProtectSystem", "ReadWritePaths"} {
		if len(unit[key]) != 1 {
			t.Errorf("%s: %q, want one", key, unit[key])
		}
	}
	if unit["Restart"][0] != "on-failure" || unit["ProtectSystem"][0] != "strict" || unit["NoNewPrivileges"][0] != "yes" {
		t.Errorf("Restart=%s ProtectSystem=%s NoNewPrivileges=%s: want on-failure, strict, yes",
			unit["Restart"][0], unit["ProtectSystem"][0], unit["NoNewPrivileges"][0])
	}
	if strings.ContainsAny(unit["ExecStart"][0], `"'\$%`) {
		t.Fatalf("ExecStart %q: the test splits it on spaces; quoting or expansion would need systemd's rules", unit["ExecStart"][0])
	}
	args := strings.Fields(unit["ExecStart"][0])

	known := make(map[string]bool)
	for _, f := range flags() {
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
			for _, name := range ev.GetEnvVars() {
				known[name] = true
			}
		}
	}
	for _, k := range setEnvFile(t, "examples/vm/edsync.env") {
		if !known[k] {
			t.Errorf("edsync.env: %s sets no flag of edsync's", k)
		}
	}

	cfg, err := parseFlags(args[1:])
	if err != nil {
		t.Fatalf("ExecStart %q with edsync.env does not parse: %v", unit["ExecStart"][0], err)
	}
	if cfg.kubeconfig == "" || len(cfg.services) == 0 || len(cfg.clusters) == 0 {
		t.Errorf("config %+v: want a kubeconfig, and services and clusters from edsync.env", cfg)
	}
	// A VM's other interfaces face networks the Pod network never sees.
	if host, _, err := net.SplitHostPort(cfg.httpAddr); err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("edsync.env serves metrics and probes on %q: want a loopback address", cfg.httpAddr)
	}
	if unit["ReadWritePaths"][0] != cfg.outputDir || "/run/"+unit["RuntimeDirectory"][0] != cfg.outputDir {
		t.Errorf("edsync writes %s; the unit lets it write %s and creates /run/%s", cfg.outputDir, unit["ReadWritePaths"], unit["RuntimeDirectory"])
	}
}

// systemd's own check of the unit, where systemd-analyze is installed. It
// needs ExecStart's binary to exist, so the copy checked runs the test
// binary instead; a warning on stderr fails the test (systemd-analyze exits
// 0 for most of them).
func TestVMExampleUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("examples/vm/edsync.service")
	if err != nil {
		t.Fatal(err)
	}
	const bin = "ExecStart=/usr/local/bin/edsync "
	if !bytes.Contains(data, []byte(bin)) {
		t.Fatalf("edsync.service has no %q", bin)
	}
	data = bytes.Replace(data, []byte(bin), []byte("ExecStart="+self+" "), 1)
	unit := filepath.Join(t.TempDir(), "edsync.service") // systemd wants the unit's own name
	if err := os.WriteFile(unit, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), sa, "verify", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The kubeconfig script is plain POSIX sh (its e2e test runs it against a
// real API server).
func TestVMExampleScriptIsPOSIX(t *testing.T) {
	for _, sh := range []string{"dash", "sh"} {
		path, err := exec.LookPath(sh)
		if err != nil {
			continue
		}
		if out, err := exec.CommandContext(t.Context(), path, "-n", "examples/vm/make-kubeconfig.sh").CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, out)
		}
		return
	}
	t.Skip("no POSIX sh")
}

// The multi-cluster example parses with edsync's own checks: two sources,
// with their places.
func TestMulticlusterExampleConfig(t *testing.T) {
	cfg, err := parseFlags([]string{"--config", "examples/multicluster/edsync.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.sources) != 2 || cfg.render.Sources["east"].Priority != 0 || cfg.render.Sources["west"].Priority != 1 ||
		cfg.render.Sources["west"].Region != "us-west-2" || !cfg.mcs || cfg.sourceStaleAfter != 5*time.Minute {
		t.Errorf("config: sources %+v, places %+v, mcs %v, stale after %v", cfg.sources, cfg.render.Sources, cfg.mcs, cfg.sourceStaleAfter)
	}
	unit := unitSettings(t, "examples/vm/edsync.service")
	if unit["ReadWritePaths"][0] != cfg.outputDir {
		t.Errorf("output-dir %s: the unit lets edsync write %s", cfg.outputDir, unit["ReadWritePaths"][0])
	}
}
