package readback

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/edsync/edsync/internal/envoyadmin"
	"github.com/edsync/edsync/internal/syncbuf"
	"github.com/edsync/edsync/status"
	"github.com/edsync/edsync/writer"
)

// recorder is a Metrics that keeps what it was told.
type recorder struct {
	mu       sync.Mutex
	states   map[status.State]int
	applied  []time.Duration
	rejected int
	up       bool
}

func (r *recorder) States(c map[status.State]int) { r.mu.Lock(); r.states = c; r.mu.Unlock() }
func (r *recorder) Applied(d time.Duration) {
	r.mu.Lock()
	r.applied = append(r.applied, d)
	r.mu.Unlock()
}
func (r *recorder) Rejected()       { r.mu.Lock(); r.rejected++; r.mu.Unlock() }
func (r *recorder) AdminUp(up bool) { r.mu.Lock(); r.up = up; r.mu.Unlock() }

// fixture is a writer over a folder, the status Board it reports to, an
// Envoy stand-in reading the folder and a Poller reading it back, on a
// clock that moves a second each time it is read.
type fixture struct {
	t     *testing.T
	dir   string
	w     *writer.Writer
	board *status.Board
	envoy *envoyadmin.Envoy
	p     *Poller
	m     *recorder
	logs  *syncbuf.Buffer
	now   time.Time
	mu    sync.Mutex
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), envoy: envoyadmin.New(), m: &recorder{}, logs: &syncbuf.Buffer{}, now: time.Unix(1_700_000_000, 0)}
	var err error
	if f.w, err = writer.New(writer.Options{Dir: f.dir}); err != nil {
		t.Fatal(err)
	}
	f.board = status.NewBoard(f.path, "", f.clock)
	srv := httptest.NewServer(f.envoy)
	t.Cleanup(srv.Close)
	admin, _ := url.Parse(srv.URL)
	f.p, err = New(Options{Admin: admin, Board: f.board, Clock: f.clock, Metrics: f.m,
		Logger: slog.New(slog.NewTextHandler(f.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(time.Second)
	return f.now
}

func (f *fixture) path(cluster string) string {
	p, err := f.w.Path(cluster)
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

func cla(name string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}}}}},
	}}}
}

// write writes the clusters' files as the pipeline does, and tells the
// Board.
func (f *fixture) write(ports map[string]uint32) {
	f.t.Helper()
	var cs []writer.Cluster
	for name, port := range ports {
		cs = append(cs, writer.Cluster{Name: name, CLA: cla(name, port)})
	}
	res := f.w.Write(f.t.Context(), cs)
	if res.Err != nil {
		f.t.Fatal(res.Err)
	}
	f.board.Kept(res.Kept, f.clock())
}

// writeBad puts a file Envoy refuses (another cluster's name inside) at
// the cluster's path by rename, with version v, and tells the Board.
func (f *fixture) writeBad(cluster, v string) {
	f.t.Helper()
	body := fmt.Sprintf(`{"version_info":%q,"resources":[{"@type":"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment","cluster_name":"someone-else"}]}`, v)
	tmp := filepath.Join(f.dir, ".tmp", "bad")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, f.path(cluster)); err != nil {
		f.t.Fatal(err)
	}
	f.board.Kept([]writer.Kept{{Cluster: cluster, Version: v, Renamed: true}}, f.clock())
}

func (f *fixture) poll() error { return f.p.Poll(f.t.Context()) }

// state returns the Board's state of cluster and what Envoy runs.
func (f *fixture) state(cluster string) (status.State, string) {
	for _, c := range f.board.Snapshot().Clusters {
		if c.Name == cluster {
			return c.Envoy.State, c.Envoy.Version
		}
	}
	f.t.Fatalf("no %s on the board", cluster)
	return "", ""
}

func (f *fixture) wantState(step, cluster string, want status.State) {
	f.t.Helper()
	if got, v := f.state(cluster); got != want {
		f.t.Errorf("%s: %s is %s (Envoy runs %q), want %s", step, cluster, got, v, want)
	}
}

// fileVersion is the version_info in the cluster's file.
func (f *fixture) fileVersion(cluster string) string {
	data, err := os.ReadFile(f.path(cluster))
	if err != nil {
		f.t.Fatal(err)
	}
	var v struct {
		Version string `json:"version_info"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		f.t.Fatal(err)
	}
	return v.Version
}

func (f *fixture) version(cluster string) string {
	for _, c := range f.board.Snapshot().Clusters {
		if c.Name == cluster {
			return c.Version
		}
	}
	return ""
}

// The life of a file as the read-back sees it: applied once Envoy loads
// it, pending while it has not, rejected when Envoy refuses it (one Error
// line naming the cluster, the file and the version, counted once), fixed
// by a later good version, through a restart of Envoy and an admin that
// stops answering for a while; and unknown for a cluster Envoy does not
// have.
func TestReadBack(t *testing.T) {
	f := newFixture(t)
	const web, api, other = "shop/web/http", "shop/api/grpc", "shop/other/http"
	f.write(map[string]uint32{web: 80, api: 90, other: 70})
	f.envoy.AddCluster(web, f.path(web))
	f.envoy.AddCluster(api, f.path(api))
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.wantState("first poll", web, status.StateApplied)
	f.wantState("first poll", api, status.StateApplied)
	f.wantState("first poll", other, status.StateUnknown) // not Envoy's
	if len(f.m.applied) != 2 || !f.m.up || f.m.states[status.StateApplied] != 2 || f.m.states[status.StateUnknown] != 1 {
		t.Errorf("metrics %+v", f.m)
	}

	// Pending until Envoy loads it.
	f.write(map[string]uint32{web: 81})
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.wantState("written, not loaded", web, status.StatePending)
	f.envoy.Load(web)
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.wantState("loaded", web, status.StateApplied)
	if _, v := f.state(web); v != f.version(web) {
		t.Errorf("Envoy runs %q, the file holds %q", v, f.version(web))
	}

	// Refused: Envoy keeps the previous version.
	f.writeBad(api, "0badbadbadbadbad")
	f.envoy.Load(api)
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.wantState("refused", api, status.StateRejected)
	if f.m.rejected != 1 {
		t.Errorf("rejections counted: %d, want 1", f.m.rejected)
	}
	logs := f.logs.String()
	if strings.Count(logs, "level=ERROR") != 1 || !strings.Contains(logs, "cluster=shop/api/grpc") ||
		!strings.Contains(logs, "version=0badbadbadbadbad") || !strings.Contains(logs, "path="+f.path(api)) {
		t.Errorf("want one Error line naming the cluster, the file and the version:\n%s", logs)
	}
	// Still refused at the next poll: no second line, no second count.
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.wantState("still refused", api, status.StateRejected)
	if f.m.rejected != 1 || strings.Count(f.logs.String(), "level=ERROR") != 1 {
		t.Errorf("a rejection reported twice: %d", f.m.rejected)
	}

	// Envoy restarts: counters from zero, every file read again. The bad
	// file is refused again, the good ones applied.
	f.envoy.Restart()
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.wantState("after a restart", web, status.StateApplied)
	f.wantState("after a restart", api, status.StateRejected)

	// A later good version fixes it.
	f.write(map[string]uint32{api: 91})
	f.envoy.Load(api)
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.wantState("fixed", api, status.StateApplied)

	// The admin stops answering: every state unknown, logged once; back:
	// states come back.
	f.envoy.SetDown(true)
	for range 3 {
		if err := f.poll(); err == nil {
			t.Fatal("no error from an admin that does not answer")
		}
	}
	f.wantState("admin down", web, status.StateUnknown)
	if f.m.up || f.m.states[status.StateUnknown] != 3 {
		t.Errorf("admin down: metrics %+v", f.m)
	}
	if n := strings.Count(f.logs.String(), "does not answer"); n != 1 {
		t.Errorf("the admin's absence logged %d times, want once", n)
	}
	f.envoy.SetDown(false)
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.wantState("admin back", web, status.StateApplied)
	f.wantState("admin back", api, status.StateApplied)
	if !strings.Contains(f.logs.String(), "Envoy's admin answers") {
		t.Errorf("the admin's return not logged:\n%s", f.logs)
	}
	if strings.Count(f.logs.String(), "level=ERROR") != 1 {
		t.Errorf("errors logged beyond the one rejection:\n%s", f.logs)
	}
}

// A file renamed while Envoy was already refusing older ones is judged by
// the refusals after its rename only: an old refusal does not make a new
// version rejected.
func TestOldRefusalsDoNotCount(t *testing.T) {
	f := newFixture(t)
	const web = "shop/web/http"
	f.write(map[string]uint32{web: 80})
	f.envoy.AddCluster(web, f.path(web))
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.writeBad(web, "0badbadbadbadbad")
	f.envoy.Load(web)
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.wantState("refused", web, status.StateRejected)
	f.write(map[string]uint32{web: 82}) // not loaded yet
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.wantState("a good file not loaded yet", web, status.StatePending)
}

// Nothing is kept for a cluster no longer published, once Envoy no longer
// has it either.
func TestForgottenClustersLeaveNothing(t *testing.T) {
	f := newFixture(t)
	for i := range 50 {
		name := fmt.Sprintf("ns/svc-%d/http", i)
		f.write(map[string]uint32{name: 80})
		f.envoy.AddCluster(name, f.path(name))
	}
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		f.board.Forget(fmt.Sprintf("ns/svc-%d/http", i))
		f.envoy.RemoveCluster(fmt.Sprintf("ns/svc-%d/http", i))
	}
	// Their counts go at the next read of the counters that lacks them.
	for range refreshEvery {
		if err := f.poll(); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.p.track) != 0 || len(f.p.counts) != 0 {
		t.Errorf("kept after the clusters went: %d tracked, %d counts", len(f.p.track), len(f.p.counts))
	}
}

func TestStatName(t *testing.T) {
	for in, want := range map[string]string{
		"shop/web/http": "shop/web/http", "a.b": "a.b", ".a.": "a", "ns/foo:8080": "ns/foo_8080",
		"http://x": "http_x", "a:/b": "a_b",
	} {
		if got := statName(in); got != want {
			t.Errorf("statName(%q) = %q, want %q", in, got, want)
		}
	}
}

// The CDS file is read back as the clusters' files are: applied, then a
// version Envoy refuses (a cluster whose EDS file does not exist) is
// rejected, logged once; Envoy keeps its clusters.
func TestReadBackCDS(t *testing.T) {
	f := newFixture(t)
	const web = "shop/web/http"
	f.write(map[string]uint32{web: 80})
	cds := filepath.Join(f.dir, "cds+clusters.json")
	writeCDS := func(paths map[string]string) {
		t.Helper()
		var clusters []*clusterv3.Cluster
		for name, path := range paths {
			clusters = append(clusters, &clusterv3.Cluster{Name: name,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
					ResourceApiVersion:    corev3.ApiVersion_V3,
					ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{Path: path}}}}})
		}
		w, err := writer.NewCDS(writer.CDSOptions{Path: cds})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(clusters); err != nil {
			t.Fatal(err)
		}
		f.board.CDSKept(w.Version(), f.clock())
	}
	f.board = status.NewBoard(f.path, cds, f.clock)
	f.p.opts.Board = f.board
	f.board.Kept([]writer.Kept{{Cluster: web, Version: f.fileVersion(web), Renamed: true}}, f.clock())
	writeCDS(map[string]string{web: f.path(web)})
	f.envoy.SetCDS(cds)
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	snap := f.board.Snapshot()
	if snap.CDS == nil || snap.CDS.Envoy.State != status.StateApplied || snap.CDS.File != cds {
		t.Fatalf("CDS file: %+v", snap.CDS)
	}
	f.wantState("through CDS", web, status.StateApplied)

	writeCDS(map[string]string{web: f.path(web), "shop/gone/http": filepath.Join(f.dir, "missing", "eds.json")})
	f.envoy.LoadAll()
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	if snap := f.board.Snapshot(); snap.CDS.Envoy.State != status.StateRejected {
		t.Fatalf("CDS file naming a missing EDS file: %+v", snap.CDS)
	}
	if !strings.Contains(f.logs.String(), "cluster=(cds)") || f.m.rejected != 1 {
		t.Errorf("the CDS file's rejection: %d counted\n%s", f.m.rejected, f.logs)
	}
}

// At start the counters are read before edsync's first write: the count
// of a subscription Envoy has (its file missing: a failure) is kept until
// the file is written and refused, and the refusal is told apart from it.
func TestCountsReadBeforeTheFirstWrite(t *testing.T) {
	f := newFixture(t)
	const web = "shop/web/http"
	if err := os.MkdirAll(filepath.Dir(f.path(web)), 0o755); err != nil {
		t.Fatal(err)
	}
	f.envoy.AddCluster(web, f.path(web)) // no file yet: a failure
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
	f.writeBad(web, "0badbadbadbadbad")
	f.envoy.Load(web)
	for range 3 {
		if err := f.poll(); err != nil {
			t.Fatal(err)
		}
	}
	f.wantState("refused, with a failure before", web, status.StateRejected)
}
