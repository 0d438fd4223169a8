package e2e

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/edsync/edsync/test/e2e/harness"
)

// repoRoot is the edsync repository these tests read from.
func repoRoot(t *testing.T) string {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// dockerfileLine returns the Dockerfile's one line that starts with prefix.
func dockerfileLine(t *testing.T, prefix string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, prefix) {
			found = append(found, strings.TrimSpace(line))
		}
	}
	if len(found) != 1 {
		t.Fatalf("Dockerfile: %d lines start with %q, want 1", len(found), prefix)
	}
	return found[0]
}

// TestStaticBinary builds edsync with the Dockerfile's own build command
// (there is no Docker engine here), checks that the result is static, as the
// distroless base (no libc, no loader) needs, and, when the test runs as
// root, runs it as the image's USER from an empty folder on a copy of the
// example manifests.
//
// It lives here, not beside main.go, because -trimpath makes it compile
// every package again: on a cold, busy machine that alone outlasted the
// unit tests' default 10-minute timeout.
func TestStaticBinary(t *testing.T) {
	repo := repoRoot(t)
	if runtime.GOOS != "linux" {
		t.Skip("the image is Linux")
	}
	// The RUN line, run by sh as Docker's shell form runs it, writing to a
	// folder of ours instead of /out.
	build, ok := strings.CutPrefix(dockerfileLine(t, "RUN CGO_ENABLED=0 "), "RUN ")
	if !ok || !strings.Contains(build, " -o /out/edsync ") {
		t.Fatalf("build line %q: want RUN ... -o /out/edsync .", build)
	}
	dir, err := os.MkdirTemp("", "edsync-static-") // not t.TempDir: its parent is 0700, see below
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "edsync")
	cmd := exec.CommandContext(t.Context(), "sh", "-c", strings.Replace(build, " -o /out/edsync ", " -o "+bin+" ", 1))
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "VERSION=static-test", "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary names a program interpreter (PT_INTERP): it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries (DT_NEEDED) %q (%v)", libs, err)
	}
	if out, err := exec.CommandContext(t.Context(), bin, "--version").Output(); err != nil || string(out) != "edsync version static-test\n" {
		t.Errorf("--version: %q (%v): the Dockerfile's -X main.version did not take", out, err)
	}

	if os.Geteuid() != 0 {
		t.Log("not root: not running the binary as the image's user")
		return
	}
	// As the Dockerfile's USER, with no environment, from an empty folder:
	// what the container does with --dry-run --once.
	user := strings.TrimPrefix(dockerfileLine(t, "USER "), "USER ")
	uidText, gidText, _ := strings.Cut(user, ":")
	uid, err1 := strconv.ParseUint(uidText, 10, 32)
	gid, err2 := strconv.ParseUint(gidText, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		t.Fatalf("Dockerfile USER %q: want a numeric non-root uid:gid", user)
	}
	manifests := filepath.Join(dir, "manifests")
	empty := filepath.Join(dir, "cwd")
	for _, d := range []string{manifests, empty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(repo, "examples", "endpointslices"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(repo, "examples", "endpointslices", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(manifests, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil { // MkdirTemp made it 0700
		t.Fatal(err)
	}
	run := exec.CommandContext(t.Context(), bin, "--from-dir", manifests, "--dry-run", "--once", "--output-dir", "/var/run/edsync")
	run.Dir = empty
	run.Env = []string{}
	run.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	var stdout, stderr bytes.Buffer
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Run(); err != nil {
		t.Fatalf("edsync as %s: %v\n%s", user, err, stderr.String())
	}
	want, err := os.ReadFile(filepath.Join(repo, "testdata", "examples-dry-run.json.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != string(want) {
		t.Errorf("edsync as %s printed:\n%s\nwant testdata/examples-dry-run.json.txt:\n%s", user, stdout.String(), want)
	}
	if left, _ := os.ReadDir(empty); len(left) > 0 {
		t.Errorf("edsync wrote into its working folder: %v", left)
	}
}
