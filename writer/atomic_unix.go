//go:build unix

package writer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// tempFile is a file being written by writeAtomic, held as a bare
// descriptor: os.File costs five more system calls per file (fcntl to
// probe and set non-blocking mode, an epoll registration that fails for a
// regular file, fcntl to undo it) and a finalizer, for a poller that
// regular files never use.
type tempFile struct {
	fd   int
	name string // its path, for messages
	base string // its name in the temp folder
}

// createTemp creates a new file named prefix.<random> in the folder td
// (whose path is dir), mode 0644 less the umask.
func createTemp(td dirHandle, dir, prefix string) (tempFile, error) {
	for range maxTempTries {
		base := tempName(prefix)
		fd, err := unix.Openat(td.fd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		name := dir + string(os.PathSeparator) + base
		switch {
		case err == nil:
			return tempFile{fd: fd, name: name, base: base}, nil
		case errors.Is(err, unix.EEXIST), errors.Is(err, unix.EINTR):
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

// dirHandle is a folder the writer works in by descriptor, so that a path
// is resolved once: a cluster folder opened without following a link,
// then its file created, read, renamed onto and removed relative to that
// descriptor, never through a link someone put in the folder's place
// meanwhile. cwd is the handle of no folder: names are then paths, as in
// the flat layout, whose output folder is the user's to choose.
type dirHandle struct{ fd int }

var cwd = dirHandle{fd: unix.AT_FDCWD}

// errNotAFolder says that a cluster folder's name holds something else: a
// link (never followed) or a file.
var errNotAFolder = errors.New("not a folder (a link or a file in the cluster folder's place)")

// openFolder opens the folder at path, never through a link.
func openFolder(path string) (dirHandle, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case err == nil:
			return dirHandle{fd: fd}, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
			return dirHandle{}, &fs.PathError{Op: "open", Path: path, Err: errNotAFolder}
		}
		return dirHandle{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
}

func (d dirHandle) close() {
	if d.fd != unix.AT_FDCWD {
		unix.Close(d.fd)
	}
}

// sync makes the renames in the folder durable.
func (d dirHandle) sync() error { return ignoringEINTR(func() error { return unix.Fsync(d.fd) }) }

// renameAt renames the file from in tmp to name in d: rename(2) with both
// resolved from their folders, never following a link in the last step.
func renameAt(tmp dirHandle, from string, d dirHandle, name string) error {
	if err := ignoringEINTR(func() error { return unix.Renameat(tmp.fd, from, d.fd, name) }); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: name, Err: err}
	}
	return nil
}

// mode is the type and permission bits of name in d, not following a
// link; exists is false if there is nothing of that name.
func (d dirHandle) mode(name string) (mode fs.FileMode, exists bool, err error) {
	var st unix.Stat_t
	err = ignoringEINTR(func() error { return unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	if errors.Is(err, unix.ENOENT) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return fileMode(uint32(st.Mode)), true, nil
}

// read reads the regular file name in d and tells which file it read. It
// follows no link and does not block on a FIFO or a device put there: it
// refuses anything but a regular file before reading.
func (d dirHandle) read(name string) ([]byte, fileIdent, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		return err
	})
	if errors.Is(err, unix.ELOOP) {
		return nil, fileIdent{}, &fs.PathError{Op: "open", Path: name, Err: errors.New("a link, not a regular file")}
	}
	if err != nil {
		return nil, fileIdent{}, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileIdent{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fileIdent{}, fmt.Errorf("%s: not a regular file (mode %s)", name, fi.Mode())
	}
	var b bytes.Buffer
	b.Grow(int(fi.Size()) + bytes.MinRead) // one read, and one to see EOF
	if _, err := b.ReadFrom(f); err != nil {
		return nil, fileIdent{}, err
	}
	return b.Bytes(), identOf(fi), nil
}

// remove removes the file name from d.
func (d dirHandle) remove(name string) error {
	if err := ignoringEINTR(func() error { return unix.Unlinkat(d.fd, name, 0) }); err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	return nil
}

// fileMode turns a stat mode into an fs.FileMode, as os.Lstat does.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	default:
		mode |= fs.ModeIrregular
	}
	return mode
}

// removeEmptyFolder removes the empty folder at path: rmdir(2), which
// fails on anything else, a link to a folder included (os.Remove would
// unlink the link).
func removeEmptyFolder(path string) error {
	if err := ignoringEINTR(func() error { return unix.Rmdir(path) }); err != nil {
		return &fs.PathError{Op: "rmdir", Path: path, Err: err}
	}
	return nil
}
