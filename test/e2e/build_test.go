package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edsync/edsync/test/e2e/harness"
)

// fakeGo stands in for the go command in TestBuildScriptReportsProgress: it
// "compiles" a few packages the way `go build -v` reports them (a path per
// line on stderr) and creates the binaries where -o says.
const fakeGo = `#!/usr/bin/env bash
case "$1" in
list)
  if [ "$2" = -m ]; then echo v0.0.0-fake; else printf 'pkg/%d\n' 1 2 3 4 5 6; fi ;;
version) echo "go version fake" ;;
build)
  out=
  while [ $# -gt 0 ]; do
    if [ "$1" = -o ]; then out=$2; fi
    shift
  done
  printf 'example.com/pkg/%d\n' 1 2 3 4 5 6 >&2
  case "$out" in
  */) touch "$out/kube-apiserver" "$out/kube-controller-manager" ;;
  *) touch "$out" ;;
  esac ;;
esac
`

// A cold build of the Kubernetes binaries takes many minutes with nothing
// else to see: build.sh must say how far it got while it runs, and print the
// bin folder (all three binaries in it) as its last line on stdout.
func TestBuildScriptReportsProgress(t *testing.T) {
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	fakeBin := t.TempDir()
	if err := os.WriteFile(filepath.Join(fakeBin, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(repo, "test", "k8s", "build.sh"))
	cmd.Env = append(os.Environ(),
		"PATH="+fakeBin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"EDSYNC_K8S_CACHE="+cache,
		"EDSYNC_K8S_PROGRESS_EVERY=0", // a line per package: no waiting in a test
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{
		"edsync-k8s: etcd: 6 of about 6 packages compiled",
		"edsync-k8s: kube-apiserver, kube-controller-manager: 6 of about 6 packages compiled",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("build.sh's progress lacks %q:\n%s", want, stderr.String())
		}
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	bin := lines[len(lines)-1]
	if !strings.HasPrefix(bin, cache) {
		t.Fatalf("build.sh's last line %q is not a folder in its cache %s", bin, cache)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			t.Error(err)
		}
	}
}
