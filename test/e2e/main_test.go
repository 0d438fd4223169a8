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
	// The binaries first, with no deadline of their own: a cold build takes
	// 7 to 30 minutes on 2 cores depending on what else runs, and only go
	// test's -timeout bounds it. The control plane's start deadline below
	// then counts only the start itself.
	binDir, err := harness.Binaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: Kubernetes binaries:", err)
		return 1
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := harness.Start(ctx, harness.Options{BinDir: binDir})
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
