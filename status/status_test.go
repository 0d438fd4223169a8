package status

import (
	"strings"
	"testing"
	"time"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/writer"
)

func TestBoard(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	b := NewBoard(func(c string) string { return "/out/" + c }, "", func() time.Time { return t0 })
	b.Published("a", render.ServiceKey{Namespace: "ns", Name: "a"}, render.HealthCounts{Healthy: 2, Draining: 1}, render.NodeLocalOn)
	b.Kept([]writer.Kept{{Cluster: "a", Version: "v1", Renamed: true}}, t0)
	if err := b.EnvoyApplied(); err == nil || !strings.Contains(err.Error(), "not read back yet") {
		t.Errorf("before any read-back: %v", err)
	}

	// Found right again later: its time stays that of the rename.
	b.Kept([]writer.Kept{{Cluster: "a", Version: "v1"}}, t0.Add(time.Hour))
	s := b.Snapshot()
	if len(s.Clusters) != 1 || s.Clusters[0].Written != t0 || !s.Clusters[0].Renamed || s.Clusters[0].File != "/out/a" ||
		s.Clusters[0].Service != "ns/a" || s.Clusters[0].Endpoints != (Endpoints{Healthy: 2, Draining: 1}) || s.Clusters[0].NodeLocal != "local" {
		t.Fatalf("snapshot %+v", s)
	}

	// A read-back of v1 after v2 was written does not judge v2.
	b.Kept([]writer.Kept{{Cluster: "a", Version: "v2", Renamed: true}}, t0.Add(2*time.Hour))
	b.Report(t0.Add(3*time.Hour), true, []Seen{{Cluster: "a", Expected: "v1", State: StateApplied, Version: "v1"}}, nil)
	if c := b.Snapshot().Clusters[0]; c.Envoy.State != StateUnknown {
		t.Errorf("v2 judged by a read-back of v1: %+v", c.Envoy)
	}
	if err := b.EnvoyApplied(); err == nil || !strings.Contains(err.Error(), "1 not read back yet") {
		t.Errorf("v2 not judged: %v", err)
	}
	b.Report(t0.Add(4*time.Hour), true, []Seen{{Cluster: "a", Expected: "v2", State: StatePending, Version: "v1"}}, nil)
	if err := b.EnvoyApplied(); err == nil || !strings.Contains(err.Error(), "1 pending or rejected") {
		t.Errorf("pending: %v", err)
	}
	b.Report(t0.Add(5*time.Hour), true, []Seen{{Cluster: "a", Expected: "v2", State: StateApplied, Version: "v2"}}, nil)
	if err := b.EnvoyApplied(); err != nil {
		t.Errorf("applied: %v", err)
	}
	if c := b.Snapshot().Clusters[0]; c.Envoy.Since != t0.Add(5*time.Hour) {
		t.Errorf("since %v, want the change to applied", c.Envoy.Since)
	}
	b.Report(t0.Add(6*time.Hour), false, nil, nil)
	if c := b.Snapshot().Clusters[0]; c.Envoy.State != StateUnknown {
		t.Errorf("admin down: %+v", c.Envoy)
	}
	if err := b.EnvoyApplied(); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("admin down: %v", err)
	}
	b.Forget("a")
	if s := b.Snapshot(); len(s.Clusters) != 0 {
		t.Errorf("forgotten: %+v", s.Clusters)
	}
}
