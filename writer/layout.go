package writer

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Layout is where a cluster's file lives in the output folder.
//
// Envoy gives every file subscription an inotify instance of its own, which
// watches the file's folder and wakes on every rename into it, whichever
// file it names (docs/design.md, Envoy rule 12). With every cluster's file
// in one folder, one update wakes every EDS subscription of the Envoy and
// queues an event on each inside edsync's rename: at 10,000 clusters 13-20
// ms of Envoy's main thread and 11-14 ms of edsync's rename per update
// (docs/performance.md). A folder per cluster wakes one.
type Layout string

const (
	// LayoutFolders, the default: DIR/<FolderName(cluster)>/eds.<ext>.
	LayoutFolders Layout = "folders"
	// LayoutFlat: DIR/<FileName(cluster)>, every file in one folder, as
	// edsync wrote them before folders. Each update wakes every Envoy
	// subscription on the folder.
	LayoutFlat Layout = "flat"
)

// folderFile is the name, less the extension, of the file in a cluster's
// folder.
const folderFile = "eds"

// ParseLayout reads a layout name as given in a flag: "folders" (or empty)
// or "flat".
func ParseLayout(s string) (Layout, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "folders":
		return LayoutFolders, nil
	case "flat":
		return LayoutFlat, nil
	}
	return "", fmt.Errorf("unknown layout %q (want folders or flat)", s)
}

func (l Layout) valid() bool { return l == LayoutFolders || l == LayoutFlat }

// Path is the file of cluster in the output folder dir.
func (l Layout) Path(dir, cluster string, f Format) (string, error) {
	entry, err := l.entry(cluster, f)
	if err != nil {
		return "", err
	}
	if l == LayoutFlat {
		return filepath.Join(dir, entry), nil
	}
	return filepath.Join(dir, entry, folderFile+f.Ext()), nil
}

// Other is the other layout.
func (l Layout) Other() Layout {
	if l == LayoutFlat {
		return LayoutFolders
	}
	return LayoutFlat
}

// entry is the name of cluster's entry in the output folder: its folder,
// or in the flat layout its file.
func (l Layout) entry(cluster string, f Format) (string, error) {
	if l == LayoutFlat {
		return FileName(cluster, f)
	}
	return FolderName(cluster)
}

// ext is what ends an entry's name: the flat layout's files have the
// format's extension, the folders none.
func (l Layout) ext(f Format) string {
	if l == LayoutFlat {
		return f.Ext()
	}
	return ""
}

// Cluster is the inverse of entry: the cluster whose entry this is. ok is
// false for names entry never gives, and for shortened ones (whose cluster
// only the file's content tells).
func (l Layout) Cluster(entry string, f Format) (string, bool) {
	return unescapeName(entry, l.ext(f))
}

// shortened reports whether entry has the form of a shortened entry name.
func (l Layout) shortened(entry string, f Format) bool {
	return shortened(entry, l.ext(f))
}

// entryOf is the entry name in a path made by Path.
func (l Layout) entryOf(path string) string {
	if l == LayoutFlat {
		return filepath.Base(path)
	}
	return filepath.Base(filepath.Dir(path))
}
