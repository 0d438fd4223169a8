package writer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A folder has one owner: a second LockDir fails naming the holder (flock
// locks of two open files conflict within one process too), and the folder
// is free again once the first is released.
func TestLockDirHasOneOwner(t *testing.T) {
	dir := t.TempDir()
	first, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	var locked *LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("second LockDir: %v, want a *LockedError", err)
	}
	host, _ := os.Hostname()
	for _, want := range []string{dir, fmt.Sprintf("pid %d on host %s", os.Getpid(), host), "one edsync per folder"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := LockDir(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again.Release()
}

// The lock file is not taken for a cluster's file, so the writer neither
// lists nor sweeps it.
func TestLockFileIsNoClusterFile(t *testing.T) {
	for _, f := range []Format{FormatJSON, FormatYAML, FormatPB} {
		if name, ok := ClusterName(LockFileName, f); ok {
			t.Errorf("%s: %s reads as cluster %q", f, LockFileName, name)
		}
	}
}

// A link or a FIFO planted at the lock file's name is never followed nor
// blocked on: LockDir refuses it, and the link's target is untouched.
func TestLockDirRefusesPlantedEntries(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(target, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, LockFileName)); err != nil {
		t.Fatal(err)
	}
	if l, err := LockDir(dir); err == nil {
		l.Release()
		t.Fatal("locked through a link")
	}
	if got, _ := os.ReadFile(target); string(got) != "keep me" {
		t.Errorf("the link's target now holds %q", got)
	}

	fifoDir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(fifoDir, LockFileName), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		l, err := LockDir(fifoDir)
		if err == nil {
			l.Release()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("LockDir over a FIFO: %v, want it refused", err)
		}
	case <-time.After(30 * time.Second): // a guard against a hang, not a timing assertion
		t.Fatal("LockDir blocked on a FIFO")
	}
}

// The lock file is readable by its owner alone: flock needs only a read
// descriptor, so a reader of the folder (Envoy's user, a local user on a
// VM) could otherwise hold the lock and keep edsync from starting. An
// older edsync's 0644 file is made 0600. Run as root, the test also has
// another user try to open it.
func TestLockFileOnlyItsOwnerOpens(t *testing.T) {
	// Not t.TempDir: its parent is closed to others.
	dir, err := os.MkdirTemp("", "edsync-lock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, LockFileName), []byte("pid 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	fi, err := os.Stat(filepath.Join(dir, LockFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("lock file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if os.Geteuid() != 0 {
		return
	}
	// nobody, as a reader of the folder would be.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dir); d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not open to others: cannot try as another user", d)
		}
	}
	cmd := exec.Command("/bin/cat", filepath.Join(dir, LockFileName))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Errorf("another user opened the lock file: %v, %s", err, out)
	}
}
