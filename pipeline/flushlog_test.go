package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// logRecorder keeps the log lines at Info and above as "msg k=v ...".
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler           { return r }
func (r *logRecorder) WithGroup(string) slog.Handler                { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key != "took" && a.Key != "error" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

// take returns the lines since the last call.
func (r *logRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.lines
	r.lines = nil
	return out
}

// Under churn, flushes are summed up at Info at most once per interval; the
// initial flush and failures are logged at once.
func TestFlushLogsDoNotFlood(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	logs := &logRecorder{}
	out := t.TempDir()
	p, store := newTestPipeline(t, out, Options{
		Logger: slog.New(logs),
		// Every read of the clock moves it on, as a real one does.
		Clock:        func() time.Time { now = now.Add(time.Microsecond); return now },
		SummaryEvery: 10 * time.Second,
	})
	version := 0
	// change puts a new version of Service svc in the store and flushes
	// what is due, as the loop does when its timer fires.
	// notReady endpoints are dropped: they change the slice, not the file.
	change := func(svc string, ip string, initial bool, notReady ...string) {
		t.Helper()
		version++
		s := benchSliceAt(svc, ip, version)
		for _, a := range notReady {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: new(false)}})
		}
		store.Upsert("default/"+svc, s)
		p.takeDirty()
		if due := p.coalescer.Due(now); len(due) > 0 {
			p.flush(t.Context(), due, initial)
		}
	}
	expect := func(step string, want ...string) {
		t.Helper()
		if got := logs.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: Info lines\n  %s\nwant\n  %s", step, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}

	change("a", "10.0.0.1", true)
	expect("initial flush", "flushed services=1 clusters=1 written=1 unchanged=0 failed=0")

	change("a", "10.0.0.2", false)
	expect("first change after a quiet spell: summed up at once",
		"flushed flushes=1 services=1 written=1 unchanged=0 failed=0")
	for i := range 5 {
		now = now.Add(time.Second)
		change("b", fmt.Sprintf("10.0.1.%d", i), false)
	}
	expect("churn within the interval")
	if at, ok := p.summaryDue(); !ok || at.Sub(now) <= 4*time.Second || at.Sub(now) > 5*time.Second {
		t.Errorf("summary due in %v (%v); want 10 s after the last line, 5 s from now", at.Sub(now), ok)
	}
	now = now.Add(4 * time.Second)
	p.logSummary(now, false)
	expect("a second before it is due")
	now = now.Add(time.Second)
	p.logSummary(now, false)
	expect("when due", "flushed flushes=5 services=5 written=5 unchanged=0 failed=0")

	// Flushes that change no file are not worth a line of their own.
	now = now.Add(time.Minute)
	change("b", "10.0.1.4", false, "10.0.9.1")
	change("b", "10.0.1.4", false, "10.0.9.2")
	if _, ok := p.summaryDue(); ok {
		t.Error("a summary is due after flushes that changed nothing")
	}
	expect("unchanged flushes")

	// A failure is counted at once (the writer logs it with its reason),
	// and in the next summary.
	target := filepath.Join(out, "default_c_http", "eds.json")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	change("c", "10.0.2.1", false)
	expect("failed flush, summed up too",
		"flushed services=1 clusters=1 written=0 unchanged=0 failed=1",
		"flushed flushes=3 services=3 written=0 unchanged=2 failed=1")

	// At shutdown, what is left is summed up whenever it is due.
	now = now.Add(time.Second)
	change("a", "10.0.0.3", false)
	expect("within the interval")
	p.logSummary(now, true)
	expect("forced", "flushed flushes=1 services=1 written=1 unchanged=0 failed=0")
}

// benchSliceAt is version v of a one-endpoint slice of Service
// default/svc, port http 8080.
func benchSliceAt(svc, ip string, v int) *discoveryv1.EndpointSlice {
	s := benchSlice(svc, svc, 0, 1)
	s.Namespace, s.ResourceVersion = "default", fmt.Sprint(v)
	s.Endpoints[0].Addresses = []string{ip}
	return s
}
