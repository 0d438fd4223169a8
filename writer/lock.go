package writer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// LockFileName is the file in the output folder whose lock marks the folder's
// owner. It stays when edsync exits: removing it would let a process that
// opened the old file and one that creates a new one both hold "the" lock.
const LockFileName = ".edsync.lock"

// Lock is this process's claim on an output folder: an exclusive flock(2) on
// LockFileName, which the kernel drops when the process exits or crashes, so
// a stale lock file never blocks a restart.
//
// A folder has one owner because two edsyncs on one folder destroy each
// other's files for good: each one's start-up sweep empties the files of the
// clusters it does not publish itself, and the other never rewrites them
// (their bytes did not change in its memory).
type Lock struct {
	f *os.File
}

// LockedError says that another process holds the folder.
type LockedError struct {
	Dir string
	// Holder is what the holder wrote into the lock file (its pid, host and
	// start time), or a placeholder if it has not written it yet.
	Holder string
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("output folder %s is in use by another edsync (%s); run one edsync per folder", e.Dir, e.Holder)
}

// errHeld is what tryLock returns when another open file holds the lock.
var errHeld = errors.New("lock held")

// LockDir takes the output folder dir for this process, or returns a
// *LockedError naming the holder. Locks of two open files conflict even
// within one process, so a second LockDir on the same folder fails until
// the first Lock is released.
func LockDir(dir string) (*Lock, error) {
	path := filepath.Join(dir, LockFileName)
	// Never through a link put in its place (it would be truncated and
	// written), never blocking on a FIFO there.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|noFollow, 0o600)
	if errors.Is(err, fs.ErrPermission) {
		// Left by a run as another user: flock needs only a read.
		f, err = os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	}
	if errors.Is(err, fs.ErrPermission) {
		// Made 0600 by a run as another user: only that user (or root)
		// can lock the folder with it.
		return nil, fmt.Errorf("writer: lock the output folder: %s belongs to another user (a run as that user left it); "+
			"if no edsync runs on %s, remove it: %w", path, dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("writer: lock the output folder: %w", err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("not a regular file (mode %s)", fi.Mode())
		}
		return nil, fmt.Errorf("writer: lock the output folder: %s: %w", path, err)
	}
	// Readable by its owner alone: flock needs only a read descriptor, so
	// anyone who could open the file (Envoy's user, any local user) could
	// hold the lock and keep edsync from starting. A file left 0644 by an
	// older edsync is made 0600 (if this user owns it; otherwise its
	// owner's run made it).
	if fi.Mode().Perm() != 0o600 {
		f.Chmod(0o600)
	}
	if err := tryLock(f); err != nil {
		defer f.Close()
		if errors.Is(err, errHeld) {
			return nil, &LockedError{Dir: dir, Holder: readHolder(f)}
		}
		return nil, fmt.Errorf("writer: lock %s: %w", path, err)
	}
	// Name this process, so that a second one can say who holds the folder.
	// The folder is held even if this fails: only the name is missing.
	host, _ := os.Hostname()
	if f.Truncate(0) == nil {
		fmt.Fprintf(f, "pid %d on host %s, since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	}
	return &Lock{f: f}, nil
}

// readHolder reads what the holder wrote, one line at most.
func readHolder(f *os.File) string {
	data, err := io.ReadAll(io.LimitReader(f, 512))
	line, _, _ := bytes.Cut(data, []byte("\n"))
	if err != nil || len(bytes.TrimSpace(line)) == 0 {
		return "a process that has not named itself yet"
	}
	return string(bytes.TrimSpace(line))
}

// Release gives the folder up. The kernel does the same at exit; Release is
// for a process (or test) that goes on after its run.
func (l *Lock) Release() error {
	return l.f.Close()
}
