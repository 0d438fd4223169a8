package writer

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
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
