package pipeline

import (
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/edsync/edsync/internal/syncbuf"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
)

// A Service's internalTrafficPolicy: Local, from the folder's Service, keeps
// the file to the local Node's endpoint; when the Node has none the file has
// none, logged once however many flushes keep it so, and the status says
// how the policy applies; Cluster again brings every endpoint back.
func TestInternalTrafficPolicyLocalFromTheFolder(t *testing.T) {
	f := newFolder(t)
	in, out := f.in, f.out
	local := strings.Replace(topoService(""), "spec:\n", "spec:\n  internalTrafficPolicy: Local\n", 1)
	replaceFile(t, filepath.Join(in, "web.yaml"), topoSlice)
	replaceFile(t, filepath.Join(in, "svc.yaml"), local)
	replaceFile(t, filepath.Join(in, "nodes.yaml"), topoNodes("z1"))
	var logs syncbuf.Buffer
	f.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	f.watchServices = true
	f.render = render.Options{LocalNode: "n1"}
	f.nodes = watch.NodeOptions{Name: "n1"}
	var board recordingStatus
	f.opts.Status = &board
	tp := f.start(t)
	file := filepath.Join(out, "shop_web_http", "eds.json")
	tp.WaitCluster(t, "shop/web/http")
	if got, want := placement(readAsEnvoy(t, file)), []string{"10.0.1.1 p0 /z1/ w1"}; !slices.Equal(got, want) {
		t.Errorf("Local on n1: %q, want %q", got, want)
	}
	if got := board.nodeLocal("shop/web/http"); got != render.NodeLocalOn {
		t.Errorf("status says %v, want %v", got, render.NodeLocalOn)
	}

	// n1's Pod gone: no endpoint, logged once over two flushes.
	noneOnN1 := strings.Replace(topoSlice, "- {addresses: [10.0.1.1], conditions: {ready: true}, zone: z1, nodeName: n1, targetRef: {kind: Pod, namespace: shop, name: web-a}}\n", "", 1)
	replaceFile(t, filepath.Join(in, "web.yaml"), noneOnN1)
	tp.WaitCluster(t, "shop/web/http")
	if got := placement(readAsEnvoy(t, file)); len(got) != 0 {
		t.Errorf("no endpoint on n1: %q, want none", got)
	}
	replaceFile(t, filepath.Join(in, "web.yaml"), strings.Replace(noneOnN1, "10.0.2.1", "10.0.2.2", 1))
	tp.WaitCluster(t, "shop/web/http")
	if n := strings.Count(logs.String(), "no endpoint of the Service on this Node"); n != 2 { // http and admin
		t.Errorf("logged %d times, want once per cluster (2):\n%s", n, logs.String())
	}

	// The policy changed on the live Service: every endpoint, at once.
	replaceFile(t, filepath.Join(in, "svc.yaml"), topoService(""))
	tp.WaitCluster(t, "shop/web/http")
	if got, want := placement(readAsEnvoy(t, file)), []string{"10.0.2.2 p0 /z2/ w1"}; !slices.Equal(got, want) {
		t.Errorf("Cluster: %q, want %q", got, want)
	}
	if got := board.nodeLocal("shop/web/http"); got != render.NodeLocalOff {
		t.Errorf("status says %v, want %v", got, render.NodeLocalOff)
	}
}

// recordingStatus records how each cluster's internalTrafficPolicy applies,
// as the status view is told.
type recordingStatus struct {
	noStatus
	mu    sync.Mutex
	local map[string]render.NodeLocal
}

func (s *recordingStatus) Published(cluster string, _ render.ServiceKey, _ render.HealthCounts, n render.NodeLocal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local == nil {
		s.local = map[string]render.NodeLocal{}
	}
	s.local[cluster] = n
}

func (s *recordingStatus) nodeLocal(cluster string) render.NodeLocal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local[cluster]
}

// With no local Node known, the policy cannot apply: every endpoint is
// published, and a warning says so once per cluster, not at every change.
func TestInternalTrafficPolicyLocalWithoutANode(t *testing.T) {
	f := newFolder(t)
	in, out := f.in, f.out
	replaceFile(t, filepath.Join(in, "web.yaml"), topoSlice)
	replaceFile(t, filepath.Join(in, "svc.yaml"), strings.Replace(topoService(""), "spec:\n", "spec:\n  internalTrafficPolicy: Local\n", 1))
	var logs syncbuf.Buffer
	f.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	f.watchServices = true
	tp := f.start(t)
	file := filepath.Join(out, "shop_web_http", "eds.json")
	tp.WaitCluster(t, "shop/web/http")
	if got, want := placement(readAsEnvoy(t, file)), []string{"10.0.1.1 p0 /z1/ w1", "10.0.2.1 p0 /z2/ w1"}; !slices.Equal(got, want) {
		t.Errorf("no local Node: %q, want %q", got, want)
	}
	// One endpoint fewer: the counts change, the warning is not repeated.
	replaceFile(t, filepath.Join(in, "web.yaml"), strings.Replace(topoSlice,
		"- {addresses: [10.0.1.1], conditions: {ready: true}, zone: z1, nodeName: n1, targetRef: {kind: Pod, namespace: shop, name: web-a}}\n", "", 1))
	tp.WaitCluster(t, "shop/web/http")
	if got, want := placement(readAsEnvoy(t, file)), []string{"10.0.2.1 p0 /z2/ w1"}; !slices.Equal(got, want) {
		t.Errorf("no local Node: %q, want %q", got, want)
	}
	if n := strings.Count(logs.String(), "internalTrafficPolicy Local cannot apply"); n != 2 { // http and admin
		t.Errorf("warned %d times, want once per cluster (2):\n%s", n, logs.String())
	}
}
