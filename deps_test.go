package main

import (
	"os/exec"
	"strings"
	"testing"
)

// What edsync does not link, for the memory of every sidecar (most of it is
// pages of the binary: docs/performance.md, Sidecar memory): gRPC, which
// the generated xDS service packages bring (edsync speaks no xDS over the
// network; writer describes DiscoveryResponse itself), and client-go's
// clientset, whose scheme registers every API group (watch.NewAPI knows
// only the types edsync reads).
func TestLinkedDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for pkg := range strings.Lines(string(out)) {
		pkg = strings.TrimSpace(pkg)
		if strings.HasPrefix(pkg, "google.golang.org/grpc") || strings.HasPrefix(pkg, "k8s.io/client-go/kubernetes") {
			t.Errorf("edsync links %s", pkg)
		}
	}
}
