package readback

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edsync/edsync/status"
	"github.com/edsync/edsync/writer"
)

// BenchmarkPoll is edsync's side of one read-back of n clusters: the
// request(s), parsing Envoy's answer, judging every file, recording it on
// the Board. Envoy's answers are canned (the bodies Envoy gives, sized as
// its: a text readout per cluster, and, when a file is not applied, two
// refusal counters per cluster), so that only edsync's work is timed.
// applied: every file applied, one request per poll; pending: one file
// not applied, so the counters are asked for too.
func BenchmarkPoll(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, mode := range []string{"applied", "pending"} {
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) { benchPoll(b, n, mode == "pending") })
		}
	}
}

func benchPoll(b *testing.B, n int, pending bool) {
	board := status.NewBoard(func(c string) string { return "/var/run/edsync/" + c + "/eds.json" }, "", nil)
	kept := make([]writer.Kept, n)
	var texts, counters strings.Builder
	texts.WriteString(`{"stats":[`)
	counters.WriteString(`{"stats":[`)
	for i := range kept {
		name := fmt.Sprintf("ns-%d/svc-%d/http", i%100, i)
		v := fmt.Sprintf("%016x", i)
		kept[i] = writer.Kept{Cluster: name, Version: v, Renamed: true}
		if pending && i == 0 {
			v = "0000000000000000" + "x"
		}
		if i > 0 {
			texts.WriteByte(',')
			counters.WriteByte(',')
		}
		fmt.Fprintf(&texts, `{"name":"cluster.%s.version_text","value":"%s"}`, name, v)
		fmt.Fprintf(&counters, `{"name":"cluster.%s.update_failure","value":0},{"name":"cluster.%s.update_rejected","value":0}`, name, name)
	}
	texts.WriteString("]}")
	counters.WriteString("]}")
	board.Kept(kept, time.Now())
	textBody, counterBody := []byte(texts.String()), []byte(counters.String())
	var requests, bytes int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := textBody
		if r.URL.Query().Get("type") == "Counters" {
			body = counterBody
		}
		requests++
		bytes += len(body)
		w.Write(body)
	}))
	defer srv.Close()
	admin, _ := url.Parse(srv.URL)
	p, err := New(Options{Admin: admin, Board: board})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Poll(b.Context()); err != nil {
		b.Fatal(err)
	}
	requests, bytes = 0, 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := p.Poll(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(requests)/float64(b.N), "requests/op")
	b.ReportMetric(float64(bytes)/float64(b.N), "response-bytes/op")
}
