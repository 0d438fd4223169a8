package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edsync/edsync/internal/syncbuf"
	"github.com/edsync/edsync/internal/testutil"
	"github.com/edsync/edsync/render"
)

// Both handlers print durations as rounded strings, enums and Service keys
// by name, and never a newline inside a record.
func TestLogHandlersFormatValues(t *testing.T) {
	for _, tc := range []struct {
		format string
		want   []string
	}{
		{"json", []string{`"msg":"flushed; again"`, `"took":"7.68ms"`, `"slow":"1m30s"`, `"short":"532µs"`, `"zero":"0s"`,
			`"topology":"hints"`, `"service":"shop/web"`, `"error":"a: first; b: second"`, `"detail":"line 1; line 2"`}},
		{"text", []string{`msg="flushed; again"`, `took=7.68ms`, `slow=1m30s`, `short=532µs`, `zero=0s`,
			`topology=hints`, `service=shop/web`, `error="a: first; b: second"`, `detail="line 1; line 2"`}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			log := newLogger(&config{logFormat: tc.format}, new(slog.LevelVar), &buf)
			log.Info("flushed\nagain", "took", 7684321*time.Nanosecond, "slow", 90*time.Second+12*time.Millisecond,
				"short", 532123*time.Nanosecond, "zero", time.Duration(0),
				"topology", render.TopologyHints, "service", render.ServiceKey{Namespace: "shop", Name: "web"},
				"error", errors.Join(errors.New("a: first"), errors.New("b: second")), "detail", "line 1\nline 2")
			line := buf.String()
			if strings.Count(line, "\n") != 1 || strings.Contains(line, `\n`) {
				t.Errorf("record is not one line without newlines: %q", line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("record %s\nlacks %s", line, w)
				}
			}
		})
	}
}

func TestRoundDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "0s",
		999:                     "999ns",
		2425 * time.Microsecond: "2.43ms",
		7684321:                 "7.68ms",
		1500 * time.Millisecond: "1.5s",
		12345678901:             "12.3s",
		2 * time.Minute:         "2m0s",
		-7684321:                "-7.68ms",
	} {
		if got := roundDuration(d).String(); got != want {
			t.Errorf("roundDuration(%d) = %s, want %s", int64(d), got, want)
		}
	}
}

// records runs edsync with JSON logs and returns its log records, checking
// that each is one line whose strings hold no newline.
func records(t *testing.T, wantCode int, args ...string) (recs []map[string]any, stderr string) {
	t.Helper()
	code, _, stderr := edsync(t, append(args, "--log-format", "json")...)
	if code != wantCode {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, wantCode, stderr)
	}
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if strings.HasPrefix(line, "edsync: ") {
			continue // the exit line
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON record: %q: %v", line, err)
		}
		for k, v := range rec {
			if s, ok := v.(string); ok && strings.Contains(s, "\n") {
				t.Errorf("record %q: %s has a newline", rec["msg"], k)
			}
		}
		recs = append(recs, rec)
	}
	return recs, stderr
}

// find returns the records with the message and, for each key given, the value.
func find(recs []map[string]any, msg string, kv ...string) []map[string]any {
	var out []map[string]any
next:
	for _, rec := range recs {
		if rec["msg"] != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if rec[kv[i]] != kv[i+1] {
				continue next
			}
		}
		out = append(out, rec)
	}
	return out
}

// A dry run says what it did: printed, not written; durations and enums
// are strings in JSON. A declared cluster whose port the Service lacks is a
// warning naming the ports it has.
func TestDryRunLogs(t *testing.T) {
	recs, stderr := records(t, 0, "--from-dir", "examples/endpointslices", "--dry-run", "--once",
		"--cluster", "shop/web/htpp", "--cluster", "shop/db")
	start := find(recs, "edsync starting")
	if len(start) != 1 || start[0]["topology"] != "off" {
		t.Errorf("start records %v: want one with topology \"off\"", start)
	}
	flushed := find(recs, "flushed")
	if len(flushed) != 1 {
		t.Fatalf("flushed records %v, want one:\n%s", flushed, stderr)
	}
	if _, ok := flushed[0]["written"]; ok || flushed[0]["printed"] != 6.0 {
		t.Errorf("flushed %v: want printed=6 and no written in a dry run", flushed[0])
	}
	if took, ok := flushed[0]["took"].(string); !ok {
		t.Errorf("took %v: want a duration string", flushed[0]["took"])
	} else if _, err := time.ParseDuration(took); err != nil {
		t.Errorf("took %q: %v", took, err)
	}
	warn := find(recs, "declared cluster's port is not a port of its Service; publishing it empty", "level", "WARN", "cluster", "shop/web/htpp")
	if len(warn) != 1 || warn[0]["port"] != "htpp" || warn[0]["service_ports"] != "admin, http" {
		t.Errorf("warnings %v: want one naming port htpp and the Service's ports admin, http:\n%s", warn, stderr)
	}
	// The same in text.
	_, _, text := edsync(t, "--from-dir", "examples/endpointslices", "--dry-run", "--once", "--cluster", "shop/web/htpp")
	for _, want := range []string{"topology=off", " printed=5 ", `level=WARN msg="declared cluster's port is not a port of its Service; publishing it empty" component=pipeline cluster=shop/web/htpp service=shop/web port=htpp service_ports="admin, http"`} {
		if !strings.Contains(text, want) {
			t.Errorf("text logs lack %s:\n%s", want, text)
		}
	}
	// A cluster of a Service nobody knows yet is only not there yet.
	if info := find(recs, "declared cluster has no endpoints yet; publishing it empty", "level", "INFO"); len(info) != 1 || info[0]["cluster"] != "shop/db" {
		t.Errorf("info lines %v: want one, for shop/db", info)
	}
}

// One failed write is reported once, at Error, with its path and reason.
func TestFailedWriteIsReportedOnce(t *testing.T) {
	out := t.TempDir()
	target := filepath.Join(out, "shop_web_http", "eds.json")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	recs, stderr := records(t, exitFailure, "--from-dir", "examples/endpointslices", "--once", "--output-dir", out)
	const reason = "target is not a regular file"
	if n := strings.Count(stderr, reason); n != 1 {
		t.Errorf("the reason is reported %d times, want once:\n%s", n, stderr)
	}
	errs := find(recs, "write failed; the old file stays", "level", "ERROR", "path", target, "cluster", "shop/web/http")
	if len(errs) != 1 || !strings.HasPrefix(errs[0]["error"].(string), reason) {
		t.Errorf("error records %v: want one with the path and the reason:\n%s", errs, stderr)
	}
	if last := stderr[strings.LastIndex(strings.TrimSuffix(stderr, "\n"), "\n")+1:]; !strings.HasPrefix(last, "edsync: 1 of 4 files failed to write") {
		t.Errorf("last line %q: want the count of failures", last)
	}

	// The same in text: one line per record, the reason once.
	_, _, stderr = edsync(t, "--from-dir", "examples/endpointslices", "--once", "--output-dir", out)
	if n := strings.Count(stderr, reason); n != 1 {
		t.Errorf("text: the reason is reported %d times, want once:\n%s", n, stderr)
	}
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if !strings.HasPrefix(line, "time=") && !strings.HasPrefix(line, "edsync: ") || strings.Contains(line, `\n`) {
			t.Errorf("text: %q is not one record on one line", line)
		}
	}
	if !strings.Contains(stderr, `level=ERROR msg="write failed; the old file stays" component=writer cluster=shop/web/http path=`+target+` error="`+reason) {
		t.Errorf("text: no Error line with the cluster, path and reason:\n%s", stderr)
	}
}

// Under a .PortNumber template, a Service whose slices are read but whose
// Service object is not is a warning, once, and counted.
func TestServiceWithoutObjectIsLogged(t *testing.T) {
	recs, stderr := records(t, 0, "--from-dir", "examples/endpointslices", "--dry-run", "--once", "--watch-services",
		"--cluster-name-template", "{{.Namespace}}.{{.Service}}-{{.PortNumber}}")
	var objects []string
	for _, rec := range find(recs, "skipped", "level", "WARN", "reason", render.ReasonNoServicePort) {
		objects = append(objects, rec["object"].(string))
	}
	if strings.Join(objects, " ") != "cache/redis shop/api" {
		t.Errorf("warned of %v, want cache/redis and shop/api (shop/web has its Service):\n%s", objects, stderr)
	}
	if flushed := find(recs, "flushed"); len(flushed) != 1 || flushed[0]["printed"] != 2.0 {
		t.Errorf("flushed %v: want the two clusters of shop/web", flushed)
	}
}

// The warning is not repeated by every flush while the Service object is
// missing; once it is read, the clusters are published.
func TestServiceWithoutObjectWarnsOncePerService(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in, "web.yaml"), testutil.TopoSlice)
	cfg := configForTest(t, "--from-dir", in, "--output-dir", out, "--debounce", "1ms", "--max-delay", "10ms",
		"--watch-services", "--cluster-name-template", "{{.Namespace}}.{{.Service}}-{{.PortNumber}}")
	var logs syncbuf.Buffer
	tp := startPipelineLog(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	warnings := func() int { return strings.Count(logs.String(), "reason="+render.ReasonNoServicePort) }
	skipped := func() float64 {
		return scrape(t, tp.m)[`edsync_skipped_objects_total{reason="`+render.ReasonNoServicePort+`"}`]
	}
	if r := tp.Next(t); !r.Initial || len(r.Clusters) != 0 {
		t.Fatalf("first flush %+v: want the initial one, with no cluster", r)
	}
	if warnings() != 1 || skipped() != 1 {
		t.Fatalf("%d warnings, %v counted; want 1:\n%s", warnings(), skipped(), logs.String())
	}
	replaceFile(t, filepath.Join(in, "web.yaml"), strings.Replace(testutil.TopoSlice, "10.0.2.1", "10.0.2.2", 1))
	if r := tp.Next(t); r.Services != 1 || len(r.Clusters) != 0 {
		t.Fatalf("flush %+v: want web rendered again, with no cluster", r)
	}
	if warnings() != 1 || skipped() != 1 {
		t.Errorf("after a change: %d warnings, %v counted; want still 1:\n%s", warnings(), skipped(), logs.String())
	}
	replaceFile(t, filepath.Join(in, "service.yaml"), testutil.TopoService(""))
	tp.WaitCluster(t, "shop.web-80")
	if warnings() != 1 {
		t.Errorf("%d warnings once the Service is read, want 1:\n%s", warnings(), logs.String())
	}
}
