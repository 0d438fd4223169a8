//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package writer

import "os"

// tryLock does not lock where flock(2) is missing: the folder is not
// guarded there, and one folder per edsync is up to the operator.
func tryLock(*os.File) error { return nil }

// noFollow: no such open flags here.
const noFollow = 0
