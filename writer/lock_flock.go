//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package writer

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes an exclusive flock(2) on f without waiting. flock locks
// belong to the open file, not the process (unlike fcntl locks), so two
// opens in one process conflict too and closing f releases it.
func tryLock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errHeld
	}
	return err
}

// noFollow makes the lock file's open refuse a link in its place, and not
// block on a FIFO there.
const noFollow = syscall.O_NOFOLLOW | syscall.O_NONBLOCK
