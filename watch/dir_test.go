package watch

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/edsync/edsync/internal/syncbuf"
	"github.com/edsync/edsync/render"
)

// dirEnv is a Dir source running on a temp folder.
type dirEnv struct {
	t     *testing.T
	dir   string
	store *Store
	n     notifications
	src   *Dir
}

// newDirEnv fills a temp folder with files (name -> content), then starts
// a Dir source on it and waits for its first sync.
func newDirEnv(t *testing.T, files map[string]string, o DirOptions) *dirEnv {
	t.Helper()
	e := &dirEnv{t: t, dir: t.TempDir(), n: newNotifications()}
	for name, data := range files {
		e.write(name, data)
	}
	e.store = NewStore(e.n.notify)
	o.Store = e.store
	// o.Dir, if set, names a file in the folder: the source reads that file alone.
	if o.Dir != "" {
		o.Dir = e.path(o.Dir)
	} else {
		o.Dir = e.dir
	}
	src, err := NewDir(o)
	if err != nil {
		t.Fatal(err)
	}
	src.onScan = func() { e.n.notify(render.ServiceKey{}) }
	e.src = src
	runSource(t, src)
	waitClosed(t, src.Synced(), "Synced")
	return e
}

func (e *dirEnv) path(name string) string { return filepath.Join(e.dir, name) }

// write writes a file in place (truncate, then write), as editors and
// shell redirections do.
func (e *dirEnv) write(name, data string) {
	e.t.Helper()
	if err := os.MkdirAll(filepath.Dir(e.path(name)), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.path(name), []byte(data), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *dirEnv) rename(from, to string) {
	e.t.Helper()
	if err := os.Rename(e.path(from), e.path(to)); err != nil {
		e.t.Fatal(err)
	}
}

// slices waits until Service ns/name has the slices named (none: gone).
func (e *dirEnv) slices(name string, want ...string) {
	e.t.Helper()
	e.n.slicesAre(e.t, e.store, svc("ns", name), want...)
}

// skipped waits until the invalid-manifest counter reaches n.
func (e *dirEnv) skipped(n uint64) {
	e.t.Helper()
	e.n.until(e.t, "invalid-manifest count", func() bool {
		return e.store.Skipped()[ReasonInvalidManifest] >= n
	})
	if got := e.store.Skipped()[ReasonInvalidManifest]; got != n {
		e.t.Errorf("invalid-manifest count = %d, want %d", got, n)
	}
}

// address returns the first address of the named slice of ns/web.
func (e *dirEnv) address(slice string) string {
	for _, sl := range e.store.Slices(svc("ns", "web")) {
		if sl.Name == slice {
			return sl.Endpoints[0].Addresses[0]
		}
	}
	return ""
}

func (e *dirEnv) addressIs(slice, want string) {
	e.t.Helper()
	e.n.until(e.t, slice+" at "+want, func() bool { return e.address(slice) == want })
}

func TestDirInitialRead(t *testing.T) {
	fixture := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	e := newDirEnv(t, map[string]string{
		"multi.yaml":        fixture("multi.yaml"),
		"list.yml":          fixture("list.yaml"),
		"db.json":           fixture("slicelist.json"),
		"web.yaml":          sliceDoc("web-1", "10.0.0.1"),
		".hidden.yaml":      sliceDoc("hidden", "10.0.0.9"),
		"notes.txt":         sliceDoc("txt", "10.0.0.9"),
		"sub/deeper.yaml":   sliceDoc("deeper", "10.0.0.9"),
		"configmap.yaml":    fixture("configmap.yaml"),
		"empty.yaml":        "",
		"no-service.yaml":   strings.Replace(sliceDoc("orphan", "10.0.0.3"), "labels: {kubernetes.io/service-name: web}", "labels: {}", 1),
		"UPPER.YAML":        sliceDoc("web-2", "10.0.0.2"),
		"..data_not_a.yaml": sliceDoc("hidden2", "10.0.0.9"),
	}, DirOptions{})
	want := map[render.ServiceKey][]string{
		svc("shop", "web"):   {"web-abc12", "web-def34"},
		svc("shop", "api"):   {"api-q8h2k"},
		svc("default", "db"): {"db-1"},
		svc("ns", "web"):     {"web-1", "web-2"},
	}
	if got, wantKeys := e.store.Services(), slices.SortedFunc(maps.Keys(want), compareKeys); !slices.Equal(got, wantKeys) {
		t.Errorf("Services() = %v, want %v", got, wantKeys)
	}
	for key, w := range want {
		if got := names(e.store.Slices(key)); !slices.Equal(got, w) {
			t.Errorf("Slices(%s) = %v, want %v", key, got, w)
		}
	}
	if got := e.store.Skipped(); got[ReasonInvalidManifest] != 0 || got[ReasonOtherKind] != 1 || got[ReasonNoServiceLabel] != 1 {
		t.Errorf("Skipped() = %v, want 1 other-kind (configmap), 1 no-service-label", got)
	}
}

// Other kinds in a manifest are left out, each with a Debug line and a
// count, and the file's slices are read: a folder of manifests often holds
// the rest of the application.
func TestDirOtherKinds(t *testing.T) {
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	deployment := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: ns}\nspec: {replicas: 2}\n---\n"
	endpoints := "---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: ns}\n"
	e := newDirEnv(t, map[string]string{
		"app.yaml": deployment + sliceDoc("web-a", "10.0.0.1") + endpoints,
		"list.yaml": "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: ns}}\n" +
			"- {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: web-b, namespace: ns, labels: {kubernetes.io/service-name: web}}, addressType: IPv4}\n",
	}, DirOptions{Logger: log})
	e.slices("web", "web-a", "web-b")
	if got := e.store.Skipped(); got[ReasonOtherKind] != 3 || got[ReasonInvalidManifest] != 0 {
		t.Errorf("Skipped() = %v, want 3 other-kind and no invalid-manifest", got)
	}
	for _, want := range []string{
		`file=app.yaml kind="apps/v1 Deployment" name=ns/web`,
		`file=app.yaml kind="v1 Endpoints" name=ns/web`,
		`file=list.yaml kind="v1 ConfigMap" name=ns/c`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log line with %s in:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "scheme") {
		t.Errorf("the log names Go internals:\n%s", logs.String())
	}

	// A malformed slice in the file still keeps its last good slices.
	e.write("app.yaml", deployment+strings.Replace(sliceDoc("web-a", "10.0.0.2"), "addressType: IPv4", "addressType: [IPv4]", 1))
	e.skipped(1)
	if got := e.address("web-a"); got != "10.0.0.1" {
		t.Errorf("web-a address = %q, want the last good 10.0.0.1", got)
	}
}

func TestDirChanges(t *testing.T) {
	e := newDirEnv(t, map[string]string{
		"a.yaml": sliceDoc("web-a", "10.0.0.1"),
	}, DirOptions{})
	e.slices("web", "web-a")

	t.Run("rewrite in place", func(t *testing.T) {
		e.write("a.yaml", sliceDoc("web-a", "10.0.0.11"))
		e.addressIs("web-a", "10.0.0.11")
	})
	t.Run("create", func(t *testing.T) {
		e.write("b.yaml", sliceDoc("web-b", "10.0.0.2"))
		e.slices("web", "web-a", "web-b")
	})
	t.Run("rename in from a hidden temp file", func(t *testing.T) {
		e.write(".c.yaml.tmp", sliceDoc("web-c", "10.0.0.3"))
		e.rename(".c.yaml.tmp", "c.yaml")
		e.slices("web", "web-a", "web-b", "web-c")
	})
	t.Run("rename over an existing file", func(t *testing.T) {
		e.write(".c.yaml.tmp", sliceDoc("web-c", "10.0.0.33"))
		e.rename(".c.yaml.tmp", "c.yaml")
		e.addressIs("web-c", "10.0.0.33")
	})
	t.Run("rename away", func(t *testing.T) {
		e.rename("b.yaml", "b.yaml.bak")
		e.slices("web", "web-a", "web-c")
	})
	t.Run("remove", func(t *testing.T) {
		if err := os.Remove(e.path("c.yaml")); err != nil {
			t.Fatal(err)
		}
		e.slices("web", "web-a")
	})
	t.Run("invalid file keeps its last good slices", func(t *testing.T) {
		e.write("a.yaml", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: [\n")
		e.skipped(1)
		if got := e.address("web-a"); got != "10.0.0.11" {
			t.Errorf("web-a address = %q, want the last good 10.0.0.11", got)
		}
		e.write("a.yaml", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-a, namespace: ns}\nendpoints: 5\n")
		e.skipped(2)
		e.write("a.yaml", sliceDoc("web-a", "10.0.0.12"))
		e.addressIs("web-a", "10.0.0.12")
	})
	t.Run("half-written file, then completed", func(t *testing.T) {
		full := sliceDoc("web-a", "10.0.0.13") + "---\n" + sliceDoc("web-d", "10.0.0.4")
		f, err := os.OpenFile(e.path("a.yaml"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		half := len(full) - 20
		if _, err := f.WriteString(full[:half]); err != nil {
			t.Fatal(err)
		}
		e.skipped(3)
		if got := names(e.store.Slices(svc("ns", "web"))); !slices.Equal(got, []string{"web-a"}) || e.address("web-a") != "10.0.0.12" {
			t.Errorf("half-written file changed the store: %v at %s", got, e.address("web-a"))
		}
		if _, err := f.WriteString(full[half:]); err != nil {
			t.Fatal(err)
		}
		e.slices("web", "web-a", "web-d")
		e.addressIs("web-a", "10.0.0.13")
	})
	t.Run("emptied file keeps its slices; removing it removes them", func(t *testing.T) {
		e.write("a.yaml", "")
		e.write("z.yaml", sliceDoc("web-z", "10.0.0.26")) // a later event to wait on
		e.slices("web", "web-a", "web-d", "web-z")
		if err := os.Remove(e.path("a.yaml")); err != nil {
			t.Fatal(err)
		}
		e.slices("web", "web-z")
	})
}

// A --from-dir naming a file reads that file alone, as kubectl -f does,
// and follows it however it is changed: in place, replaced by a rename,
// removed and created again, or swapped as a ConfigMap volume's symlink.
func TestDirSingleFile(t *testing.T) {
	e := newDirEnv(t, map[string]string{
		"web.txt":    sliceDoc("web-a", "10.0.0.1"), // named, so read whatever its extension
		"other.yaml": sliceDoc("web-o", "10.0.0.9"),
	}, DirOptions{Dir: "web.txt"})
	e.slices("web", "web-a")

	t.Run("other files are not read", func(t *testing.T) {
		e.write("more.yaml", sliceDoc("web-m", "10.0.0.8"))
		e.write("web.txt", sliceDoc("web-a", "10.0.0.2")) // events come in order: more.yaml's first
		e.addressIs("web-a", "10.0.0.2")
		if got := names(e.store.Slices(svc("ns", "web"))); !slices.Equal(got, []string{"web-a"}) {
			t.Errorf("slices = %v, want web-a alone", got)
		}
	})
	t.Run("rewrite in place", func(t *testing.T) {
		e.write("web.txt", sliceDoc("web-a", "10.0.0.3")+"---\n"+sliceDoc("web-b", "10.0.0.4"))
		e.slices("web", "web-a", "web-b")
		e.addressIs("web-a", "10.0.0.3")
	})
	t.Run("replace by rename", func(t *testing.T) {
		e.write(".web.txt.tmp", sliceDoc("web-a", "10.0.0.5"))
		e.rename(".web.txt.tmp", "web.txt")
		e.slices("web", "web-a")
		e.addressIs("web-a", "10.0.0.5")
	})
	t.Run("remove, then create again", func(t *testing.T) {
		if err := os.Remove(e.path("web.txt")); err != nil {
			t.Fatal(err)
		}
		e.slices("web")
		e.write("web.txt", sliceDoc("web-c", "10.0.0.6"))
		e.slices("web", "web-c")
	})
	t.Run("invalid keeps the last good slices", func(t *testing.T) {
		e.write("web.txt", "kind: [\n")
		e.skipped(1)
		e.slices("web", "web-c")
	})
}

// A ConfigMap volume's file is a symlink into `..data`, which an update
// swaps: the event names `..data`, not the file, and the file is still read.
func TestDirSingleFileConfigMap(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, data string) {
		must(os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		must(os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	write("..v1/web.yaml", sliceDoc("web-a", "10.0.0.1"))
	must(os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(os.Symlink("..data/web.yaml", filepath.Join(dir, "web.yaml")))

	n := newNotifications()
	store := NewStore(n.notify)
	src, err := NewDir(DirOptions{Dir: filepath.Join(dir, "web.yaml"), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	src.onScan = func() { n.notify(render.ServiceKey{}) }
	runSource(t, src)
	waitClosed(t, src.Synced(), "Synced")
	n.slicesAre(t, store, svc("ns", "web"), "web-a")

	write("..v2/web.yaml", sliceDoc("web-b", "10.0.0.2"))
	must(os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	n.slicesAre(t, store, svc("ns", "web"), "web-b")
}

// TestDirIdenticalRewrite checks that rewriting a file with the same
// content, or changing one slice of several, notifies only what changed.
func TestDirIdenticalRewrite(t *testing.T) {
	two := sliceDoc("web-a", "10.0.0.1") + "---\n" + strings.ReplaceAll(sliceDoc("api-a", "10.0.1.1"), "service-name: web", "service-name: api")
	e := newDirEnv(t, map[string]string{"a.yaml": two}, DirOptions{})
	// Drain what the first sync notified.
	for len(e.n) > 0 {
		<-e.n
	}
	e.write("a.yaml", two+"\n# a comment changes the bytes, not the slices\n")
	e.write("a.yaml", strings.Replace(two, "10.0.1.1", "10.0.1.2", 1))
	e.n.until(t, "api-a at 10.0.1.2", func() bool {
		sls := e.store.Slices(svc("ns", "api"))
		return len(sls) == 1 && sls[0].Endpoints[0].Addresses[0] == "10.0.1.2"
	})
	for len(e.n) > 0 {
		if k := <-e.n; k == svc("ns", "web") {
			t.Error("ns/web notified though its slice did not change")
		}
	}
}

// TestDirConfigMapSwap follows the kubelet's atomic writer for ConfigMap
// volumes: files are symlinks `x.yaml -> ..data/x.yaml`, `..data` links to a
// timestamped folder, and an update renames a new `..data_tmp` link over
// `..data`.
func TestDirConfigMapSwap(t *testing.T) {
	e := newDirEnv(t, nil, DirOptions{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	e.write("..2026_01_01_00_00_00.000000001/web.yaml", sliceDoc("web-a", "10.0.0.1"))
	e.write("..2026_01_01_00_00_00.000000001/api.yaml", strings.Replace(sliceDoc("api-a", "10.0.1.1"), "service-name: web", "service-name: api", 1))
	must(os.Symlink("..2026_01_01_00_00_00.000000001", e.path("..data_tmp")))
	e.rename("..data_tmp", "..data")
	must(os.Symlink("..data/web.yaml", e.path("web.yaml")))
	must(os.Symlink("..data/api.yaml", e.path("api.yaml")))
	e.slices("web", "web-a")
	e.n.slicesAre(t, e.store, svc("ns", "api"), "api-a")

	// The update: web changes, api goes away from the ConfigMap.
	e.write("..2026_01_01_00_01_00.000000002/web.yaml", sliceDoc("web-a", "10.0.0.2"))
	must(os.Symlink("..2026_01_01_00_01_00.000000002", e.path("..data_tmp")))
	e.rename("..data_tmp", "..data")
	e.addressIs("web-a", "10.0.0.2")
	must(os.RemoveAll(e.path("..2026_01_01_00_00_00.000000001")))
	must(os.Remove(e.path("api.yaml")))
	e.n.slicesAre(t, e.store, svc("ns", "api"))
	if got := e.store.Skipped()[ReasonInvalidManifest]; got != 0 {
		t.Errorf("invalid-manifest count = %d during a swap", got)
	}
}

func TestDirFilters(t *testing.T) {
	files := map[string]string{
		"a.yaml": sliceDoc("web-a", "10.0.0.1"),
		"b.yaml": strings.Replace(sliceDoc("api-a", "10.0.1.1"), "service-name: web", "service-name: api, team: x", 1),
		"c.yaml": strings.Replace(sliceDoc("web-o", "10.0.2.1"), "namespace: ns", "namespace: other", 1),
	}
	tests := []struct {
		name string
		opts DirOptions
		want []render.ServiceKey
	}{
		{name: "none", want: []render.ServiceKey{svc("ns", "api"), svc("ns", "web"), svc("other", "web")}},
		{name: "namespaces", opts: DirOptions{Namespaces: []string{"other"}}, want: []render.ServiceKey{svc("other", "web")}},
		{name: "selector", opts: DirOptions{Selector: "team=x"}, want: []render.ServiceKey{svc("ns", "api")}},
		{name: "services", opts: DirOptions{Services: []render.ServiceKey{svc("ns", "web"), svc("ns", "nope")}}, want: []render.ServiceKey{svc("ns", "web")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newDirEnv(t, files, tt.opts)
			if got := e.store.Services(); !slices.Equal(got, tt.want) {
				t.Errorf("Services() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewDirErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		opts    DirOptions
		wantErr string
	}{
		{name: "missing folder", opts: DirOptions{Dir: filepath.Join(dir, "nope")}, wantErr: "no such file or directory"},
		{name: "a device", opts: DirOptions{Dir: os.DevNull}, wantErr: "not a folder or a regular file"},
		{name: "no folder", opts: DirOptions{}, wantErr: "no folder"},
		{name: "bad selector", opts: DirOptions{Dir: dir, Selector: "a in (b"}, wantErr: "label selector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Store = NewStore(nil)
			_, err := NewDir(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewDir error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestDirFolderRemoved checks that Run returns an error, keeping the
// slices, when the folder itself goes away, also the folder of a single
// file (unlike the file alone, whose removal removes its slices).
func TestDirFolderRemoved(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprintf("single file %v", single), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "manifests")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(sliceDoc("web-a", "10.0.0.1")), 0o644); err != nil {
				t.Fatal(err)
			}
			store := NewStore(nil)
			o := DirOptions{Dir: dir, Store: store}
			if single {
				o.Dir = filepath.Join(dir, "a.yaml")
			}
			d, err := NewDir(o)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- d.Run(t.Context()) }()
			waitClosed(t, d.Synced(), "Synced")
			// Moved away, not removed: removing would delete a.yaml first, and
			// a removed file rightly removes its slices.
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "is gone") {
					t.Errorf("Run = %v, want an error saying the folder is gone", err)
				}
			case <-time.After(guard):
				t.Fatal("Run did not return")
			}
			if got := names(store.Slices(svc("ns", "web"))); !slices.Equal(got, []string{"web-a"}) {
				t.Errorf("slices lost: %v", got)
			}
			if err := d.Run(context.Background()); err == nil {
				t.Error("second Run: no error")
			}
		})
	}
}

const servicesAndNodes = `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: ns
  annotations: {edsync.io/topology: zone, team: x}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: other}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: n1, labels: {topology.kubernetes.io/zone: z1, topology.kubernetes.io/region: r1}}}
- {apiVersion: v1, kind: Node, metadata: {name: n2, labels: {topology.kubernetes.io/zone: z2}}}
`

// Services and Nodes in the folder reach Objects as the flags ask, pass
// the namespace filter, and go when their file goes; without the flags
// they are ignored, not invalid.
func TestDirServicesAndNodes(t *testing.T) {
	files := map[string]string{"objects.yaml": servicesAndNodes, "web.yaml": sliceDoc("web-a", "10.0.0.1")}
	t.Run("ignored without the flags", func(t *testing.T) {
		objects := NewObjects(nil)
		e := newDirEnv(t, files, DirOptions{Objects: objects})
		e.slices("web", "web-a")
		if s, n := objects.Len(); s != 0 || n != 0 {
			t.Errorf("Objects holds %d Services and %d Nodes, want none", s, n)
		}
		if got := e.store.Skipped()[ReasonInvalidManifest]; got != 0 {
			t.Errorf("invalid-manifest count %d, want 0", got)
		}
	})
	t.Run("read with the flags", func(t *testing.T) {
		objects := NewObjects(nil)
		e := newDirEnv(t, files, DirOptions{Objects: objects, WatchServices: true, Namespaces: []string{"ns"}, Nodes: NodeOptions{Name: "n1"}})
		// Synced means they are in Objects.
		ch := objects.Take()
		want := &render.ServiceInfo{
			Annotations: map[string]string{"edsync.io/topology": "zone"},
			Ports:       []render.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		}
		if len(ch.Services) != 1 || !sameServiceInfo(ch.Services[svc("ns", "web")], want) {
			t.Errorf("Services = %v, want only ns/web as %+v", ch.Services, want)
		}
		if len(ch.Nodes) != 1 || ch.Nodes["n1"] == nil || *ch.Nodes["n1"] != (Node{Name: "n1", Zone: "z1", Region: "r1"}) {
			t.Errorf("Nodes = %v, want only n1", ch.Nodes)
		}
		if err := os.Remove(e.path("objects.yaml")); err != nil {
			t.Fatal(err)
		}
		e.n.until(t, "objects gone", func() bool { s, n := objects.Len(); return s == 0 && n == 0 })
		ch = objects.Take()
		if info, ok := ch.Services[svc("ns", "web")]; !ok || info != nil {
			t.Errorf("after removal: Services = %v, want ns/web nil", ch.Services)
		}
		if n, ok := ch.Nodes["n1"]; !ok || n != nil {
			t.Errorf("after removal: Nodes = %v, want n1 nil", ch.Nodes)
		}
	})
	t.Run("every Node", func(t *testing.T) {
		objects := NewObjects(nil)
		newDirEnv(t, files, DirOptions{Objects: objects, Nodes: NodeOptions{All: true}})
		if s, n := objects.Len(); s != 0 || n != 2 {
			t.Errorf("Objects holds %d Services and %d Nodes, want 0 and 2", s, n)
		}
	})
}
