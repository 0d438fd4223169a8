package pipeline

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edsync/edsync/internal/syncbuf"
)

// A declared cluster whose Service shows up after the start without its
// port is a warning too, once while the Service's ports stay the same.
func TestDeclaredClusterOfALaterServiceWarnsOnce(t *testing.T) {
	f := newFolder(t)
	in := f.in
	f.opts.Declared = []string{"shop/web/htpp"}
	var logs syncbuf.Buffer
	f.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	tp := f.start(t)
	tp.WaitCluster(t, "shop/web/htpp")
	const warning = `level=WARN msg="declared cluster's port is not a port of its Service; publishing it empty"`
	if strings.Contains(logs.String(), warning) || !strings.Contains(logs.String(), "declared cluster has no endpoints yet") {
		t.Fatalf("before the Service: want the Info line only:\n%s", logs.String())
	}
	replaceFile(t, filepath.Join(in, "web.yaml"), topoSlice)
	tp.WaitCluster(t, "shop/web/http")
	if n := strings.Count(logs.String(), warning); n != 1 || !strings.Contains(logs.String(), `service_ports="admin, http"`) {
		t.Fatalf("%d warnings, want 1 naming the ports:\n%s", n, logs.String())
	}
	replaceFile(t, filepath.Join(in, "web.yaml"), strings.Replace(topoSlice, "10.0.2.1", "10.0.2.2", 1))
	tp.WaitCluster(t, "shop/web/http")
	if n := strings.Count(logs.String(), warning); n != 1 {
		t.Errorf("%d warnings after another change, want still 1:\n%s", n, logs.String())
	}
}
