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
	ctx, _, stop := signalContextExit(func(code int) { exited <- code })
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

// SIGHUP asks for a reload: it is handed over on its own channel and
// neither cancels the run nor exits (its default action would kill the
// process with status 129, flushing nothing).
func TestSIGHUPIsHandedOver(t *testing.T) {
	exited := make(chan int, 1)
	ctx, hup, stop := signalContextExit(func(code int) { exited <- code })
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hup:
	case <-time.After(30 * time.Second): // a failure guard, not a timing assertion
		t.Fatal("SIGHUP was not handed over")
	}
	select {
	case <-ctx.Done():
		t.Error("SIGHUP cancelled the run")
	case code := <-exited:
		t.Errorf("SIGHUP exited with %d", code)
	default:
	}
}
