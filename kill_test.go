package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/edsync/edsync/internal/testutil"
	"github.com/edsync/edsync/writer"
)

// buildEdsync builds the edsync binary, as a user runs it, into the test's
// temp folder and returns its path.
func buildEdsync(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edsync")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// A real crash, not an injected one: the built binary, reading a folder of
// manifests that a churn loop keeps rewriting (endpoints changed, Services
// added and removed), is killed with SIGKILL at random points: at any time
// from its start (before its first sync, during its first flush), at a
// random time once ready, and right after a file of its was seen renamed
// into place (a flush under way: its other files are being written). After
// every kill, every cluster file present is whole: parsed as Envoy parses
// it, one CLA named for its folder, never empty; the lock is free; then it
// starts again on the same folder.
//
// Then the churn stops and edsync starts once more: once ready, the output
// folder holds exactly what `edsync --once` writes for the final manifests
// into a fresh folder, byte for byte; the temp folder is empty (a start
// removes what a kill left); the files of Services gone are emptied at
// start and removed with their folders after --prune-after (README, "What
// you can rely on"); after SIGTERM it exits 0 and the lock is free.
//
// The delays before kills and between churn steps are random (the scenario),
// drawn from a seed that is logged: EDSYNC_KILL_SEED=N replays the same
// draws (not the same interleaving), EDSYNC_KILLS=N sets the number of
// kills (default 30). Nothing waits on a sleep: on the log, /readyz and
// fsnotify events.
func TestKill9UnderChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds edsync and kills it 30 times under churn")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("EDSYNC_KILL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("EDSYNC_KILL_SEED: %v", err)
		}
	}
	kills := 30
	if s := os.Getenv("EDSYNC_KILLS"); s != "" {
		var err error
		if kills, err = strconv.Atoi(s); err != nil || kills < 1 {
			t.Fatalf("EDSYNC_KILLS=%q: want a positive number", s)
		}
	}
	t.Logf("seed %d (replay the draws with EDSYNC_KILL_SEED=%d), %d kills", seed, seed, kills)
	start := time.Now()

	bin := buildEdsync(t)
	in, out := t.TempDir(), t.TempDir()
	// Short delays: many flushes, so that kills land in them; an emptied
	// file is pruned soon, so that kills land in prunes too.
	args := []string{"--from-dir", in, "--output-dir", out, "--http-addr", "127.0.0.1:0", "--log-format", "json",
		"--debounce", "2ms", "--max-delay", "20ms", "--prune-after", "50ms"}

	ch := newChurn(in, rand.New(rand.NewPCG(seed, 1)))
	ch.initial(t)
	churnCtx, stopChurn := context.WithCancel(t.Context())
	churned := make(chan error, 1)
	go func() { churned <- ch.run(churnCtx) }()
	endChurn := sync.OnceValue(func() error {
		stopChurn()
		return <-churned
	})
	defer endChurn()

	renames := watchRenames(t, out)
	rng := rand.New(rand.NewPCG(seed, 2))
	var fig killFigures
	for i := range kills {
		renames.reset()
		run := startEdsync(t, bin, args...)
		mode := rng.IntN(3)
		switch mode {
		case 0: // anywhere from the start: the sync, the first flush
			d := time.Duration(rng.IntN(80)) * time.Millisecond
			select {
			case <-time.After(d):
			case <-run.done:
			}
		case 1: // once ready, at a random time
			run.waitReady(t)
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		case 2: // right after the k-th rename of this run: mid-flush
			k := 1 + rng.IntN(6)
			renames.wait(t, k, run)
		}
		run.kill(t)
		fig.kills[mode]++
		st := checkAfterKill(t, out, run)
		fig.tempLeft += st.temps
		if st.temps > 0 {
			fig.killsWithTemps++
		}
		if st.emptyFolders > 0 {
			fig.killsWithBare++
		}
		fig.files = max(fig.files, st.files)
		if t.Failed() {
			t.Fatalf("kill %d (mode %d): see above; seed %d", i+1, mode, seed)
		}
	}
	fig.renames = renames.total()

	if err := endChurn(); err != nil {
		t.Fatal(err)
	}
	fig.churnSteps = ch.steps
	// A folder the last kill left without its file: its Service goes too,
	// so that the final run must clear it (Services gone leave nothing).
	for name, data := range clusterFolders(t, out) {
		cluster, _ := writer.FolderCluster(name)
		var i int
		if _, err := fmt.Sscanf(strings.Split(cluster+"//", "/")[1], "svc-%d", &i); data == nil && err == nil {
			if err := os.Remove(ch.file(i)); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			fig.bareAtEnd++
		}
	}

	// What the final manifests give, written by a run into a fresh folder.
	fresh := t.TempDir()
	once := exec.CommandContext(t.Context(), bin, "--from-dir", in, "--once", "--output-dir", fresh)
	if b, err := once.CombinedOutput(); err != nil {
		t.Fatalf("edsync --once: %v\n%s", err, b)
	}
	want := clusterFolders(t, fresh)
	before := clusterFolders(t, out)
	// Those of Services gone: files, and folders a kill left without
	// their file (between a folder's making and its first rename, or a
	// prune's removal of the file and of the folder): both are emptied at
	// start and pruned.
	var stale []string
	for name := range before {
		if _, ok := want[name]; !ok {
			stale = append(stale, name)
		}
	}

	run := startEdsync(t, bin, args...)
	run.waitReady(t)
	checkTmpEmpty(t, out, "after a clean start")
	if len(stale) > 0 {
		line := run.waitLog(t, "pruned emptied files of clusters no Service publishes")
		var pruned struct{ Count int }
		if err := json.Unmarshal([]byte(line), &pruned); err != nil || pruned.Count != len(stale) {
			t.Errorf("pruned %d files (%v), want the %d stale ones %v:\n%s", pruned.Count, err, len(stale), stale, line)
		}
	}
	got := clusterFolders(t, out)
	for name, data := range got {
		switch w, ok := want[name]; {
		case !ok && data == nil:
			t.Errorf("%s: a stale cluster folder without a file, left behind", name)
		case !ok:
			t.Errorf("%s: a stale cluster file, not pruned: %s", name, data)
		case !bytes.Equal(data, w):
			t.Errorf("%s: differs from what --once writes for the final manifests:\n%s\nwant:\n%s", name, data, w)
		}
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("%s: missing, --once writes it", name)
		}
	}
	run.stop(t)
	checkTmpEmpty(t, out, "after SIGTERM")
	checkLockFree(t, out)

	t.Logf("seed %d: %d kills (%d from the start, %d once ready, %d after a rename) in %s; %d churn steps; %d renames seen; "+
		"up to %d cluster files; %d kills left %d temp files (removed at the next start), %d a cluster folder without its file; "+
		"final: %d clusters, %d stale pruned (%d of them folders without their file)",
		seed, kills, fig.kills[0], fig.kills[1], fig.kills[2], time.Since(start).Round(time.Millisecond), fig.churnSteps, fig.renames,
		fig.files, fig.killsWithTemps, fig.tempLeft, fig.killsWithBare, len(want), len(stale), fig.bareAtEnd)
}

type killFigures struct {
	kills          [3]int
	renames        int
	churnSteps     int
	files          int
	tempLeft       int
	killsWithTemps int
	killsWithBare  int
	bareAtEnd      int
}

// edsyncRun is one run of the binary.
type edsyncRun struct {
	cmd  *exec.Cmd
	logs *logWatch
	done chan struct{} // closed once it has exited
	addr string        // of /readyz, once waitReady read it
}

func startEdsync(t *testing.T, bin string, args ...string) *edsyncRun {
	t.Helper()
	r := &edsyncRun{cmd: exec.Command(bin, args...), logs: newLogWatch(), done: make(chan struct{})}
	r.cmd.Stderr = r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
	})
	return r
}

// exited delivers the exit code, for logWatch.wait.
func (r *edsyncRun) exited() <-chan int {
	c := make(chan int, 1)
	go func() {
		<-r.done
		c <- r.cmd.ProcessState.ExitCode()
	}()
	return c
}

// waitLog returns the first log line holding s.
func (r *edsyncRun) waitLog(t *testing.T, s string) string {
	t.Helper()
	r.logs.wait(t, s, r.exited())
	for line := range strings.Lines(r.logs.String()) {
		if strings.Contains(line, s) {
			return line
		}
	}
	panic("unreachable")
}

// waitReady returns once /readyz answers 200: the first flush is written.
func (r *edsyncRun) waitReady(t *testing.T) {
	t.Helper()
	if r.addr == "" {
		var l struct{ Addr string }
		if err := json.Unmarshal([]byte(r.waitLog(t, `"msg":"serving metrics and probes"`)), &l); err != nil || l.Addr == "" {
			t.Fatalf("no address in the log: %v\n%s", err, r.logs)
		}
		r.addr = l.Addr
	}
	// Asked again until it answers 200: readiness is a state, not an
	// event of the log.
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	guard := time.After(time.Minute) // a failure guard, not a timing assertion
	for {
		resp, err := http.Get("http://" + r.addr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-tick.C:
		case <-r.done:
			t.Fatalf("exited (%v) before it was ready:\n%s", r.cmd.ProcessState, r.logs)
		case <-guard:
			t.Fatalf("not ready (last: %v):\n%s", err, r.logs)
		}
	}
}

// kill sends SIGKILL and waits for the process to end by it: one that
// exited on its own first is a failure.
func (r *edsyncRun) kill(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	if ws, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("edsync ended before the kill: %v\n%s", r.cmd.ProcessState, r.logs)
	}
}

// stop sends SIGTERM and wants exit 0.
func (r *edsyncRun) stop(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	<-r.done
	if code := r.cmd.ProcessState.ExitCode(); code != exitOK {
		t.Errorf("exit %d after SIGTERM:\n%s", code, r.logs)
	}
}

// afterKill is what a kill left in the output folder.
type afterKill struct {
	files        int // cluster files, each whole
	temps        int // temp files in .tmp
	emptyFolders int // cluster folders without a file
}

// checkAfterKill checks the output folder a kill left: every cluster file
// is one Envoy accepts, named for its folder; nothing but cluster folders,
// the temp folder and the lock file; the lock is free.
func checkAfterKill(t *testing.T, out string, run *edsyncRun) afterKill {
	t.Helper()
	var st afterKill
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		path := filepath.Join(out, e.Name())
		switch {
		case e.Name() == ".tmp" && e.IsDir():
			tmps, err := os.ReadDir(path)
			if err != nil {
				t.Fatal(err)
			}
			st.temps += len(tmps)
			continue
		case e.Name() == writer.LockFileName && e.Type().IsRegular():
			continue
		case !e.IsDir():
			t.Errorf("%s: not a cluster folder (%s)", path, e.Type())
			continue
		}
		files, err := os.ReadDir(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			st.emptyFolders++
			continue
		}
		if len(files) != 1 || files[0].Name() != "eds.json" || !files[0].Type().IsRegular() {
			t.Errorf("%s holds %v, want eds.json alone", path, files)
			continue
		}
		file := filepath.Join(path, "eds.json")
		if fi, err := os.Stat(file); err != nil || fi.Size() == 0 {
			t.Errorf("%s: empty (%v)", file, err)
			continue
		}
		cla := testutil.ReadAsEnvoy(t, file) // whole, or the test ends here
		if folder, _ := writer.FolderName(cla.ClusterName); folder != e.Name() {
			t.Errorf("%s holds cluster %q, whose folder is %q", file, cla.ClusterName, folder)
		}
		st.files++
	}
	checkLockFree(t, out)
	if t.Failed() {
		t.Logf("the killed edsync's log:\n%s", run.logs)
	}
	return st
}

// checkLockFree takes and releases the output folder's lock, as the next
// edsync would: the kernel released the dead one's.
func checkLockFree(t *testing.T, out string) {
	t.Helper()
	l, err := writer.LockDir(out)
	if err != nil {
		t.Fatalf("the lock is not free: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}

func checkTmpEmpty(t *testing.T, out, when string) {
	t.Helper()
	tmps, err := os.ReadDir(filepath.Join(out, ".tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tmps) > 0 {
		t.Errorf("%s: temp files left in .tmp: %v", when, tmps)
	}
}

// clusterFolders maps each cluster folder of out to its file's bytes (nil
// for a folder without one).
func clusterFolders(t *testing.T, out string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string][]byte)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(out, e.Name(), "eds.json"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		m[e.Name()] = data
	}
	return m
}

// renameWatch counts the cluster files renamed into place in an output
// folder, across runs: a watch on the folder and on each cluster folder
// as it appears.
type renameWatch struct {
	w       *fsnotify.Watcher
	mu      sync.Mutex
	n, all  int
	changed chan struct{} // closed on each rename, then replaced
}

func watchRenames(t *testing.T, out string) *renameWatch {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(out); err != nil {
		t.Fatal(err)
	}
	r := &renameWatch{w: w, changed: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if !ev.Has(fsnotify.Create) {
					continue
				}
				if strings.HasPrefix(filepath.Base(ev.Name), ".") {
					continue // .tmp, the lock
				}
				if filepath.Dir(ev.Name) == out {
					w.Add(ev.Name) // a cluster folder made
					continue
				}
				if filepath.Base(ev.Name) == "eds.json" {
					r.mu.Lock()
					r.n++
					r.all++
					close(r.changed)
					r.changed = make(chan struct{})
					r.mu.Unlock()
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		w.Close()
		<-done
	})
	return r
}

// reset starts counting for a new run.
func (r *renameWatch) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n = 0
}

func (r *renameWatch) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all
}

// wait returns once k renames were seen since reset.
func (r *renameWatch) wait(t *testing.T, k int, run *edsyncRun) {
	t.Helper()
	guard := time.After(time.Minute) // a failure guard, not a timing assertion
	for {
		r.mu.Lock()
		n, changed := r.n, r.changed
		r.mu.Unlock()
		if n >= k {
			return
		}
		select {
		case <-changed:
		case <-run.done:
			t.Fatalf("exited (%v) before %d renames:\n%s", run.cmd.ProcessState, k, run.logs)
		case <-guard:
			t.Fatalf("%d renames of %d:\n%s", n, k, run.logs)
		}
	}
}

// churn rewrites a folder of manifests as a busy cluster would: one file
// per Service (one or two slices, a second port on some), endpoints added,
// removed and flipping between ready, terminating and not ready, Services
// added and removed. Each file is replaced by a rename, never written in
// place (README: a file cut off between documents still parses).
type churn struct {
	dir   string
	rng   *rand.Rand
	live  []bool
	gen   []int
	steps int
}

const churnServices = 40

func newChurn(dir string, rng *rand.Rand) *churn {
	return &churn{dir: dir, rng: rng, live: make([]bool, churnServices), gen: make([]int, churnServices)}
}

func (c *churn) file(i int) string { return filepath.Join(c.dir, fmt.Sprintf("svc-%02d.yaml", i)) }

// initial writes three Services in four.
func (c *churn) initial(t *testing.T) {
	for i := range churnServices {
		if c.rng.IntN(4) > 0 {
			if err := c.write(i); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// run makes a change every 0 to 3 ms until ctx ends.
func (c *churn) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(c.rng.IntN(3000)) * time.Microsecond):
		}
		i := c.rng.IntN(churnServices)
		var err error
		if c.live[i] && c.rng.IntN(6) == 0 {
			err = os.Remove(c.file(i))
			c.live[i] = false
		} else {
			err = c.write(i)
		}
		if err != nil {
			return err
		}
		c.steps++
	}
}

func (c *churn) write(i int) error {
	c.gen[i]++
	ns := []string{"shop", "batch"}[i%2]
	var b strings.Builder
	for s := range 1 + c.rng.IntN(2) {
		if s > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-%02d-%d\n  namespace: %s\n"+
			"  labels: {kubernetes.io/service-name: svc-%02d}\naddressType: IPv4\nports:\n- {name: http, port: 8080, protocol: TCP}\n",
			i, s, ns, i)
		if i%3 == 0 {
			b.WriteString("- {name: grpc, port: 9000, protocol: TCP}\n")
		}
		n := c.rng.IntN(8)
		if n == 0 {
			b.WriteString("endpoints: []\n")
			continue
		}
		b.WriteString("endpoints:\n")
		for e := range n {
			ip := fmt.Sprintf("10.%d.%d.%d", i, s, 1+e*20+c.rng.IntN(20))
			cond := [...]string{"{ready: true}", "{ready: true}", "{ready: false, serving: true, terminating: true}", "{ready: false}"}[c.rng.IntN(4)]
			fmt.Fprintf(&b, "- addresses: [%q]\n  conditions: %s\n  zone: zone-%c\n", ip, cond, 'a'+rune(c.rng.IntN(3)))
		}
	}
	tmp := filepath.Join(c.dir, fmt.Sprintf(".svc-%02d.new", i)) // hidden: not read
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	c.live[i] = true
	return os.Rename(tmp, c.file(i))
}
