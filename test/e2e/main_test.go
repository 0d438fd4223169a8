package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/edsync/edsync/test/e2e/harness"
)

// cluster is the control plane every scenario shares. Scenarios keep apart
// by using their own Services (and namespaces), and their own output folders.
var cluster *harness.Cluster

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

// run is separate from TestMain so that its deferred Stop runs before
// os.Exit. A panicking test does not come back here; its processes die with
// the test binary (Pdeathsig, see harness.Proc.Start).
func run(m *testing.M) int {
	if testing.Short() {
		fmt.Println("e2e: -short: not starting a control plane, skipping every scenario")
		return 0
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // a cold build included
	defer cancel()
	c, err := harness.Start(ctx, harness.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the control plane:", err)
		return 1
	}
	cluster = c
	fmt.Fprintf(os.Stderr, "e2e: control plane up in %v; certificates, kubeconfigs and logs in %s\n",
		time.Since(start).Round(time.Millisecond), c.Dir)

	code := m.Run()

	c.Stop()
	// The folder holds etcd's data (about 200 MB with its preallocated
	// log); keep it only when someone will read the logs.
	switch {
	case code != 0:
		fmt.Fprintf(os.Stderr, "e2e: failed; logs kept in %s\n", c.Dir)
	case os.Getenv("EDSYNC_E2E_KEEP") != "":
		fmt.Fprintf(os.Stderr, "e2e: EDSYNC_E2E_KEEP: logs kept in %s\n", c.Dir)
	default:
		os.RemoveAll(c.Dir)
	}
	return code
}
