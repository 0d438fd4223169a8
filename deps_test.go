package main

import (
	"os/exec"
	"strings"
	"testing"
)

// edsync does not link gRPC: it speaks no xDS over the network, and gRPC
// (which the generated xDS service packages bring) costs every sidecar
// memory for nothing. writer describes DiscoveryResponse itself for that.
func TestNoGRPCLinked(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for pkg := range strings.Lines(string(out)) {
		if strings.HasPrefix(pkg, "google.golang.org/grpc") {
			t.Fatalf("edsync links %s", strings.TrimSpace(pkg))
		}
	}
}
