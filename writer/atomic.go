package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// tmpDirName is the hidden folder for temp files. Temp files live inside the
// output folder so that the rename stays on one file system (atomic), but in a
// sub-folder so that Envoy's watch on the output folder does not wake for
// every temp file created and written (Envoy rule 5).
const tmpDirName = ".tmp"

// maxTempPrefix keeps temp names within the 255-byte limit once CreateTemp
// has added its random suffix.
const maxTempPrefix = 200

// writeAtomic replaces path with data so that a reader sees the old file or
// the new one, never a part: temp file, write, fsync, chmod, close, rename
// (Envoy reloads only on that rename: IN_MOVED_TO). The folder itself is
// fsynced by the caller, once per batch. On any error the temp file is
// removed and path is untouched.
func writeAtomic(tmpDir, path string, data []byte, rename func(from, to string) error) (err error) {
	// Refuse to replace a folder, socket, device...: renaming over them
	// either fails late or destroys something that is not ours.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("target is not a regular file (mode %s)", fi.Mode())
	}
	prefix := filepath.Base(path)
	if len(prefix) > maxTempPrefix {
		prefix = prefix[:maxTempPrefix]
	}
	f, err := os.CreateTemp(tmpDir, prefix+".*")
	if errors.Is(err, fs.ErrNotExist) {
		// Someone removed .tmp/ since New: make it again rather than fail
		// every write until a restart.
		if err = os.Mkdir(tmpDir, 0o755); err == nil || errors.Is(err, fs.ErrExist) {
			f, err = os.CreateTemp(tmpDir, prefix+".*")
		}
	}
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				f.Close()
			}
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	// CreateTemp makes 0600; Envoy may run as another user.
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	closed = true
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = rename(tmp, path); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	return nil
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// cleanTmp makes dir/.tmp exist and removes what a crash left in it: nothing
// else writes there, so everything in it is a temp file of ours.
func cleanTmp(dir string) (removed int, err error) {
	tmpDir := filepath.Join(dir, tmpDirName)
	if err := os.Mkdir(tmpDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return 0, fmt.Errorf("create temp folder: %w", err)
	}
	entries, err := os.ReadDir(tmpDir)
	if err != nil {
		return 0, fmt.Errorf("temp folder: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(tmpDir, e.Name())); err != nil {
			return removed, fmt.Errorf("remove leftover temp file: %w", err)
		}
		removed++
	}
	return removed, nil
}
