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
// temp folder (.tmp/) never reach the watch: it is not watched.
//
// In the folders layout the watch costs one inotify watch on the output
// folder (a cluster folder removed or renamed away) and one per cluster
// folder of a file the Writer knows (a file in it removed, replaced or
// written into), added after the cluster's first write (or after its
// folder was made again) and removed when it is released or lost: bounded
// by the clusters published, one inotify instance in all. Each of our
// renames wakes it once, as it wakes the one Envoy subscription on that
// folder.
//
// The Writer never calls into fsnotify itself: it queues the folders to
// watch or forget, under its lock, and Run applies them on its own
// goroutine. fsnotify holds its lock while it hands Run an error, and Run
// takes the Writer's lock to check events: calling fsnotify under the
// Writer's lock could leave each waiting on the other.
type Watcher struct {
	w    *Writer
	fsw  *fsnotify.Watcher
	wake chan struct{} // a folder to watch or forget is queued
	// full is set once a folder could not be watched (inotify's
	// max_user_watches): logged once, not per folder. Run's alone.
	full bool
	// onApply, a test hook, is called after the queued changes are applied.
	onApply func()
}

// folderOp is a change to the folders watched, queued by the Writer.
type folderOp struct {
	cluster, dir string
	add          bool
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
	fw := &Watcher{w: w, fsw: fsw, wake: make(chan struct{}, 1)}
	if w.layout == LayoutFolders {
		w.mu.Lock()
		w.watch = fw
		for cluster := range w.files {
			if path, err := w.Path(cluster); err == nil {
				fw.follow(cluster, path)
			}
		}
		w.mu.Unlock()
	}
	return fw, nil
}

// follow queues a watch on the folder of cluster's file path, in the
// folders layout. The caller holds w.mu.
func (fw *Watcher) follow(cluster, path string) {
	fw.queue(folderOp{cluster: cluster, dir: filepath.Dir(path), add: true})
}

// unfollow queues the end of the watch on the folder of the cluster file
// path. The caller holds w.mu.
func (fw *Watcher) unfollow(path string) {
	fw.queue(folderOp{dir: filepath.Dir(path)})
}

func (fw *Watcher) queue(op folderOp) {
	if fw.w.layout != LayoutFolders {
		return
	}
	fw.w.watchOps = append(fw.w.watchOps, op)
	select {
	case fw.wake <- struct{}{}:
	default:
	}
}

// apply carries out the queued changes to the folders watched, without
// holding w.mu, and returns the clusters just followed whose file is
// already not the Writer's: lost between its write and its watch.
func (fw *Watcher) apply() []string {
	w := fw.w
	w.mu.Lock()
	ops := w.watchOps
	w.watchOps = nil
	w.mu.Unlock()
	var added []string
	for _, op := range ops {
		if !op.add {
			fw.fsw.Remove(op.dir) // already gone with its folder: no matter
			continue
		}
		if err := fw.fsw.Add(op.dir); err != nil {
			if !fw.full {
				fw.full = true
				w.log.Warn("cannot watch a cluster folder (inotify's max_user_watches?): a file removed there by someone else is written again only when its cluster changes",
					"path", op.dir, "error", err)
			}
			continue
		}
		added = append(added, op.cluster)
	}
	if fw.onApply != nil {
		fw.onApply()
	}
	if len(added) == 0 {
		return nil
	}
	return w.checkClusters(added)
}

// Run calls lost, until ctx ends, with the clusters whose files are gone or
// not the ones the Writer wrote. The Writer has forgotten those files by
// then: the next Write of each cluster writes it, whatever its content.
// lost is called from Run's goroutine. Run closes the watch and returns nil
// when ctx ends.
func (fw *Watcher) Run(ctx context.Context, lost func(clusters []string)) error {
	defer func() {
		fw.w.mu.Lock()
		if fw.w.watch == fw {
			fw.w.watch = nil
			fw.w.watchOps = nil
		}
		fw.w.mu.Unlock()
		fw.fsw.Close()
	}()
	log := fw.w.log
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-fw.wake:
			if gone := fw.apply(); len(gone) > 0 {
				log.Warn("files changed behind edsync's back; writing them again", "clusters", len(gone), "first", gone[0])
				lost(gone)
			}
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

// note records one event by the entry (see Layout) it concerns. A change
// of mode or time alone leaves the content as it was: it is not looked at.
func (fw *Watcher) note(ev fsnotify.Event, ops map[string]fsnotify.Op) {
	w := fw.w
	if ev.Name == w.dir {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			w.log.Error("the output folder itself was removed or renamed; writes fail until it is back", "dir", w.dir)
		}
		return
	}
	if ev.Op == fsnotify.Chmod {
		return
	}
	name, parent := filepath.Base(ev.Name), filepath.Dir(ev.Name)
	entry := name
	if parent != w.dir {
		// In the folders layout, the file in a cluster folder.
		if w.layout != LayoutFolders || filepath.Dir(parent) != w.dir || name != folderFile+w.format.Ext() {
			return
		}
		entry = filepath.Base(parent)
	}
	if strings.HasPrefix(entry, ".") {
		return // .tmp/ and other hidden files are never a cluster's
	}
	ops[entry] |= ev.Op
}

// check returns, sorted, the clusters among the entries named in ops whose
// file is not the one the Writer knows, and forgets what it knew of them.
// A write into one of its files is always someone else's: the Writer
// replaces files, it never writes into them.
func (w *Writer) check(ops map[string]fsnotify.Op) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for entry, op := range ops {
		cluster, ok := w.layout.Cluster(entry, w.format)
		if !ok {
			cluster, ok = w.short[entry]
		}
		if !ok {
			continue
		}
		f, known := w.files[cluster]
		if !known {
			continue // never written, or released: nothing to keep right
		}
		if op.Has(fsnotify.Write) || !w.sameFile(cluster, f.id) {
			w.forget(cluster)
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
		if !w.sameFile(cluster, f.id) {
			w.forget(cluster)
			out = append(out, cluster)
		}
	}
	slices.Sort(out)
	return out
}

// forget drops what the Writer knows of a cluster's file, lost behind its
// back: its next write is a first write (its folder made again if need
// be, and watched again); until then its folder is not watched. The
// caller holds w.mu.
func (w *Writer) forget(cluster string) {
	delete(w.files, cluster)
	if path, err := w.Path(cluster); err == nil && w.watch != nil {
		w.watch.unfollow(path)
	}
}

// checkClusters is check for the given clusters' files.
func (w *Writer) checkClusters(clusters []string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, cluster := range clusters {
		if f, ok := w.files[cluster]; ok && !w.sameFile(cluster, f.id) {
			w.forget(cluster)
			out = append(out, cluster)
		}
	}
	slices.Sort(out)
	return out
}

// sameFile reports whether the file of cluster is the regular file id,
// reached through a real folder (in the folders layout) and not a link.
func (w *Writer) sameFile(cluster string, id fileIdent) bool {
	path, err := w.Path(cluster)
	if err != nil {
		return false
	}
	if w.layout == LayoutFolders {
		if fi, err := os.Lstat(filepath.Dir(path)); err != nil || !fi.IsDir() {
			return false
		}
	}
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().IsRegular() && identOf(fi) == id
}
