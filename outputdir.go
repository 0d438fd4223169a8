package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/edsync/edsync/writer"
)

// claimOutputDir readies the output folder for a run that writes: it
// creates the folder if it is missing, with its parents (the user asked for
// that folder, as consul-template creates its destinations), and takes the
// folder's lock, before the writer lists and sweeps the folder. A folder has
// one edsync: a second one's start-up sweep would empty the first one's
// files. release gives the lock up; the kernel does it too when the process
// ends, however it ends.
func claimOutputDir(dir string, log *slog.Logger) (release func(), err error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		// 0755: Envoy's user, not edsync's, reads the files.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create the output folder: %w", err)
		}
		log.Info("created the output folder", "dir", dir)
	}
	lock, err := writer.LockDir(dir)
	if err != nil {
		return nil, err
	}
	return func() { lock.Release() }, nil
}
