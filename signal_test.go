package main

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// The first SIGTERM cancels the run (flush, exit 0); a second one exits at
// once with a failure code, however long the flush takes.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	exited := make(chan int, 1)
	ctx, stop := signalContextExit(func(code int) { exited <- code })
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	guard := time.After(30 * time.Second) // a failure guard, not a timing assertion
	select {
	case <-ctx.Done():
	case <-guard:
		t.Fatal("first SIGTERM did not cancel the run")
	}
	select {
	case code := <-exited:
		t.Fatalf("exited with %d after one signal", code)
	default:
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != exitFailure {
			t.Errorf("second signal: exit code %d, want %d", code, exitFailure)
		}
	case <-guard:
		t.Fatal("second signal did not exit")
	}
}
