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
	var madeFolder atomic.Bool // a cluster folder was made: DIR changed
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
				var made bool
				outcomes[i], ids[i], made, failures[i] = w.store(jobs[i])
				if made {
					madeFolder.Store(true)
				}
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
	for i, j := range jobs {
		switch outcomes[i] {
		case written:
			res.Written++
			res.WrittenClusters = append(res.WrittenClusters, j.cluster)
			if failures[i] != nil { // the fsync of its folder
				errs = append(errs, failures[i])
				w.log.Error("fsync folder failed", "cluster", j.cluster, "path", j.path, "error", failures[i])
			}
		case unchanged:
			res.Unchanged++
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
		if _, known := w.files[j.cluster]; !known && w.watch != nil {
			w.watch.follow(j.path)
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
	if res.Written > 0 && !w.dryRun && (w.layout == LayoutFlat || madeFolder.Load()) {
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
// file is now at the path, and whether it made the cluster's folder.
func (w *Writer) store(j job) (_ outcome, _ fileIdent, made bool, _ error) {
	if j.checkDisk {
		old, id, err := readFile(j.path)
		if err == nil && bytes.Equal(old, j.enc.data) {
			w.log.Debug("unchanged on disk", "cluster", j.cluster, "path", j.path, "version", j.enc.version)
			return unchanged, id, false, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Unreadable or not a file: writeAtomic reports what is wrong.
			w.log.Debug("cannot compare with file on disk", "path", j.path, "error", err)
		}
	}
	folder := w.layout == LayoutFolders
	if folder && j.first {
		// Once per cluster and process: after that the folder is one we
		// made or checked, and a rename into it that fails for want of it
		// makes it again below.
		var err error
		if made, err = makeFolder(filepath.Dir(j.path)); err != nil {
			return failed, fileIdent{}, false, fmt.Errorf("%s: %w", j.path, err)
		}
	}
	id, err := writeAtomic(w.tmpDir, j.path, j.enc.data, j.first, w.rename)
	if folder && errors.Is(err, fs.ErrNotExist) {
		// The folder was removed since (the folder watch says so too):
		// make it again rather than fail until the next write.
		var again bool
		if again, err = makeFolder(filepath.Dir(j.path)); err == nil {
			made = made || again
			id, err = writeAtomic(w.tmpDir, j.path, j.enc.data, true, w.rename)
		}
	}
	if err != nil {
		return failed, fileIdent{}, made, fmt.Errorf("%s: %w", j.path, err)
	}
	w.log.Debug("wrote", "cluster", j.cluster, "path", j.path, "version", j.enc.version, "bytes", len(j.enc.data))
	if folder {
		// The rename is durable once its folder is; the output folder
		// itself changes only when a cluster folder is made (run). A
		// failure is reported, but the file is in place: written.
		if err := syncDir(filepath.Dir(j.path)); err != nil {
			return written, id, made, fmt.Errorf("fsync %s: %w", filepath.Dir(j.path), err)
		}
	}
	return written, id, made, nil
}

// makeFolder makes a cluster's folder if it is missing, and checks that
// what is there is a folder and not a link: a rename through a link planted
// in the output folder would put our file wherever it points.
func makeFolder(dir string) (made bool, err error) {
	if err := os.Mkdir(dir, 0o755); err == nil {
		return true, nil
	} else if !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("make its folder: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return false, fmt.Errorf("its folder: %w", err)
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("its folder %s is not a folder (mode %s)", dir, fi.Mode())
	}
	return false, nil
}

// reason is err without the path it starts with, which Result.Err needs
// and a log line already has as an attribute of its own.
func reason(err error, path string) string {
	return strings.TrimPrefix(err.Error(), path+": ")
}
