package writer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// Watcher follows the output folder for files of the Writer's that someone
// else removed, renamed away, replaced or wrote into: a person, a cleanup
// job. The Writer believes such a file holds its last content and would
// never write it again while its cluster does not change, though Envoy
// cannot start without it.
//
// Every write of ours is a rename into the folder too (a Create event on
// the target): what tells them apart is the file. The Writer notes which
// file (device and inode) it renamed into place, and an event for one of
// its files is checked against the file at the path now. Events in the
// temp folder (.tmp/) never reach the watch: it does not recurse.
type Watcher struct {
	w   *Writer
	fsw *fsnotify.Watcher
}

// ErrDryRun is returned by Watch in dry-run: there is no folder to follow.
var ErrDryRun = errors.New("writer: a dry run has no folder to watch")

// Watch starts following the output folder; Run reports what it sees.
func (w *Writer) Watch() (*Watcher, error) {
	if w.dryRun {
		return nil, ErrDryRun
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", w.dir, err)
	}
	if err := fsw.Add(w.dir); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("watch %s: %w", w.dir, err)
	}
	return &Watcher{w: w, fsw: fsw}, nil
}

// Run calls lost, until ctx ends, with the clusters whose files are gone or
// not the ones the Writer wrote. The Writer has forgotten those files by
// then: the next Write of each cluster writes it, whatever its content.
// lost is called from Run's goroutine. Run closes the watch and returns nil
// when ctx ends.
func (fw *Watcher) Run(ctx context.Context, lost func(clusters []string)) error {
	defer fw.fsw.Close()
	log := fw.w.log
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.fsw.Events:
			if !ok {
				return nil
			}
			// A burst (rm of the whole folder) is checked in one go.
			ops := make(map[string]fsnotify.Op)
			fw.note(ev, ops)
		drain:
			for {
				select {
				case ev, ok := <-fw.fsw.Events:
					if !ok {
						break drain
					}
					fw.note(ev, ops)
				default:
					break drain
				}
			}
			if gone := fw.w.check(ops); len(gone) > 0 {
				log.Warn("files changed behind edsync's back; writing them again", "clusters", len(gone), "first", gone[0])
				lost(gone)
			}
		case err, ok := <-fw.fsw.Errors:
			if !ok {
				return nil
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				log.Warn("output folder watch", "error", err)
				continue
			}
			// Events were lost: look at every file.
			log.Warn("output folder watch: too many events; checking every file", "error", err)
			if gone := fw.w.checkAll(); len(gone) > 0 {
				lost(gone)
			}
		}
	}
}

// note records one event by file name. A change of mode or time alone
// leaves the content as it was: it is not looked at.
func (fw *Watcher) note(ev fsnotify.Event, ops map[string]fsnotify.Op) {
	if ev.Name == fw.w.dir {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			fw.w.log.Error("the output folder itself was removed or renamed; writes fail until it is back", "dir", fw.w.dir)
		}
		return
	}
	name := filepath.Base(ev.Name)
	if strings.HasPrefix(name, ".") || ev.Op == fsnotify.Chmod {
		return // .tmp/ and other hidden files are never a cluster's
	}
	ops[name] |= ev.Op
}

// check returns, sorted, the clusters among the files named in ops whose
// file is not the one the Writer knows, and forgets what it knew of them.
// A write into one of its files is always someone else's: the Writer
// replaces files, it never writes into them.
func (w *Writer) check(ops map[string]fsnotify.Op) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for name, op := range ops {
		cluster, ok := ClusterName(name, w.format)
		if !ok {
			cluster, ok = w.short[name]
		}
		if !ok {
			continue
		}
		f, known := w.files[cluster]
		if !known {
			continue // never written, or released: nothing to keep right
		}
		if op.Has(fsnotify.Write) || !w.sameFile(name, f.id) {
			delete(w.files, cluster)
			out = append(out, cluster)
		}
	}
	slices.Sort(out)
	return out
}

// checkAll is check for every file the Writer knows.
func (w *Writer) checkAll() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for cluster, f := range w.files {
		path, err := w.Path(cluster)
		if err != nil || !w.sameFile(filepath.Base(path), f.id) {
			delete(w.files, cluster)
			out = append(out, cluster)
		}
	}
	slices.Sort(out)
	return out
}

// sameFile reports whether the file name in the folder is the regular file id.
func (w *Writer) sameFile(name string, id fileIdent) bool {
	fi, err := os.Lstat(filepath.Join(w.dir, name))
	return err == nil && fi.Mode().IsRegular() && identOf(fi) == id
}
