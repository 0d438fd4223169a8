// Command edsync keeps Envoy's file-based EDS in step with Kubernetes
// EndpointSlices: it watches the slices of the chosen Services, renders one
// ClusterLoadAssignment per cluster and writes each atomically to the file
// that Envoy's path_config_source points at.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}
