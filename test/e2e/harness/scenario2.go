package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CreateLabeledService is CreateService with labels on the Service itself.
// The EndpointSlice controller copies a Service's labels onto its slices, so
// edsync's --selector sees them there.
func (c *Cluster) CreateLabeledService(ctx context.Context, ns, name string, labels, selector map[string]string, ports ...corev1.ServicePort) (*corev1.Service, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: ports},
	}
	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create service %s/%s: %w", ns, name, err)
	}
	return svc, nil
}

// RunEdsync runs edsync (as StartEdsync does) and waits for it to exit, at
// most timeout (then it is killed and the test fails). Read the result with
// Stdout, Stderr and ExitCode.
func (c *Cluster) RunEdsync(t testing.TB, timeout time.Duration, args ...string) *Edsync {
	t.Helper()
	e := c.StartEdsync(t, args...)
	select {
	case <-e.Exited():
	case <-time.After(timeout):
		e.Kill()
		t.Fatalf("edsync %v still running after %v; stderr:\n%s", args, timeout, e.Stderr())
	}
	return e
}

// WaitLog waits until edsync's stderr holds a line containing every one of
// parts, and returns that line. It fails the test if edsync exits first or
// after timeout. (stderr has no wake-up, so this looks every 20 ms.)
func (e *Edsync) WaitLog(t testing.TB, timeout time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for line := range strings.Lines(e.Stderr()) {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return strings.TrimRight(line, "\n")
			}
		}
		if !e.Running() {
			t.Fatalf("edsync exited (code %d) before logging a line with %q; stderr:\n%s", e.ExitCode(), parts, e.Stderr())
		}
		if time.Now().After(deadline) {
			t.Fatalf("edsync logged no line with %q within %v; stderr:\n%s", parts, timeout, e.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// HTTPAddr is the address edsync serves metrics and probes on, read from
// its log: the harness starts every edsync with --http-addr 127.0.0.1:0,
// so the kernel picks a free port and no other process can take it first.
func (e *Edsync) HTTPAddr(t testing.TB) string {
	t.Helper()
	line := e.WaitLog(t, 30*time.Second, "serving metrics and probes")
	for _, f := range strings.Fields(line) {
		if addr, ok := strings.CutPrefix(f, "addr="); ok {
			return strings.Trim(addr, `"`)
		}
	}
	t.Fatalf("no addr= in edsync's log line %q", line)
	return ""
}

// ListFiles lists the files in dir that Envoy could be pointed at, by
// their path relative to dir, sorted: the files in dir and those in its
// folders (edsync's cluster folders: "default_web_http/eds.json"), hidden
// entries (edsync's .tmp folder) aside. A folder holding nothing is listed
// as "name/", so that one left behind shows too.
func ListFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if !e.IsDir() {
			names = append(names, e.Name())
			continue
		}
		inner, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		n := len(names)
		for _, f := range inner {
			if !strings.HasPrefix(f.Name(), ".") {
				names = append(names, e.Name()+"/"+f.Name())
			}
		}
		if len(names) == n {
			names = append(names, e.Name()+"/")
		}
	}
	slices.Sort(names)
	return names
}

// FileStat is what shows whether a file was rewritten: a rename gives a new
// inode, a write a new mtime.
type FileStat struct {
	Ino   uint64
	Mtime time.Time
	Size  int64
}

func (s FileStat) String() string {
	return fmt.Sprintf("inode %d, mtime %s, %d bytes", s.Ino, s.Mtime.Format(time.RFC3339Nano), s.Size)
}

// StatFiles returns the FileStat of every file ListFiles lists.
func StatFiles(t testing.TB, dir string) map[string]FileStat {
	t.Helper()
	out := map[string]FileStat{}
	for _, name := range ListFiles(t, dir) {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			t.Fatalf("%s: no inode number on this platform", name)
		}
		out[name] = FileStat{Ino: st.Ino, Mtime: fi.ModTime(), Size: fi.Size()}
	}
	return out
}

// WaitSlices waits until the EndpointSlices of Service ns/name hold exactly
// the addresses ips (any condition), as the API server returns them. It polls
// every 50 ms: it is for ordering changes between Services, not for
// asserting on edsync.
func (c *Cluster) WaitSlices(ctx context.Context, ns, name string, timeout time.Duration, ips ...string) error {
	want := slices.Clone(ips)
	slices.Sort(want)
	deadline := time.Now().Add(timeout)
	var got []string
	for {
		list, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		if err != nil {
			return err
		}
		got = got[:0]
		for _, s := range list.Items {
			for _, ep := range s.Endpoints {
				got = append(got, ep.Addresses...)
			}
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slices of %s/%s: want addresses %v, got %v after %v", ns, name, want, got, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// CreateReadyPods creates one Pod per IP in ns on node, named prefix-1,
// prefix-2, ..., labelled labels, and makes each ready at its IP.
func (c *Cluster) CreateReadyPods(ctx context.Context, ns, node, prefix string, labels map[string]string, ips ...string) error {
	for i, ip := range ips {
		name := fmt.Sprintf("%s-%d", prefix, i+1)
		if _, err := c.CreatePod(ctx, Pod{Namespace: ns, Name: name, Labels: labels, Node: node}); err != nil {
			return err
		}
		if err := c.SetPodStatus(ctx, ns, name, ip, true); err != nil {
			return err
		}
	}
	return nil
}
