package writer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

// run writes jobs, Concurrency at a time, and records the outcomes: the
// workers only do file I/O and fill their slot of outcomes; all bookkeeping
// happens here, after they are done.
func (w *Writer) run(ctx context.Context, jobs []job, res *Result, errs []error) {
	defer func() { res.Err = errors.Join(errs...) }()
	if len(jobs) == 0 {
		return
	}
	outcomes := make([]outcome, len(jobs))
	failures := make([]error, len(jobs))
	ids := make([]fileIdent, len(jobs))
	made := make([]bool, len(jobs)) // the job made its cluster folder
	if w.dryRun {
		// Sequential, in input order: the output is read by people and tests.
		for i, j := range jobs {
			outcomes[i], failures[i] = w.print(j)
		}
	} else {
		var next atomic.Int64
		work := func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				if err := ctx.Err(); err != nil {
					failures[i] = fmt.Errorf("%s: not written: %w", jobs[i].path, err)
					continue
				}
				outcomes[i], ids[i], made[i], failures[i] = w.store(jobs[i])
			}
		}
		if n := min(w.concurrency, len(jobs)); n == 1 {
			// One file (the usual batch of a single change): a goroutine
			// would only add its start and the wake-up of this one.
			work()
		} else {
			var wg sync.WaitGroup
			for range n {
				wg.Go(work)
			}
			wg.Wait()
		}
	}

	canceled := 0
	madeFolder := false // DIR changed: it needs an fsync too
	for i, j := range jobs {
		madeFolder = madeFolder || made[i]
		switch outcomes[i] {
		case written:
			res.Written++
			res.WrittenClusters = append(res.WrittenClusters, j.cluster)
			res.Kept = append(res.Kept, Kept{Cluster: j.cluster, Version: j.enc.version, Renamed: true})
			if failures[i] != nil { // the fsync of its folder
				errs = append(errs, failures[i])
				w.log.Error("fsync folder failed", "cluster", j.cluster, "path", j.path, "error", failures[i])
			}
		case unchanged:
			res.Unchanged++
			res.Kept = append(res.Kept, Kept{Cluster: j.cluster, Version: j.enc.version})
		case failed:
			res.Failed++
			errs = append(errs, failures[i])
			// Retry writes this content, unless a newer Write replaces it.
			// A copy: the encoder reuses its buffers.
			j.enc.data = bytes.Clone(j.enc.data)
			w.pending[j.cluster] = j
			if ctx.Err() != nil && errors.Is(failures[i], ctx.Err()) {
				canceled++ // logged once below, not 10,000 times at shutdown
			} else {
				w.log.Error("write failed; the old file stays", "cluster", j.cluster, "path", j.path, "error", reason(failures[i], j.path))
			}
			continue
		}
		delete(w.pending, j.cluster)
		if j.release {
			w.release(j.cluster)
			continue
		}
		if _, known := w.files[j.cluster]; (!known || made[i]) && w.watch != nil {
			// A new folder (a first write, or one made again after it
			// was removed) has no watch yet.
			w.watch.follow(j.cluster, j.path)
		}
		w.files[j.cluster] = fileState{digest: j.enc.digest, id: ids[i]}
		delete(w.found, j.cluster)
		if entry := w.layout.entryOf(j.path); w.layout.shortened(entry, w.format) {
			w.short[entry] = j.cluster
		}
	}
	if canceled > 0 {
		w.log.Error("files not written: canceled", "count", canceled, "error", ctx.Err())
	}
	// In the flat layout, one fsync of the folder makes all of the batch's
	// renames durable; in the folders layout each worker fsynced the folder
	// it renamed into, and this one is needed only for the folders made.
	if res.Written > 0 && !w.dryRun && (w.layout == LayoutFlat || madeFolder) {
		if err := syncDir(w.dir); err != nil {
			err = fmt.Errorf("fsync %s: %w", w.dir, err)
			errs = append(errs, err)
			w.log.Error("fsync folder failed", "path", w.dir, "error", err)
		}
	}
	done := "written"
	if w.dryRun {
		done = "printed"
	}
	w.log.Debug("batch done", done, res.Written, "unchanged", res.Unchanged, "failed", res.Failed)
}

// store writes one file unless, when the Writer knows nothing of it, the
// file on disk already holds the same bytes (a restart). It returns which
// file is now at the path, and whether it made the cluster's folder. A
// failed fsync of the folder is returned with the outcome written: the
// file is in place.
func (w *Writer) store(j job) (_ outcome, _ fileIdent, made bool, _ error) {
	d, name, made, err := w.openFolderOf(j.path, true)
	if err != nil {
		return failed, fileIdent{}, false, fmt.Errorf("%s: %w", j.path, err)
	}
	defer d.close()
	if j.checkDisk {
		old, id, err := d.read(name)
		if err == nil && bytes.Equal(old, j.enc.data) {
			w.log.Debug("unchanged on disk", "cluster", j.cluster, "path", j.path, "version", j.enc.version)
			return unchanged, id, made, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Unreadable or not a file: writeAtomic reports what is wrong.
			w.log.Debug("cannot compare with file on disk", "path", j.path, "error", err)
		}
	}
	id, err := writeAtomic(w.tmpDir, d, name, j.enc.data, j.first || made, w.rename)
	if err != nil {
		return failed, fileIdent{}, made, fmt.Errorf("%s: %w", j.path, err)
	}
	w.log.Debug("wrote", "cluster", j.cluster, "path", j.path, "version", j.enc.version, "bytes", len(j.enc.data))
	if w.layout == LayoutFolders {
		// The rename is durable once its folder is; the output folder
		// itself changes only when a cluster folder is made (run).
		if err := d.sync(); err != nil {
			return written, id, made, fmt.Errorf("fsync %s: %w", filepath.Dir(j.path), err)
		}
	}
	return written, id, made, nil
}

// openFolderOf opens the folder a cluster's file at path is written in,
// and names the file in it: in the folders layout the cluster's folder,
// opened without following a link, so that every later step is relative
// to it and nothing planted in its place is written through (made if
// missing and make is set); in the flat layout, the output folder, named
// by path like the file (the user's folder, a link to it is theirs).
func (w *Writer) openFolderOf(path string, make bool) (d dirHandle, name string, made bool, err error) {
	if w.layout == LayoutFlat {
		return cwd, path, false, nil
	}
	folder := filepath.Dir(path)
	d, err = openFolder(folder)
	if errors.Is(err, fs.ErrNotExist) && make {
		if err = os.Mkdir(folder, 0o755); err == nil || errors.Is(err, fs.ErrExist) {
			made = err == nil
			d, err = openFolder(folder)
		}
	}
	if err != nil {
		return dirHandle{}, "", false, fmt.Errorf("its folder: %w", err)
	}
	return d, filepath.Base(path), made, nil
}

// readFile reads a cluster's file at path, through its folder as
// openFolderOf opens it: never through a link, never blocking on a FIFO.
func (w *Writer) readFile(path string) ([]byte, fileIdent, error) {
	d, name, _, err := w.openFolderOf(path, false)
	if err != nil {
		return nil, fileIdent{}, err
	}
	defer d.close()
	return d.read(name)
}

// reason is err without the path it starts with, which Result.Err needs
// and a log line already has as an attribute of its own.
func reason(err error, path string) string {
	return strings.TrimPrefix(err.Error(), path+": ")
}
