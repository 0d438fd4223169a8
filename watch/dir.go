package watch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/edsync/edsync/render"
)

// DirOptions configures NewDir. Namespaces, Selector and Services filter
// as in KubeOptions, here on the client side.
type DirOptions struct {
	// Dir is the folder of manifests, or one manifest file.
	Dir        string
	Namespaces []string
	Selector   string
	Services   []render.ServiceKey
	Store      *Store
	Logger     *slog.Logger

	// Objects, if set, receives the Services (with WatchServices) and the
	// Nodes (as Nodes says) of the manifests; they are ignored otherwise.
	// Services pass the Namespaces and Services filters, not the Selector.
	Objects       *Objects
	WatchServices bool
	Nodes         NodeOptions
}

// Dir is the Source that reads EndpointSlice manifests (and Services and
// Nodes, see DirOptions.Objects) from a folder and follows its changes
// with fsnotify.
//
// It reads every regular file (symlinks followed) named *.yaml, *.yml or
// *.json at the top of the folder, skipping hidden names. On any event in
// the folder it re-scans the set of files and re-reads those whose stat
// changed or that the event names, so writes in place, creates, renames in
// and out, deletes and a ConfigMap volume's `..data` symlink swap all work
// alike. Events that are queued together make one scan; there is no timer:
// the pipeline debounces.
//
// Dir may also name one file (any name, symlinks followed), which is then
// read alone, as `kubectl apply -f FILE` does. Its parent folder is
// watched, as editors and ConfigMap volumes replace a file by a rename: an
// event naming the file re-reads it, any other event costs a stat of it
// (a ConfigMap update renames `..data`, not the file, which is a symlink
// through it), and other files are never listed or read.
//
// Each file keeps its last good slices. Objects of other kinds in a file
// are left out, each logged at Debug and counted as ReasonOtherKind. A file
// that cannot be read (see decodeManifest: all or nothing per file, other
// kinds aside) is logged at Warn, counted as ReasonInvalidManifest, and its
// last good slices stay in the Store. A file with no document at all (empty, or only comments) also
// keeps its last slices: a writer that truncates then writes shows it for
// a moment. A removed file removes its slices. A slice defined in several
// files is taken from the first file by name (logged at Warn). Services
// and Nodes follow the same rules.
type Dir struct {
	dir string // the folder watched
	// only, if set, is the one file of dir that is read.
	only     string
	what     string // "manifest folder DIR" or "manifest file FILE", for errors
	store    *Store
	filter   *filter
	objects  *Objects
	services bool
	nodes    NodeOptions
	log      *slog.Logger
	synced   chan struct{}
	started  atomic.Bool

	// onScan, if set, is called after each scan: a test hook.
	onScan func()

	// Owned by Run's goroutine.
	files  map[string]*dirFile // by base name
	owners map[string][]string // object id -> names of the files defining it, sorted
}

type dirFile struct {
	info    os.FileInfo // at the last read, symlinks followed
	sum     [sha256.Size]byte
	objects map[string]dirObject // last good, filtered, by object id
}

// dirObject is one object of a file, one of its fields set. Its id is
// "namespace/name" for a slice (the Store's id), "Service namespace/name"
// for a Service and "Node name" for a Node.
type dirObject struct {
	slice   *discoveryv1.EndpointSlice
	service *render.ServiceInfo
	node    *Node
}

const (
	serviceIDPrefix = "Service "
	nodeIDPrefix    = "Node "
)

var _ Source = (*Dir)(nil)

// NewDir checks the folder and the filters; Run reads and watches.
func NewDir(o DirOptions) (*Dir, error) {
	if o.Store == nil {
		return nil, errors.New("watch: dir source: no store")
	}
	if o.Dir == "" {
		return nil, errors.New("watch: dir source: no folder")
	}
	info, err := os.Stat(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("watch: manifest folder: %w", err)
	}
	dir, only := filepath.Clean(o.Dir), ""
	what := "manifest folder " + dir
	switch {
	case info.Mode().IsRegular():
		dir, only = filepath.Split(dir)
		dir = filepath.Clean(dir)
		what = "manifest file " + filepath.Join(dir, only)
	case !info.IsDir():
		return nil, fmt.Errorf("watch: manifest folder %s: not a folder or a regular file", o.Dir)
	}
	f, err := newFilter(o.Namespaces, o.Selector, o.Services)
	if err != nil {
		return nil, fmt.Errorf("watch: dir source: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dir{
		dir:    dir,
		only:   only,
		what:   what,
		store:  o.Store,
		filter: f,
		log:    log.With("component", "watch.dir", "dir", dir),

		objects:  o.Objects,
		services: o.Objects != nil && o.WatchServices,
		nodes:    o.Nodes,
		synced:   make(chan struct{}),
		files:    map[string]*dirFile{},
		owners:   map[string][]string{},
	}, nil
}

// Synced is closed once every file present at start has been read.
func (d *Dir) Synced() <-chan struct{} { return d.synced }

// Run reads the folder, closes Synced, then follows changes until ctx ends
// (returning nil). It returns an error if the folder cannot be watched or
// read at start, or disappears later (its slices stay in the Store).
func (d *Dir) Run(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("watch: dir source: Run called twice")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch: %s: %w", d.what, err)
	}
	defer w.Close()
	// Watch before the first scan so that no change falls in between.
	if err := w.Add(d.dir); err != nil {
		return fmt.Errorf("watch: %s: %w", d.what, err)
	}
	if err := d.scan(nil, true); err != nil {
		return fmt.Errorf("watch: %s: %w", d.what, err)
	}
	if d.only != "" {
		d.log.Info("manifests read", "file", d.only, "objects", len(d.owners))
	} else {
		d.log.Info("manifests read", "files", len(d.files), "objects", len(d.owners))
	}
	close(d.synced)

	for {
		touched := map[string]bool{}
		force := false
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			d.noteEvent(ev, touched)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			force = d.noteError(err)
		}
		// Take what else is queued: one scan for a burst.
	drain:
		for {
			select {
			case ev := <-w.Events:
				d.noteEvent(ev, touched)
			case err := <-w.Errors:
				force = d.noteError(err) || force
			default:
				break drain
			}
		}
		if err := d.scan(touched, force); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("watch: %s: the folder is gone (its slices are kept): %w", d.what, err)
			}
			d.log.Warn("cannot read manifest folder; keeping its slices", "err", err)
		}
	}
}

func (d *Dir) noteEvent(ev fsnotify.Event, touched map[string]bool) {
	d.log.Debug("folder event", "name", ev.Name, "op", ev.Op.String())
	if filepath.Dir(ev.Name) == d.dir {
		touched[filepath.Base(ev.Name)] = true
	}
}

// noteError logs a watcher error and reports whether every file must be
// re-read (events were lost).
func (d *Dir) noteError(err error) bool {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		d.log.Warn("folder events lost; re-reading every file", "err", err)
		return true
	}
	d.log.Warn("folder watch error", "err", err)
	return false
}

// scan brings the Store in line with the folder: files gone lose their
// slices, files new or changed (by stat, or named in touched, or all with
// force) are re-read.
func (d *Dir) scan(touched map[string]bool, force bool) error {
	present, err := d.list()
	if err != nil {
		return err
	}
	changed := map[string]bool{} // slice ids
	for name, f := range d.files {
		if _, ok := present[name]; !ok {
			d.log.Info("manifest file gone; removing its objects", "file", name, "objects", len(f.objects))
			d.setObjects(name, f, nil, changed)
			delete(d.files, name)
		}
	}
	var toRead []string
	for _, name := range slices.Sorted(maps.Keys(present)) {
		if f := d.files[name]; f != nil && !force && !touched[name] && sameStat(f.info, present[name]) {
			continue
		}
		toRead = append(toRead, name)
	}
	// Files are read and decoded in parallel (a folder of 100 files at
	// start), a few at a time so that only those few are held decoded,
	// then applied in name order, so the outcome is the same.
	batch := runtime.GOMAXPROCS(0)
	loaded := make([]loadedFile, batch)
	for start := 0; start < len(toRead); start += batch {
		names := toRead[start:min(start+batch, len(toRead))]
		var wg sync.WaitGroup
		for i, name := range names {
			if len(names) == 1 {
				loaded[0] = d.load(name)
				break
			}
			wg.Go(func() { loaded[i] = d.load(name) })
		}
		wg.Wait()
		for i, name := range names {
			d.apply(name, present[name], loaded[i], changed)
			loaded[i] = loadedFile{} // its objects now live in the Store only
		}
	}
	for _, id := range slices.Sorted(maps.Keys(changed)) {
		var obj dirObject
		if owners := d.owners[id]; len(owners) > 0 {
			obj = d.files[owners[0]].objects[id]
		}
		d.publish(id, obj)
	}
	if d.onScan != nil {
		d.onScan()
	}
	return nil
}

// list returns the manifest files of the folder with their stat (symlinks
// followed).
func (d *Dir) list() (map[string]os.FileInfo, error) {
	names := []string{d.only}
	if d.only == "" {
		entries, err := os.ReadDir(d.dir)
		if err != nil {
			return nil, err
		}
		names = names[:0]
		for _, e := range entries {
			if isManifestName(e.Name()) {
				names = append(names, e.Name())
			}
		}
	} else if _, err := os.Stat(d.dir); err != nil {
		return nil, err // the folder is gone, not just the file
	}
	out := map[string]os.FileInfo{}
	for _, name := range names {
		info, err := os.Stat(filepath.Join(d.dir, name))
		if err != nil {
			// A dangling symlink, or a file gone since ReadDir: the
			// next event brings it back if it returns.
			d.log.Debug("cannot stat manifest file; treating it as gone", "file", name, "err", err)
			continue
		}
		if !info.Mode().IsRegular() {
			continue
		}
		out[name] = info
	}
	return out, nil
}

func isManifestName(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// sameStat reports whether a file looks unchanged: same file (device and
// inode, so a symlink swap or a rename over it counts as a change), size
// and modification time.
func sameStat(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// loadedFile is one file read and decoded, before it is applied.
type loadedFile struct {
	readErr   error
	sum       [sha256.Size]byte
	same      bool // the bytes are those last applied
	m         manifest
	decodeErr error
}

// load reads and decodes one file. It only reads the Dir's state, so
// several files load at once (scan); the file's raw bytes are dropped here.
func (d *Dir) load(name string) loadedFile {
	data, err := os.ReadFile(filepath.Join(d.dir, name))
	if err != nil {
		return loadedFile{readErr: err}
	}
	lf := loadedFile{sum: sha256.Sum256(data)}
	if f := d.files[name]; f != nil && f.sum == lf.sum {
		lf.same = true
		return lf
	}
	lf.m, lf.decodeErr = decodeManifest(data)
	return lf
}

// apply records what a file now holds, and the ids whose definition changed.
func (d *Dir) apply(name string, info os.FileInfo, lf loadedFile, changed map[string]bool) {
	log := d.log.With("file", name)
	if err := lf.readErr; err != nil {
		if f := d.files[name]; f != nil && errors.Is(err, fs.ErrNotExist) {
			log.Info("manifest file gone; removing its objects", "objects", len(f.objects))
			d.setObjects(name, f, nil, changed)
			delete(d.files, name)
			return
		}
		log.Warn("cannot read manifest file; keeping its last good objects", "err", err)
		d.store.Skip(ReasonInvalidManifest)
		return
	}
	f := d.files[name]
	if f == nil {
		f = &dirFile{}
		d.files[name] = f
	} else if lf.same {
		f.info = info
		return
	}
	f.info, f.sum = info, lf.sum

	m, err := lf.m, lf.decodeErr
	if err != nil {
		log.Warn("invalid manifest; keeping its last good objects", "reason", err, "kept", len(f.objects))
		d.store.Skip(ReasonInvalidManifest)
		return
	}
	if len(m.warnings) > 0 {
		log.Warn("manifest has unknown or duplicate fields", "warnings", m.warnings)
	}
	for _, o := range m.skipped {
		log.Debug("manifest object of another kind skipped", "kind", o.Kind(), "name", o.Name())
		d.store.Skip(ReasonOtherKind)
	}
	if m.empty {
		if len(f.objects) > 0 {
			log.Info("manifest file is empty; keeping its last objects until it is written or removed", "kept", len(f.objects))
		}
		return
	}
	next := map[string]dirObject{}
	filtered := 0
	for _, sl := range m.slices {
		if !d.filter.match(sl) {
			filtered++
			continue
		}
		id := sl.Namespace + "/" + sl.Name
		if _, ok := render.ServiceOf(sl); !ok {
			log.Warn("EndpointSlice has no "+discoveryv1.LabelServiceName+" label; skipped", "slice", id)
		}
		next[id] = dirObject{slice: sl}
	}
	for _, s := range m.services {
		key := render.ServiceKey{Namespace: s.Namespace, Name: s.Name}
		if !d.services || !d.filter.matchService(key) {
			filtered++
			continue
		}
		next[serviceIDPrefix+key.String()] = dirObject{service: serviceInfoOf(s)}
	}
	for _, n := range m.nodes {
		if d.objects == nil || !d.nodes.wants(n.Name) {
			filtered++
			continue
		}
		node := d.nodes.nodeOf(n)
		next[nodeIDPrefix+n.Name] = dirObject{node: &node}
	}
	log.Debug("manifest read", "objects", len(next), "filtered", filtered)
	d.setObjects(name, f, next, changed)
}

// publish hands the current definition of one object (zero: none left) to
// the Store or to Objects.
func (d *Dir) publish(id string, obj dirObject) {
	if rest, ok := strings.CutPrefix(id, serviceIDPrefix); ok {
		ns, name, _ := strings.Cut(rest, "/")
		d.objects.SetService(render.ServiceKey{Namespace: ns, Name: name}, obj.service)
		return
	}
	if name, ok := strings.CutPrefix(id, nodeIDPrefix); ok {
		if obj.node == nil {
			d.objects.DeleteNode(name)
		} else {
			d.objects.SetNode(*obj.node)
		}
		return
	}
	if obj.slice == nil {
		d.store.Delete(id)
		return
	}
	d.store.Upsert(id, obj.slice)
}

// setObjects replaces a file's objects, keeps owners in step and records
// the ids touched.
func (d *Dir) setObjects(name string, f *dirFile, next map[string]dirObject, changed map[string]bool) {
	for id := range f.objects {
		changed[id] = true
		if _, ok := next[id]; !ok {
			d.owners[id] = slices.DeleteFunc(d.owners[id], func(n string) bool { return n == name })
			if len(d.owners[id]) == 0 {
				delete(d.owners, id)
			}
		}
	}
	for id := range next {
		changed[id] = true
		if _, ok := f.objects[id]; ok {
			continue
		}
		owners := d.owners[id]
		i, _ := slices.BinarySearch(owners, name)
		owners = slices.Insert(owners, i, name)
		d.owners[id] = owners
		if len(owners) > 1 {
			d.log.Warn("object defined in several files; the first by name wins", "object", id, "files", owners)
		}
	}
	f.objects = next
}
