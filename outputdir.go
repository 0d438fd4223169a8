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
	if fi, err := os.Stat(dir); err == nil {
		for _, risk := range outputDirRisks(fi, os.Geteuid()) {
			log.Warn("the output folder is not edsync's alone: "+risk, "dir", dir)
		}
	}
	return func() { lock.Release() }, nil
}

// outputDirRisks says who else than edsync (running as euid) may change
// the output folder fi: they could make or replace a cluster's folder
// before edsync does, and so the files Envoy reads. Nothing in the folder
// is followed or opened blocking (see writer), but a folder of theirs is
// theirs to change. Not refused: a volume's root may be so by design (an
// emptyDir is 0777 whoever mounts it), and only the operator knows whether
// anyone else can reach it.
func outputDirRisks(fi fs.FileInfo, euid int) []string {
	var out []string
	if uid, ok := ownerOf(fi); ok && uid != euid && uid != 0 {
		out = append(out, fmt.Sprintf("it is owned by uid %d, not edsync's (%d), and its owner can replace the files in it; "+
			"give it to edsync's user, or point --output-dir at a folder edsync creates", uid, euid))
	}
	if fi.Mode().Perm()&0o002 != 0 {
		out = append(out, fmt.Sprintf("any user may write it (mode %#o) and plant a cluster's folder or file before edsync writes it; "+
			"make it 0755, or point --output-dir at a folder inside it, which edsync creates 0755", fi.Mode().Perm()))
	}
	return out
}
