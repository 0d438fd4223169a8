//go:build !unix

package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// tempFile is a file being written by writeAtomic. On Unix it is a bare
// descriptor (atomic_unix.go); elsewhere an os.File.
type tempFile struct {
	f          *os.File
	name, base string
}

// createTemp creates a new file in td (at dir) named prefix.<random>.
func createTemp(td dirHandle, dir, prefix string) (tempFile, error) {
	for range maxTempTries {
		base := tempName(prefix)
		name := td.at(base)
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return tempFile{}, err
		}
		return tempFile{f: f, name: name, base: base}, nil
	}
	return tempFile{}, fmt.Errorf("no free temp file name in %s after %d tries", dir, maxTempTries)
}

func (f tempFile) write(b []byte) error    { _, err := f.f.Write(b); return err }
func (f tempFile) chmod(mode uint32) error { return f.f.Chmod(fs.FileMode(mode)) }
func (f tempFile) sync() error             { return f.f.Sync() }
func (f tempFile) close() error            { return f.f.Close() }

// fileIdent would tell files apart; without inodes at hand, all files look
// the same here, and only a removed file is noticed.
type fileIdent struct{}

func (f tempFile) stat() (fileIdent, uint32, error) {
	fi, err := f.f.Stat()
	if err != nil {
		return fileIdent{}, 0, err
	}
	return fileIdent{}, uint32(fi.Mode().Perm()), nil
}

func identOf(os.FileInfo) fileIdent { return fileIdent{} }

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

// dirHandle is a folder the writer works in. Here it is a path: without
// openat(2) and friends, a link put in a cluster folder's place is refused
// when the folder is opened (Lstat), not on each step.
type dirHandle struct{ path string }

var cwd = dirHandle{}

var errNotAFolder = errors.New("not a folder (a link or a file in the cluster folder's place)")

func openFolder(path string) (dirHandle, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return dirHandle{}, err
	}
	if !fi.IsDir() {
		return dirHandle{}, &fs.PathError{Op: "open", Path: path, Err: errNotAFolder}
	}
	return dirHandle{path: path}, nil
}

func (d dirHandle) at(name string) string {
	if d.path == "" {
		return name
	}
	return filepath.Join(d.path, name)
}

func (d dirHandle) close()      {}
func (d dirHandle) sync() error { return syncDir(d.path) }

func renameAt(tmp dirHandle, from string, d dirHandle, name string) error {
	return os.Rename(tmp.at(from), d.at(name))
}

func (d dirHandle) mode(name string) (fs.FileMode, bool, error) {
	fi, err := os.Lstat(d.at(name))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return fi.Mode(), true, nil
}

func (d dirHandle) read(name string) ([]byte, fileIdent, error) {
	if m, ok, err := d.mode(name); err == nil && ok && !m.IsRegular() {
		return nil, fileIdent{}, fmt.Errorf("%s: not a regular file (mode %s)", name, m)
	}
	data, err := os.ReadFile(d.at(name))
	return data, fileIdent{}, err
}

func (d dirHandle) remove(name string) error { return os.Remove(d.at(name)) }

func removeEmptyFolder(path string) error {
	if fi, err := os.Lstat(path); err == nil && !fi.IsDir() {
		return &fs.PathError{Op: "rmdir", Path: path, Err: errNotAFolder}
	}
	return os.Remove(path)
}
