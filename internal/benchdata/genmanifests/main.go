// Command genmanifests writes the manifest workload of docs/performance.md
// into a folder: `go run ./internal/benchdata/genmanifests [-shape
// controller|plain] DIR`; the default shape is what the EndpointSlice
// controller writes.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/edsync/edsync/internal/benchdata"
)

func main() {
	shapeName := flag.String("shape", "controller", "endpoints as the EndpointSlice controller writes them (controller) or lean (plain)")
	flag.Parse()
	shape := benchdata.Controller
	switch *shapeName {
	case "controller":
	case "plain":
		shape = benchdata.Plain
	default:
		fmt.Fprintf(os.Stderr, "genmanifests: -shape %q: want controller or plain\n", *shapeName)
		os.Exit(2)
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: genmanifests [-shape controller|plain] DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "genmanifests:", err)
		os.Exit(1)
	}
	for f := range benchdata.Files {
		data, err := benchdata.ManifestList(f, shape)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("slices-%03d.json", f)), data, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "genmanifests:", err)
			os.Exit(1)
		}
	}
}
