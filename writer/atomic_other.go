//go:build !unix

package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// tempFile is a file being written by writeAtomic. On Unix it is a bare
// descriptor (atomic_unix.go); elsewhere an os.File.
type tempFile struct {
	f    *os.File
	name string
}

// createTemp creates a new file in dir named prefix.<random>.
func createTemp(dir, prefix string) (tempFile, error) {
	for range maxTempTries {
		name := tempName(dir, prefix)
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return tempFile{}, err
		}
		return tempFile{f: f, name: name}, nil
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

func renameFile(from, to string) error { return os.Rename(from, to) }

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
