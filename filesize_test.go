package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edsync/edsync/internal/syncbuf"
	"github.com/edsync/edsync/pipeline"
)

// ips returns n addresses 10.9.x.y.
func ips(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.9.%d.%d", i/250, i%250+1)
	}
	return out
}

// One Service that grows past --max-file-size cannot fill the volume: its
// file is not written (Envoy keeps the old one), the skip names the
// Service and the sizes at Warn and is counted, the other Services' files
// are written, and edsync stays ready. Once the Service fits again, its
// file follows.
func TestOneServiceCannotFillTheVolume(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in, "big.yaml"), manifest("big", ips(3)...))
	replaceFile(t, filepath.Join(in, "small.yaml"), manifest("small", "10.8.0.1"))
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tp := startPipelineLog(t, configForTest(t, "--from-dir", in, "--output-dir", out, "--max-file-size", "8Ki",
		"--debounce", "1ms", "--max-delay", "10ms"), log)
	tp.WaitCluster(t, "default/big/http")
	bigFile, smallFile := filepath.Join(out, "default_big_http", "eds.json"), filepath.Join(out, "default_small_http", "eds.json")
	old, err := os.ReadFile(bigFile)
	if err != nil {
		t.Fatal(err)
	}

	// 200 endpoints: about 30 KiB of JSON. Small's change is written all
	// the same, in that flush or another.
	replaceFile(t, filepath.Join(in, "big.yaml"), manifest("big", ips(200)...))
	replaceFile(t, filepath.Join(in, "small.yaml"), manifest("small", "10.8.0.1", "10.8.0.2"))
	refused := false
	tp.Wait(t, "big's refusal and small's write", func(r pipeline.Report) bool {
		refused = refused || len(r.Result.TooLarge) > 0
		return refused && len(addresses(readAsEnvoy(t, smallFile))) == 2
	})
	if got, _ := os.ReadFile(bigFile); !bytes.Equal(got, old) {
		t.Error("the old file of the Service over the limit changed")
	}
	line := logs.String()
	for _, want := range []string{"level=WARN", "reason=file-too-large", "object=default/big", "default/big/http would be", "over --max-file-size (8192)"} {
		if !strings.Contains(line, want) {
			t.Errorf("no %q in the log:\n%s", want, line)
		}
	}
	checkMetrics(t, "refused", tp.m, map[string]float64{
		`edsync_skipped_objects_total{reason="file-too-large"}`: 1,
		`edsync_cluster_writes_total{result="failed"}`:          0,
	})
	if err := tp.p.Ready(); err != nil {
		t.Errorf("not ready while one Service is over the limit: %v", err)
	}

	replaceFile(t, filepath.Join(in, "big.yaml"), manifest("big", ips(4)...))
	tp.WaitCluster(t, "default/big/http")
	if got := addresses(readAsEnvoy(t, bigFile)); len(got) != 4 {
		t.Errorf("once it fits: %q, want 4 endpoints", got)
	}
}
