package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FileState is what a file in an output folder looks like at one moment:
// enough to tell whether it was touched in any way.
type FileState struct {
	Data  []byte
	Inode uint64
	MTime time.Time
}

// SnapshotDir reads every regular file in dir that Envoy could read (names
// not starting with '.'), in dir itself and in its folders (edsync's
// cluster folders), by path relative to dir: "default_web_http/eds.json",
// as DirWatcher names them.
func SnapshotDir(dir string) (map[string]FileState, error) {
	out := map[string]FileState{}
	if err := snapshotInto(out, dir, "", true); err != nil {
		return nil, err
	}
	return out, nil
}

// snapshotInto adds the files of the folder dir/rel to out; with deeper,
// those of its folders too.
func snapshotInto(out map[string]FileState, dir, rel string, deeper bool) error {
	ents, err := os.ReadDir(filepath.Join(dir, rel))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		name := filepath.Join(rel, e.Name())
		if e.IsDir() && deeper {
			if err := snapshotInto(out, dir, name, false); err != nil {
				return err
			}
			continue
		}
		if !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		out[name] = FileState{Data: data, Inode: ino, MTime: fi.ModTime()}
	}
	return nil
}

// DiffSnapshots describes how after differs from before ("" if not at all).
func DiffSnapshots(before, after map[string]FileState) string {
	var b strings.Builder
	for name, x := range before {
		y, ok := after[name]
		switch {
		case !ok:
			fmt.Fprintf(&b, "%s: gone (held:\n%s)\n", name, x.Data)
		case string(x.Data) != string(y.Data):
			fmt.Fprintf(&b, "%s: content changed\nwas:\n%s\nnow:\n%s\n", name, x.Data, y.Data)
		case x.Inode != y.Inode || !x.MTime.Equal(y.MTime):
			fmt.Fprintf(&b, "%s: same content but rewritten (inode %d -> %d, mtime %v -> %v)\n", name, x.Inode, y.Inode, x.MTime, y.MTime)
		}
	}
	for name, y := range after {
		if _, ok := before[name]; !ok {
			fmt.Fprintf(&b, "%s: new file:\n%s\n", name, y.Data)
		}
	}
	return b.String()
}

// RestartControllerManagerSameArgs stops kube-controller-manager and starts
// it again with the arguments it has, then waits until it is healthy. After
// an API server or etcd outage its informers may sit in client-go's backoff
// (up to a minute with jitter); the fault scenarios restart it when they end
// so that the scenarios after them meet a prompt EndpointSlice controller.
func (c *Cluster) RestartControllerManagerSameArgs(ctx context.Context) error {
	_ = c.ControllerManager.Stop(10 * time.Second)
	if err := c.ControllerManager.Start(); err != nil {
		return err
	}
	return c.waitControllerManager(ctx)
}

// StartEdsyncDuringFaults is StartEdsync without its end-of-test check that
// the API server refused edsync nothing: a kube-apiserver that is starting
// again answers 403 until its RBAC authorizer's caches are filled, and the
// fault scenarios have edsync retrying right then. They check refusals
// themselves, only once the file has caught up (ForbiddenLines).
func (c *Cluster) StartEdsyncDuringFaults(t testing.TB, args ...string) *Edsync {
	t.Helper()
	kubeconfig, err := c.EdsyncKubeconfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return c.startEdsync(t, "", append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

// ForbiddenLines are the lines of an edsync log that show the API server
// refusing it something.
func ForbiddenLines(log string) []string {
	var out []string
	for line := range strings.Lines(log) {
		if strings.Contains(line, "is forbidden") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}
