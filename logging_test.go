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

// One failed write is reported once, at Error, with its path and reason.
func TestFailedWriteIsReportedOnce(t *testing.T) {
	out := t.TempDir()
	target := filepath.Join(out, "shop_web_http.json")
	if err := os.Mkdir(target, 0o755); err != nil {
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
}
