//go:build linux

package envoywatch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkUpdate is what one file update costs the Envoy that reads N
// file-based clusters, and the writer's rename(), per layout: every file
// in one folder (flat) or each in a folder of its own (folders). Each
// iteration replaces one file as edsync does (temp file in a hidden
// sibling folder, rename onto the target) and waits for the Envoy-like
// event loop, on its own thread, to read it. Reported per update: woken
// (Envoy subscriptions woken; fewer than the events when one wake-up
// reads two), events (inotify events queued for Envoy: one per
// subscription on the folder), reloads (subscriptions that reloaded their
// file: 1), reader-cpu-ns (the event loop's CPU), rename-ns (the rename
// system call alone, inside which the kernel queues an event for every
// watch on the folder). ns/op includes the wait for the loop.
//
// N = 1 is one watcher's cost, what a folder per cluster keeps each update
// to. N above fs.inotify.max_user_instances (128 by default) is skipped:
// raise it to measure, e.g. sysctl -w fs.inotify.max_user_instances=20000.
func BenchmarkUpdate(b *testing.B) {
	for _, layout := range []string{"flat", "folders"} {
		for _, n := range []int{1, 100, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/%d", layout, n), func(b *testing.B) { benchUpdate(b, layout, n) })
		}
	}
}

func benchUpdate(b *testing.B, layout string, n int) {
	dir := b.TempDir()
	if _, err := os.Stat("/dev/shm"); err == nil { // tmpfs, as an emptyDir of medium Memory
		var err error
		if dir, err = os.MkdirTemp("/dev/shm", "envoywatch-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	tmp := filepath.Join(dir, ".tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 1200)
	paths := make([]string, n)
	for i := range paths {
		name := "bench_svc-" + strconv.Itoa(i) + "_http"
		if layout == "flat" {
			paths[i] = filepath.Join(dir, name+".json")
		} else {
			paths[i] = filepath.Join(dir, name, "eds.json")
			if err := os.Mkdir(filepath.Dir(paths[i]), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(paths[i], data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	r, err := New(paths)
	if errors.Is(err, ErrLimit) {
		b.Skipf("%d Envoy subscriptions: %v; raise it (sysctl -w fs.inotify.max_user_instances=%d) to measure", n, err, n+1000)
	}
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	l := r.Start()

	var renames time.Duration
	c0, cpu0 := l.Read()
	updates := 0
	for i := 0; b.Loop(); i++ {
		t := filepath.Join(tmp, strconv.Itoa(i))
		fd, err := syscall.Open(t, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		syscall.Write(fd, data)
		syscall.Close(fd)
		turns := l.Turns()
		start := time.Now()
		if err := syscall.Rename(t, paths[(i*7919)%n]); err != nil {
			b.Fatal(err)
		}
		renames += time.Since(start)
		updates++
		// One update at a time, as at a few a second: Envoy handles
		// each on its own rather than many in one turn.
		if !l.WaitTurn(turns, time.Minute) { // a guard, not a timing assertion
			b.Fatal("the Envoy-like loop did not see the update")
		}
	}
	b.StopTimer()
	if err := l.Stop(); err != nil {
		b.Fatal(err)
	}
	c, cpu := l.Read()
	b.ReportMetric(float64(c.Woken-c0.Woken)/float64(updates), "woken/op")
	b.ReportMetric(float64(c.Events-c0.Events)/float64(updates), "events/op")
	b.ReportMetric(float64(c.Reloads-c0.Reloads)/float64(updates), "reloads/op")
	b.ReportMetric(float64(cpu-cpu0)/float64(updates), "reader-cpu-ns/op")
	b.ReportMetric(float64(renames)/float64(updates), "rename-ns/op")
}
