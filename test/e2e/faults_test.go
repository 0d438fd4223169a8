package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// The outage the issue asks for. It is the scenario, not a wait.
const outageLength = 10 * time.Second

// After a restart client-go's reflectors (edsync's and
// kube-controller-manager's) retry with a backoff that doubles up to 30 s,
// with up to as much again of jitter, so a change may take a minute to
// arrive.
const recoverTimeout = 90 * time.Second

// faultService creates a Service name in default with a port "http"
// 80 -> 8080 and n ready Pods at 10.<octet>.0.1..n on their own Node. It
// returns the cluster name, its file name, the Pods' labels and Node, and the
// endpoints the file should hold.
func faultService(t *testing.T, name string, octet, n int) (clusterName, file string, labels map[string]string, node string, want []string) {
	t.Helper()
	ctx := t.Context()
	c := cluster
	node = "node-" + name
	if err := c.CreateNode(ctx, node, "zone-a"); err != nil {
		t.Fatal(err)
	}
	labels = map[string]string{"app": name}
	if _, err := c.CreateService(ctx, "default", name, labels, harness.TCPPort("http", 80, intstr.FromInt32(8080))); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		want = append(want, addPod(t, name, labels, node, octet, i))
	}
	clusterName = "default/" + name + "/http"
	file = edsFile(t, clusterName, writer.FormatJSON)
	return clusterName, file, labels, node, want
}

// addPod creates Pod <svc>-<i> at 10.<octet>.0.<i>, ready, and returns its
// endpoint as harness.Endpoints lists it.
func addPod(t *testing.T, svc string, labels map[string]string, node string, octet, i int) string {
	t.Helper()
	ctx := t.Context()
	name, ip := fmt.Sprintf("%s-%d", svc, i), fmt.Sprintf("10.%d.0.%d", octet, i)
	if _, err := cluster.CreatePod(ctx, harness.Pod{Namespace: "default", Name: name, Labels: labels, Node: node}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.SetPodStatus(ctx, "default", name, ip, true); err != nil {
		t.Fatal(err)
	}
	return ip + ":8080 HEALTHY"
}

// restartOnExit makes sure a control-plane process stopped by a scenario
// runs again when the scenario ends, also when it failed half-way, and
// restarts kube-controller-manager (same arguments) so that its informers are
// not left in a long backoff: the other scenarios share the control plane.
func restartOnExit(t *testing.T, p *harness.Proc) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if !p.Running() {
			if err := p.Start(); err != nil {
				t.Errorf("starting %s again: %v", p.Name, err)
				return
			}
		}
		if err := cluster.WaitAPIServer(ctx); err != nil {
			t.Errorf("API server not ready after starting %s again: %v", p.Name, err)
			return
		}
		if err := cluster.RestartControllerManagerSameArgs(ctx); err != nil {
			t.Errorf("restarting kube-controller-manager after the %s outage: %v", p.Name, err)
		}
	})
}

// neverBlank fails the test if any rename of file brought a file Envoy would
// refuse or one without endpoints: the Service always had ready Pods.
func neverBlank(t *testing.T, files *harness.DirWatcher, file, clusterName string) {
	t.Helper()
	for i, a := range files.Arrivals() {
		if a.Name != file {
			continue
		}
		if a.Err != nil {
			t.Errorf("rename %d of %s: reading it right after the rename: %v", i, file, a.Err)
			continue
		}
		cla, err := harness.ParseEDS(a.Data, clusterName)
		if err != nil {
			t.Errorf("rename %d of %s: not a file Envoy would accept: %v\ncontent:\n%s", i, file, err, a.Data)
			continue
		}
		if len(harness.Endpoints(cla)) == 0 {
			t.Errorf("rename %d of %s at %v: a blanked file (no endpoints) while the Service had ready Pods:\n%s",
				i, file, a.At.Format(time.RFC3339Nano), a.Data)
		}
	}
}

// waitLog waits until edsync's stderr contains substr. It polls the captured
// output (there is no event for a log line); the poll interval is not a
// sleep the scenario depends on.
func waitLog(t *testing.T, e *harness.Edsync, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(e.Stderr(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("edsync's stderr does not mention %q after %v; it held:\n%s", substr, timeout, e.Stderr())
		}
		select {
		case <-tick.C:
		case <-e.Exited():
			if !strings.Contains(e.Stderr(), substr) {
				t.Fatalf("edsync exited (code %d) without logging %q; stderr:\n%s", e.ExitCode(), substr, e.Stderr())
			}
		}
	}
}

// outageScenario runs edsync against a Service, stops p (the API server or
// etcd) for outageLength, checks that nothing in the output folder moved and
// edsync kept running, starts p again and checks that a change made then
// reaches the file.
func outageScenario(t *testing.T, p *harness.Proc, svc string, octet int) {
	ctx := t.Context()
	c := cluster
	clusterName, file, labels, node, want := faultService(t, svc, octet, 2)

	out := t.TempDir()
	files := harness.WatchDir(t, out) // fails the test on any write in place or removal
	// Only this scenario's Service: the other scenarios' Services are not
	// its business.
	e := c.StartEdsyncDuringFaults(t, "--output-dir", out, "--debounce", "50ms", "--service", "default/"+svc)
	files.WaitEndpoints(t, file, clusterName, settle, want...)
	if err := files.WaitCaughtUp(settle); err != nil {
		t.Fatal(err)
	}

	before, err := harness.SnapshotDir(out)
	if err != nil {
		t.Fatal(err)
	}
	renamesBefore := files.Len()

	restartOnExit(t, p)
	stoppedAt := time.Now()
	_ = p.Stop(10 * time.Second) // etcd's exit status on SIGTERM is "signal: terminated"
	outage := time.NewTimer(outageLength)
	select {
	case <-outage.C:
	case <-e.Exited():
		t.Fatalf("edsync exited (code %d) %v into the %s outage; stderr:\n%s",
			e.ExitCode(), time.Since(stoppedAt).Round(time.Millisecond), p.Name, e.Stderr())
	}

	// Still inside the outage: nothing may have moved.
	during, err := harness.SnapshotDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if d := harness.DiffSnapshots(before, during); d != "" {
		t.Errorf("the output folder changed while %s was down (want every file as it was):\n%s", p.Name, d)
	}
	if n := files.Len() - renamesBefore; n != 0 {
		t.Errorf("%d rename(s) into the output folder while %s was down, want none:\n%s", n, p.Name, describe(files.Arrivals()[renamesBefore:]))
	}

	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	if err := c.WaitAPIServer(ctx); err != nil {
		t.Fatalf("API server not ready after starting %s again: %v\n%s", p.Name, err, c.APIServer.LogTail(30))
	}
	if !c.ControllerManager.Running() {
		t.Fatalf("kube-controller-manager died during the %s outage:\n%s", p.Name, c.ControllerManager.LogTail(30))
	}
	t.Logf("%s down %v, API server ready %v after its start", p.Name,
		restartedAt.Sub(stoppedAt).Round(time.Millisecond), time.Since(restartedAt).Round(time.Millisecond))

	if p == c.APIServer {
		// edsync's watch failed during the outage: it says when it is back.
		waitLog(t, e, "API server reachable again", recoverTimeout)
		t.Logf("edsync logged \"API server reachable again\" %v after the API server was started",
			time.Since(restartedAt).Round(time.Millisecond))
	}

	// A change made after the restart reaches the file (through
	// kube-controller-manager, whose own informers also recover).
	renamesBeforeChange := files.Len()
	want = append(want, addPod(t, svc, labels, node, octet, 3))
	changeAt := time.Now()
	files.WaitEndpoints(t, file, clusterName, recoverTimeout, want...)
	t.Logf("pod added after the restart reached the file in %v", time.Since(changeAt).Round(time.Millisecond))
	if err := files.WaitCaughtUp(settle); err != nil {
		t.Fatal(err)
	}
	if n := files.Len() - renamesBeforeChange; n != 1 {
		t.Logf("note: %d renames of the output folder's files between the restart's pod change and its arrival, want 1:\n%s",
			n, describe(files.Arrivals()[renamesBeforeChange:]))
	}

	startupRefusals := len(harness.ForbiddenLines(e.Stderr()))
	if !e.Running() {
		t.Fatalf("edsync is not running after the %s outage (code %d); stderr:\n%s", p.Name, e.ExitCode(), e.Stderr())
	}
	neverBlank(t, files, file, clusterName)
	if err := e.Stop(10 * time.Second); err != nil {
		t.Errorf("edsync exited with %v after SIGTERM, want 0\n%s", err, e.Stderr())
	}
	refusedAfter(t, e, startupRefusals)
}

// TestAPIServerOutage: kube-apiserver stopped for 10 s mid-run and started
// again. edsync keeps running and every file as it was, then catches up.
func TestAPIServerOutage(t *testing.T) {
	outageScenario(t, cluster.APIServer, "fault-api", 51)
}

// TestEtcdOutage: etcd stopped for 10 s mid-run and started again (the API
// server stays up, without its storage). Same promises.
func TestEtcdOutage(t *testing.T) {
	outageScenario(t, cluster.Etcd, "fault-etcd", 52)
}

// TestStartWhileAPIServerDown: edsync started while the API server is
// stopped logs that it cannot reach it, writes nothing, and catches up once
// the API server is back; edsync --once in the same situation exits non-zero
// with a clear message after --sync-timeout.
func TestStartWhileAPIServerDown(t *testing.T) {
	ctx := t.Context()
	c := cluster
	clusterName, file, _, _, want := faultService(t, "fault-start", 53, 2)

	out, outOnce := t.TempDir(), t.TempDir()
	files := harness.WatchDir(t, out)
	recOnce := harness.WatchDir(t, outOnce)

	// edsync's ServiceAccount and token are made through the API server.
	if _, err := c.EdsyncKubeconfig(ctx); err != nil {
		t.Fatal(err)
	}
	restartOnExit(t, c.APIServer)
	_ = c.APIServer.Stop(10 * time.Second)

	e := c.StartEdsyncDuringFaults(t, "--output-dir", out, "--debounce", "50ms")
	const syncTimeout = 3 * time.Second
	onceStart := time.Now()
	once := c.StartEdsyncDuringFaults(t, "--output-dir", outOnce, "--once", "--sync-timeout", syncTimeout.String())

	// --once: exits non-zero, saying why, after its timeout.
	waitLog(t, once, "first sync did not finish", syncTimeout+30*time.Second)
	saidAt := time.Since(onceStart)
	select {
	case <-once.Exited():
	case <-time.After(syncTimeout + 30*time.Second):
		t.Fatalf("edsync --once --sync-timeout %v still running %v after it started; stderr:\n%s",
			syncTimeout, time.Since(onceStart).Round(time.Millisecond), once.Stderr())
	}
	onceTook := time.Since(onceStart)
	t.Logf("edsync --once --sync-timeout %v printed its error after %v and exited with code %d after %v",
		syncTimeout, saidAt.Round(time.Millisecond), once.ExitCode(), onceTook.Round(time.Millisecond))
	if code := once.ExitCode(); code == 0 || code == -1 {
		t.Errorf("edsync --once with the API server down: exit code %d, want a non-zero exit code; stderr:\n%s", code, once.Stderr())
	}
	if onceTook < syncTimeout {
		t.Errorf("edsync --once exited after %v, before its --sync-timeout %v", onceTook, syncTimeout)
	}
	for _, s := range []string{"first sync did not finish within 3s", "EndpointSlices; retrying with backoff"} {
		if !strings.Contains(once.Stderr(), s) {
			t.Errorf("edsync --once's stderr does not mention %q; it held:\n%s", s, once.Stderr())
		}
	}

	// The long-running one: says it cannot reach the API server, keeps trying.
	waitLog(t, e, "EndpointSlices; retrying with backoff", settle)
	if !strings.Contains(e.Stderr(), "connection refused") {
		t.Errorf("edsync's stderr does not give the reason (connection refused); it held:\n%s", e.Stderr())
	}
	if !e.Running() {
		t.Fatalf("edsync exited (code %d) while the API server was down; stderr:\n%s", e.ExitCode(), e.Stderr())
	}
	for dir, r := range map[string]*harness.DirWatcher{out: files, outOnce: recOnce} {
		if got, err := harness.SnapshotDir(dir); err != nil {
			t.Fatal(err)
		} else if len(got) != 0 || r.Len() != 0 {
			t.Errorf("%s: files written before any sync (want none): %d renames, files %v", dir, r.Len(), keys(got))
		}
	}

	if err := c.APIServer.Start(); err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	if err := c.WaitAPIServer(ctx); err != nil {
		t.Fatalf("API server not ready after its start: %v\n%s", err, c.APIServer.LogTail(30))
	}
	files.WaitEndpoints(t, file, clusterName, recoverTimeout, want...)
	if err := files.WaitCaughtUp(settle); err != nil {
		t.Fatal(err)
	}
	t.Logf("file caught up %v after the API server was started", time.Since(restartedAt).Round(time.Millisecond))
	startupRefusals := len(harness.ForbiddenLines(e.Stderr()))
	waitLog(t, e, "API server reachable again", settle)
	if !e.Running() {
		t.Fatalf("edsync is not running (code %d); stderr:\n%s", e.ExitCode(), e.Stderr())
	}
	neverBlank(t, files, file, clusterName)
	if err := e.Stop(10 * time.Second); err != nil {
		t.Errorf("edsync exited with %v after SIGTERM, want 0\n%s", err, e.Stderr())
	}
	refusedAfter(t, e, startupRefusals)
}

func keys(m map[string]harness.FileState) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// describe lists renames for a failure message: when, which file, what it held.
func describe(as []harness.Arrival) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "%s %s (read error: %v):\n%s\n", a.At.Format(time.RFC3339Nano), a.Name, a.Err, a.Data)
	}
	return b.String()
}

// refusedAfter fails the test if edsync logged a refusal (403) beyond the
// first n lines of that kind: refusals while a restarted API server fills its
// RBAC caches are expected (and noted), later ones mean missing RBAC.
func refusedAfter(t *testing.T, e *harness.Edsync, n int) {
	t.Helper()
	lines := harness.ForbiddenLines(e.Stderr())
	if n > 0 {
		t.Logf("note: edsync was refused (403) %d time(s) while the API server was starting again, e.g.:\n%s", n, lines[0])
	}
	if len(lines) > n {
		t.Errorf("the API server refused edsync something after the file had caught up (missing RBAC?):\n%s",
			strings.Join(lines[n:], "\n"))
	}
}
