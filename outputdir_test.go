package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/edsync/edsync/writer"
)

// logWatch is a log sink a test can wait on: wait returns once a line
// holding a string has been written, with no polling.
type logWatch struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed on each write, then replaced
}

func newLogWatch() *logWatch { return &logWatch{changed: make(chan struct{})} }

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.changed)
	w.changed = make(chan struct{})
	return w.buf.Write(p)
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// wait returns once the log holds s; it fails the test if exited delivers
// first (the process it watches ended).
func (w *logWatch) wait(t *testing.T, s string, exited <-chan int) {
	t.Helper()
	guard := time.After(time.Minute) // a failure guard, not a timing assertion
	for {
		w.mu.Lock()
		found, changed := strings.Contains(w.buf.String(), s), w.changed
		w.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case code := <-exited:
			t.Fatalf("exited with %d before logging %q:\n%s", code, s, w)
		case <-guard:
			t.Fatalf("no %q in the log:\n%s", s, w)
		}
	}
}

// fileWatch reports the files renamed or created into a folder, or into a
// cluster's folder in it.
type fileWatch struct{ w *fsnotify.Watcher }

func watchFolder(t *testing.T, dir string) *fileWatch {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}
	return &fileWatch{w}
}

// wait returns once path has been created or renamed into place (edsync's
// writes are renames from .tmp/, which inotify reports as a create). A
// cluster's folder is watched once it exists; a file already in the folder
// the moment it is first watched was just written.
func (f *fileWatch) wait(t *testing.T, path string, exited <-chan int) {
	t.Helper()
	folder := filepath.Dir(path)
	follow := func() bool {
		if f.w.Add(folder) != nil {
			return false // not there yet: its parent's watch reports it
		}
		_, err := os.Stat(path)
		return err == nil
	}
	if !slices.Contains(f.w.WatchList(), folder) {
		// If it exists, its creation is among the events to come, or
		// was before this edsync started.
		f.w.Add(folder)
	}
	guard := time.After(time.Minute) // a failure guard, not a timing assertion
	for {
		select {
		case ev := <-f.w.Events:
			if ev.Name == path && ev.Has(fsnotify.Create) {
				return
			}
			if ev.Name == folder && ev.Has(fsnotify.Create) && follow() {
				return
			}
		case err := <-f.w.Errors:
			t.Fatal(err)
		case code := <-exited:
			t.Fatalf("edsync exited with %d before writing %s", code, path)
		case <-guard:
			t.Fatalf("%s was not written", path)
		}
	}
}

// Two edsyncs on one output folder would empty each other's files for good:
// the second one's start-up sweep empties every cluster it does not publish
// itself. The second exits 1 with one line naming the folder and the
// holder, the first one's files stay as they were, and once the first has
// exited the folder is free.
func TestSecondEdsyncOnOneFolderExits1(t *testing.T) {
	out := t.TempDir()
	files := watchFolder(t, out)
	web := filepath.Join(out, "shop_web_http", "eds.json")

	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	exited := make(chan int, 1)
	go func() {
		exited <- runContext(ctx, []string{"edsync", "--from-dir", "examples/endpointslices", "--output-dir", out,
			"--http-addr", "off"}, io.Discard, io.Discard)
	}()
	files.wait(t, web, exited)
	before, err := os.ReadFile(web)
	if err != nil {
		t.Fatal(err)
	}

	// The second one reads a folder without the web Service.
	code, _, stderr := edsync(t, "--from-dir", t.TempDir(), "--once", "--output-dir", out)
	host, _ := os.Hostname()
	if code != exitFailure {
		t.Errorf("second edsync: exit %d, want %d; stderr:\n%s", code, exitFailure, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "edsync: ") || !strings.Contains(stderr, out) ||
		!strings.Contains(stderr, fmt.Sprintf("pid %d on host %s", os.Getpid(), host)) {
		t.Errorf("second edsync's stderr %q: want one line naming the folder %s and the holder (pid %d on host %s)",
			stderr, out, os.Getpid(), host)
	}
	if after, err := os.ReadFile(web); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the second edsync changed the first one's file (%v):\n%s", err, after)
	}

	stop()
	if code := <-exited; code != exitOK {
		t.Fatalf("first edsync: exit %d", code)
	}
	if code, _, stderr := edsync(t, "--from-dir", "examples/endpointslices", "--once", "--output-dir", out); code != exitOK {
		t.Errorf("after the first one exited: exit %d\n%s", code, stderr)
	}
}

// A dry run writes nothing, so it takes no lock: it runs beside the
// edsync that owns the folder.
func TestDryRunTakesNoLock(t *testing.T) {
	out := t.TempDir()
	lock, err := writer.LockDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	if code, _, stderr := edsync(t, "--from-dir", "examples/endpointslices", "--once", "--dry-run", "--output-dir", out); code != exitOK {
		t.Errorf("dry run beside the folder's owner: exit %d\n%s", code, stderr)
	}
}

// The user named the output folder: a missing one is created with its
// parents (0755, for Envoy's user to read), and the creation is logged.
func TestMissingOutputFolderIsCreated(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "run", "edsync")
	code, _, stderr := edsync(t, "--from-dir", "examples/endpointslices", "--once", "--output-dir", missing)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "created the output folder") || !strings.Contains(stderr, missing) {
		t.Errorf("the creation is not logged with the folder:\n%s", stderr)
	}
	fi, err := os.Stat(missing)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o755 != 0o755 {
		t.Fatalf("output folder %s: %v %v", missing, fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(missing, "shop_web_http", "eds.json")); err != nil {
		t.Errorf("nothing written into the created folder: %v", err)
	}
}

// SIGHUP reloads --config, as consul-template and Prometheus do; without a
// config file it is logged and changes nothing. It used to kill edsync
// (exit 129, nothing flushed). The signals are real, sent to this process
// while run (the whole program, signal handling included) runs in it.
func TestSIGHUP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string // the --config file's content; "" for none
		want   string // logged after SIGHUP
	}{
		{"without config", "", "SIGHUP: nothing to reload"},
		{"with config", "debounce: 20ms\n", "config file reloaded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			files := watchFolder(t, out)
			args := []string{"edsync", "--from-dir", "examples/endpointslices", "--output-dir", out, "--http-addr", "off"}
			if tc.config != "" {
				path := filepath.Join(t.TempDir(), "edsync.yaml")
				writeFile(t, path, tc.config)
				args = append(args, "--config", path)
			}
			logs := newLogWatch()
			exited := make(chan int, 1)
			go func() { exited <- run(args, io.Discard, logs) }()
			files.wait(t, filepath.Join(out, "shop_web_http", "eds.json"), exited)

			if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			logs.wait(t, tc.want, exited)
			if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := <-exited; code != exitOK {
				t.Errorf("exit %d after SIGHUP and SIGTERM\n%s", code, logs)
			}
		})
	}
}

// The built binary, as a user runs it: a second edsync on the folder exits
// 1 naming the first, SIGHUP does not kill the first, SIGTERM stops it
// with 0.
func TestBinaryOneFolderAndSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds edsync")
	}
	bin := buildEdsync(t)
	out := t.TempDir()
	files := watchFolder(t, out)
	first := exec.CommandContext(t.Context(), bin, "--from-dir", "examples/endpointslices", "--output-dir", out, "--http-addr", "off")
	logs := newLogWatch()
	first.Stderr = logs
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan int, 1)
	go func() { first.Wait(); exited <- first.ProcessState.ExitCode() }()
	files.wait(t, filepath.Join(out, "shop_web_http", "eds.json"), exited)

	second := exec.CommandContext(t.Context(), bin, "--from-dir", t.TempDir(), "--once", "--output-dir", out)
	var stderr bytes.Buffer
	second.Stderr = &stderr
	err := second.Run()
	want := fmt.Sprintf("pid %d on host", first.Process.Pid)
	if second.ProcessState.ExitCode() != exitFailure || strings.Count(stderr.String(), "\n") != 1 ||
		!strings.Contains(stderr.String(), out) || !strings.Contains(stderr.String(), want) {
		t.Errorf("second edsync: %v, stderr %q: want exit 1 and one line naming %s and %q", err, stderr.String(), out, want)
	}

	if err := first.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logs.wait(t, "SIGHUP: nothing to reload", exited)
	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := <-exited; code != exitOK {
		t.Errorf("first edsync: exit %d (%v)\n%s", code, first.ProcessState, logs)
	}
}

// An output folder others may write (or owned by another user) is taken,
// as a volume's root may be so by design, but said at Warn with what to
// do: whoever can write it can make a cluster's folder before edsync does.
// A folder of edsync's own gets no such line.
func TestOutputFolderOthersMayWrite(t *testing.T) {
	run := func(t *testing.T, out string) string {
		code, _, stderr := edsync(t, "--from-dir", "examples/endpointslices", "--once", "--output-dir", out)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		return stderr
	}
	own := t.TempDir()
	if stderr := run(t, own); strings.Contains(stderr, "not edsync's alone") {
		t.Errorf("a folder of edsync's own: %s", stderr)
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if stderr := run(t, open); !strings.Contains(stderr, "level=WARN") || !strings.Contains(stderr, "any user may write it (mode 0777)") {
		t.Errorf("a world-writable folder: no warning\n%s", stderr)
	}
	if os.Geteuid() != 0 {
		t.Skip("giving a folder to another user needs root")
	}
	theirs := t.TempDir()
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if stderr := run(t, theirs); !strings.Contains(stderr, "it is owned by uid 65534, not edsync's (0)") {
		t.Errorf("another user's folder: no warning\n%s", stderr)
	}
}
