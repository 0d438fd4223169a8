package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// tmpDirName is the hidden folder for temp files. Temp files live inside the
// output folder so that the rename stays on one file system (atomic), but in a
// sub-folder so that Envoy's watch on the output folder does not wake for
// every temp file created and written (Envoy rule 5).
const tmpDirName = ".tmp"

// maxTempPrefix keeps temp names within the 255-byte limit once createTemp
// has added its random suffix.
const maxTempPrefix = 200

// writeAtomic replaces the file name in d with data so that a reader sees
// the old file or the new one, never a part: temp file, write, chmod,
// fsync, close, rename (Envoy reloads only on that rename: IN_MOVED_TO).
// The folder itself is fsynced by the caller. On any error the temp file is
// removed and the target is untouched.
//
// checkTarget asks to refuse a target that is not a regular file (a link
// included: never followed). The caller asks on a cluster's first write in
// this process only: after that the target is a file we renamed into
// place, and a stat per write is a syscall that found nothing in the
// steady state. (A folder put there later still makes the rename fail:
// renaming a file over a folder is EISDIR; a link is replaced, not
// followed.)
//
// Each step is one system call (see atomic_unix.go): on a busy folder the
// write is mostly kernel time, and os.File would add five more per file.
//
// It returns the identity of the file renamed into place, so that a file
// put there later by someone else can be told from it.
func writeAtomic(tmpDir string, d dirHandle, name string, data []byte, checkTarget bool, rename renameFunc) (id fileIdent, err error) {
	// Refuse to replace a folder, socket, device, link...: renaming over
	// them either fails late or destroys something that is not ours.
	if checkTarget {
		if mode, ok, err := d.mode(name); err != nil {
			return id, err
		} else if ok && !mode.IsRegular() {
			return id, fmt.Errorf("target is not a regular file (mode %s)", mode)
		}
	}
	// The temp folder is opened without following a link, and the temp
	// file created, renamed and removed relative to it: a link put in its
	// place while edsync runs is refused, not written through.
	td, err := openFolder(tmpDir)
	if errors.Is(err, fs.ErrNotExist) {
		// Someone removed .tmp/ since New: make it again rather than fail
		// every write until a restart.
		if err = os.Mkdir(tmpDir, 0o755); err == nil || errors.Is(err, fs.ErrExist) {
			td, err = openFolder(tmpDir)
		}
	}
	if err != nil {
		return id, fmt.Errorf("temp folder: %w", err)
	}
	defer td.close()
	f, err := createTemp(td, tmpDir, tempPrefix(name))
	if err != nil {
		return id, fmt.Errorf("create temp file: %w", err)
	}
	tmp := f.name
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				f.close()
			}
			td.remove(f.base)
		}
	}()
	if err = f.write(data); err != nil {
		return id, fmt.Errorf("write %s: %w", tmp, err)
	}
	var perm uint32
	if id, perm, err = f.stat(); err != nil {
		return id, fmt.Errorf("fstat %s: %w", tmp, err)
	}
	// The file is created 0644, less the umask or as the folder's default
	// ACL says; Envoy may run as another user. The fstat, needed for the
	// file's identity anyway, tells whether there is anything to fix: with
	// the usual umask (022) and no ACL, no chmod per write.
	if perm != 0o644 {
		if err = f.chmod(0o644); err != nil {
			return id, fmt.Errorf("chmod %s: %w", tmp, err)
		}
	}
	if err = f.sync(); err != nil {
		return id, fmt.Errorf("fsync %s: %w", tmp, err)
	}
	closed = true
	if err = f.close(); err != nil {
		return id, fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = rename(td, f.base, d, name); err != nil {
		return id, fmt.Errorf("rename: %w", err)
	}
	return id, nil
}

// tempPrefix starts the names of the temp files of the file name (or
// path): its base, within the 255-byte limit once a suffix is added.
func tempPrefix(name string) string {
	prefix := filepath.Base(name)
	if len(prefix) > maxTempPrefix {
		prefix = prefix[:maxTempPrefix]
	}
	return prefix
}

// renameFunc renames the temp file from, in the temp folder tmp, to name
// in d: renameAt, which tests swap to make the last step fail.
type renameFunc func(tmp dirHandle, from string, d dirHandle, name string) error

// tempName is a fresh name for createTemp: random, as os.CreateTemp makes
// them, so that two processes (or a leftover of a crash that cleanTmp has
// not seen) collide only by chance, and then the next try succeeds.
func tempName(prefix string) string {
	return prefix + "." + strconv.FormatUint(rand.Uint64(), 36)
}

// maxTempTries bounds createTemp's retries on a name that exists.
const maxTempTries = 100

// cleanTmp makes dir/.tmp exist and removes what a crash left in it: nothing
// else writes there, so everything in it is a temp file of ours. A link
// or a file in its place is removed (never followed: cleaning the folder a
// link points at would delete someone else's files) and the folder made.
func cleanTmp(dir string) (removed int, err error) {
	return cleanTmpOf(dir, func(string) bool { return true })
}

// cleanTmpOf is cleanTmp removing only the entries ours says are ours.
func cleanTmpOf(dir string, ours func(name string) bool) (removed int, err error) {
	tmpDir := filepath.Join(dir, tmpDirName)
	if fi, err := os.Lstat(tmpDir); err == nil && !fi.IsDir() {
		if err := os.Remove(tmpDir); err != nil { // the link itself
			return 0, fmt.Errorf("temp folder %s is not a folder (mode %s) and cannot be removed: %w", tmpDir, fi.Mode(), err)
		}
		removed++
	}
	if err := os.Mkdir(tmpDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return 0, fmt.Errorf("create temp folder: %w", err)
	}
	entries, err := os.ReadDir(tmpDir)
	if err != nil {
		return 0, fmt.Errorf("temp folder: %w", err)
	}
	for _, e := range entries {
		if !ours(e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(tmpDir, e.Name())); err != nil {
			return removed, fmt.Errorf("remove leftover temp file: %w", err)
		}
		removed++
	}
	return removed, nil
}
