//go:build unix

package writer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// tempFile is a file being written by writeAtomic, held as a bare
// descriptor: os.File costs five more system calls per file (fcntl to
// probe and set non-blocking mode, an epoll registration that fails for a
// regular file, fcntl to undo it) and a finalizer, for a poller that
// regular files never use.
type tempFile struct {
	fd   int
	name string
}

// createTemp creates a new file in dir named prefix.<random>, mode 0644
// less the umask.
func createTemp(dir, prefix string) (tempFile, error) {
	for range maxTempTries {
		name := tempName(dir, prefix)
		fd, err := syscall.Open(name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o644)
		switch {
		case err == nil:
			return tempFile{fd: fd, name: name}, nil
		case errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.EINTR):
			continue
		}
		return tempFile{}, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return tempFile{}, fmt.Errorf("no free temp file name in %s after %d tries", dir, maxTempTries)
}

func (f tempFile) write(b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(f.fd, b)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

func (f tempFile) chmod(mode uint32) error {
	return ignoringEINTR(func() error { return syscall.Fchmod(f.fd, mode) })
}

func (f tempFile) sync() error { return ignoringEINTR(func() error { return syscall.Fsync(f.fd) }) }

// fileIdent tells files apart: a rename over the path brings another inode.
// The size too, as a file system may give a freed inode to the next file
// made (rm, then touch): a file of ours is never empty.
type fileIdent struct {
	dev, ino uint64
	size     int64
}

// stat returns the file's identity and permission bits.
func (f tempFile) stat() (fileIdent, uint32, error) {
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(f.fd, &st) }); err != nil {
		return fileIdent{}, 0, err
	}
	return fileIdent{dev: uint64(st.Dev), ino: st.Ino, size: st.Size}, uint32(st.Mode) & 0o777, nil
}

// identOf is the identity of the file fi describes.
func identOf(fi os.FileInfo) fileIdent {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileIdent{}
	}
	return fileIdent{dev: uint64(st.Dev), ino: st.Ino, size: st.Size}
}

// close is not retried on EINTR: the descriptor is released whatever close returns.
func (f tempFile) close() error { return syscall.Close(f.fd) }

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// renameFile is rename(2). os.Rename stats the target first, to turn a
// rename over a folder into a clearer error; the kernel refuses that rename
// anyway (EISDIR), so the stat is a system call per write for nothing.
func renameFile(from, to string) error {
	if err := ignoringEINTR(func() error { return syscall.Rename(from, to) }); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	err = ignoringEINTR(func() error { return syscall.Fsync(fd) })
	if cerr := syscall.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return &fs.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
}
