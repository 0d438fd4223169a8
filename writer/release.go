package writer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// release drops all the Writer keeps for a cluster: its last document, what
// it knows of its file. The caller holds w.mu.
func (w *Writer) release(cluster string) {
	delete(w.files, cluster)
	delete(w.found, cluster)
	w.enc.forget(cluster)
	if path, err := w.Path(cluster); err == nil {
		delete(w.short, w.layout.entryOf(path))
		if w.watch != nil {
			w.watch.unfollow(path)
		}
	}
}

// Tracked returns the number of clusters the Writer keeps something for in
// memory: files it knows and documents it keeps. Released clusters are not
// among them.
func (w *Writer) Tracked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.files)
	for name := range w.enc.clusters {
		if _, ok := w.files[name]; !ok {
			n++
		}
	}
	for name := range w.enc.small {
		if _, ok := w.files[name]; !ok {
			n++
		}
	}
	return n
}

// ErrInUse is returned by Remove for a cluster written since it was
// released, or whose write is pending: its file is live again.
var ErrInUse = errors.New("cluster written since it was released")

// Remove deletes the file of a released cluster, if it holds exactly what
// the Writer writes for that cluster with no endpoints: the file of a
// cluster emptied and released. Anything else at the path (another
// content, someone else's file) is left alone, with an error saying why.
// A file already gone is not an error. Nothing happens in dry-run. In the
// folders layout the cluster's folder goes too, if nothing else is in it.
//
// Envoy ignores a file's removal (it reloads on a rename onto the path
// only), so an Envoy that read the empty file keeps no hosts for it. In
// the folders layout its watch went with the folder (Envoy never watches
// a folder again): if the cluster comes back, that Envoy sees its file
// once it subscribes again (a restart, or the cluster added again by CDS).
func (w *Writer) Remove(cluster string) (removed bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dryRun {
		return false, nil
	}
	_, known := w.files[cluster]
	if _, pending := w.pending[cluster]; known || pending {
		return false, ErrInUse
	}
	path, err := w.Path(cluster)
	if err != nil {
		return false, err
	}
	// A throwaway encoder: the Writer's would keep a document for the
	// cluster, which is what releasing it freed.
	want, err := newEncoder(w.format).encode(&endpointv3.ClusterLoadAssignment{ClusterName: cluster}, nil)
	if err != nil {
		return false, err
	}
	// Through the cluster's folder opened without following a link: never
	// read or remove through a link put in its place.
	d, name, _, err := w.openFolderOf(path, false)
	if errors.Is(err, fs.ErrNotExist) {
		w.release(cluster)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w; left alone", path, err)
	}
	defer d.close()
	got, _, err := d.read(name)
	if errors.Is(err, fs.ErrNotExist) {
		w.release(cluster)
		w.removeFolder(path)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !bytes.Equal(got, want.data) {
		return false, fmt.Errorf("%s: not the empty file of %s; left alone", path, cluster)
	}
	if err := d.remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	w.release(cluster) // a file found at New
	w.removeFolder(path)
	w.log.Debug("removed", "cluster", cluster, "path", path)
	return true, nil
}

// removeFolder removes the folder of a removed cluster file in the folders
// layout, unless something else is in it (someone's, left alone).
func (w *Writer) removeFolder(path string) {
	if w.layout != LayoutFolders {
		return
	}
	dir := filepath.Dir(path)
	if err := removeEmptyFolder(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.log.Debug("cluster folder left: not empty", "path", dir, "error", err)
	}
}
