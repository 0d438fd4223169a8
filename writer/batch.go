package writer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
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
				outcomes[i], ids[i], failures[i] = w.store(jobs[i])
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
		w.files[j.cluster] = fileState{digest: j.enc.digest, id: ids[i]}
		delete(w.found, j.cluster)
		if name := filepath.Base(j.path); shortened(name, w.format) {
			w.short[name] = j.cluster
		}
	}
	if canceled > 0 {
		w.log.Error("files not written: canceled", "count", canceled, "error", ctx.Err())
	}
	if res.Written > 0 && !w.dryRun {
		// One fsync of the folder makes all of the batch's renames durable.
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
// file is now at the path.
func (w *Writer) store(j job) (outcome, fileIdent, error) {
	if j.checkDisk {
		old, id, err := readFile(j.path)
		if err == nil && bytes.Equal(old, j.enc.data) {
			w.log.Debug("unchanged on disk", "cluster", j.cluster, "path", j.path, "version", j.enc.version)
			return unchanged, id, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Unreadable or not a file: writeAtomic reports what is wrong.
			w.log.Debug("cannot compare with file on disk", "path", j.path, "error", err)
		}
	}
	id, err := writeAtomic(w.tmpDir, j.path, j.enc.data, j.first, w.rename)
	if err != nil {
		return failed, fileIdent{}, fmt.Errorf("%s: %w", j.path, err)
	}
	w.log.Debug("wrote", "cluster", j.cluster, "path", j.path, "version", j.enc.version, "bytes", len(j.enc.data))
	return written, id, nil
}

// reason is err without the path it starts with, which Result.Err needs
// and a log line already has as an attribute of its own.
func reason(err error, path string) string {
	return strings.TrimPrefix(err.Error(), path+": ")
}
