package writer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// list finds the files of ours in the folder, for Known. A plain entry name
// (see Layout) tells its cluster; a shortened one is read: the cluster_name
// of the CLA inside tells whose it is, if the layout gives that cluster
// this very entry. A cluster folder a crash left without its file counts
// too (bareFolder). Entries of the other layout are counted, never taken:
// an Envoy may still read them (see warnOtherLayout).
func (w *Writer) list() error {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return err
	}
	other := 0
	for _, e := range entries {
		if c, ok := w.entryCluster(w.layout, e); ok {
			w.found[c] = true
			if w.layout.shortened(e.Name(), w.format) {
				w.short[e.Name()] = c
			}
		} else if c, ok := w.bareFolder(e); ok {
			w.found[c] = true
		} else if w.otherLayouts(e) {
			other++
		}
	}
	w.warnOtherLayout(other)
	return nil
}

// entryCluster says whose file the folder entry e holds in layout l. An
// entry of the folders layout is a real folder (not a link) holding the
// file; one of the flat layout is the file itself.
func (w *Writer) entryCluster(l Layout, e os.DirEntry) (string, bool) {
	name := e.Name()
	if strings.HasPrefix(name, ".") || e.IsDir() != (l == LayoutFolders) {
		return "", false // DirEntry.IsDir is false for a link to a folder
	}
	if c, ok := l.Cluster(name, w.format); ok {
		if l == LayoutFolders && !isRegular(w.entryFile(l, name)) {
			return "", false
		}
		return c, true
	}
	if !l.shortened(name, w.format) {
		return "", false
	}
	path := w.entryFile(l, name)
	c, err := w.readCluster(path)
	if err != nil {
		w.log.Debug("not a file of ours", "path", path, "error", err)
		return "", false
	}
	if entry, _ := l.entry(c, w.format); entry != name {
		return "", false
	}
	return c, true
}

// bareFolder says whose cluster folder the folder entry e is when it holds
// nothing: what a crash leaves between the making of a cluster's folder
// and the rename of its first file into it, or between a prune's removal
// of the emptied file and that of its folder. Such a cluster is Known and
// Owned, so that the start's sweep empties it like a stale file (and the
// prune removes it) unless it is published, in which case its file is
// written into that very folder. A shortened name tells its cluster only
// by the file inside: without one, the folder is left alone.
func (w *Writer) bareFolder(e os.DirEntry) (string, bool) {
	name := e.Name()
	if w.layout != LayoutFolders || strings.HasPrefix(name, ".") || !e.IsDir() {
		return "", false
	}
	c, ok := w.layout.Cluster(name, w.format)
	if !ok || !isBare(filepath.Join(w.dir, name)) {
		return "", false
	}
	return c, true
}

// isBare reports whether folder is a folder (not a link) holding nothing.
// (Only read: a link put in its place meanwhile is never written through,
// as every write opens the cluster's folder without following one.)
func isBare(folder string) bool {
	if fi, err := os.Lstat(folder); err != nil || !fi.IsDir() {
		return false
	}
	f, err := os.Open(folder)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && errors.Is(err, io.EOF)
}

// otherLayouts says whether the folder entry e is a file of ours in the
// other layout: named as that layout names a cluster's entry, and holding
// that cluster's CLA (a name alone proves nothing: envoy.json decodes to a
// cluster name like any other).
func (w *Writer) otherLayouts(e os.DirEntry) bool {
	l := w.layout.Other()
	c, ok := w.entryCluster(l, e)
	if !ok {
		return false
	}
	if l.shortened(e.Name(), w.format) {
		return true // entryCluster read it already
	}
	got, err := w.readCluster(w.entryFile(l, e.Name()))
	return err == nil && got == c
}

// entryFile is the cluster file of the entry name in layout l.
func (w *Writer) entryFile(l Layout, name string) string {
	if l == LayoutFolders {
		return filepath.Join(w.dir, name, folderFile+w.format.Ext())
	}
	return filepath.Join(w.dir, name)
}

// warnOtherLayout says what becomes of the files of the other layout found
// in the output folder at start: written by an edsync of another --layout
// (or one from before folders), they are left as they are, neither updated
// nor emptied nor removed, since an Envoy whose bootstrap names them may
// still read them: emptying would drop its traffic, removing would keep it
// from starting. They go stale instead, which only Envoy's configuration
// can end.
func (w *Writer) warnOtherLayout(n int) {
	if n == 0 {
		return
	}
	w.log.Error("the output folder holds files of the other layout; they are left as they are and no longer updated: "+
		"an Envoy reading them keeps the endpoints they hold. Point Envoy at the files of this layout (edsync envoy-config prints them), "+
		"or run with --layout "+string(w.layout.Other())+"; remove them once no Envoy reads them",
		"dir", w.dir, "layout", w.layout, "other_layout", w.layout.Other(), "files", n)
}

// isRegular reports whether path is a regular file, not following a link.
func isRegular(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().IsRegular()
}

// Known returns, sorted, the clusters with a file of ours: those found at New
// and those written since (in dry-run, those printed), less the released
// ones. After a change of configuration the caller empties those it no
// longer publishes.
func (w *Writer) Known() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.found)+len(w.files))
	for name := range w.found {
		out = append(out, name)
	}
	for name := range w.files {
		if !w.found[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Owns reports whether the file of cluster holds what edsync writes for it:
// a DiscoveryResponse with one ClusterLoadAssignment named cluster. A name
// alone proves nothing: the folder Envoy reads may also hold its bootstrap
// or other xDS files (envoy.json decodes to a cluster name like any other),
// and those must never be replaced. A cluster written (or, in dry-run,
// printed) by this process is ours without a look; so is, in the folders
// layout, a cluster folder holding nothing (bareFolder).
func (w *Writer) Owns(cluster string) bool {
	w.mu.Lock()
	_, ours := w.files[cluster]
	w.mu.Unlock()
	if ours {
		return true
	}
	path, err := w.Path(cluster)
	if err != nil {
		return false
	}
	data, _, err := w.readFile(path) // not through a link in the folder's place
	if errors.Is(err, fs.ErrNotExist) && w.layout == LayoutFolders {
		return isBare(filepath.Dir(path)) // a folder left without its file (bareFolder)
	}
	if err != nil {
		return false
	}
	name, err := w.parseCluster(data)
	return err == nil && name == cluster
}

// readCluster reads the file at path as edsync writes them and returns the
// cluster_name of the one ClusterLoadAssignment in it.
func (w *Writer) readCluster(path string) (string, error) {
	data, _, err := cwd.read(path) // no link, no FIFO
	if err != nil {
		return "", err
	}
	return w.parseCluster(data)
}

// parseCluster is readCluster for a file's content.
func (w *Writer) parseCluster(data []byte) (string, error) {
	var err error
	resp := newDiscoveryResponse()
	switch w.format {
	case FormatPB:
		err = proto.Unmarshal(data, resp)
	case FormatYAML:
		var js []byte
		if js, err = yaml.YAMLToJSON(data); err == nil {
			err = protojson.Unmarshal(js, resp)
		}
	default:
		err = protojson.Unmarshal(data, resp)
	}
	if err != nil {
		return "", err
	}
	res := resourcesOf(resp)
	if res.Len() != 1 {
		return "", fmt.Errorf("%d resources, not 1", res.Len())
	}
	typeURL, value := anyOf(res.Get(0).Message())
	if typeURL != claTypeURL {
		return "", fmt.Errorf("resource of type %q, not a ClusterLoadAssignment", typeURL)
	}
	var cla endpointv3.ClusterLoadAssignment
	if err := proto.Unmarshal(value, &cla); err != nil {
		return "", err
	}
	return cla.ClusterName, nil
}
