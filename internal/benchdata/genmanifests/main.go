// Command genmanifests writes the manifest workload of docs/performance.md
// into a folder: `go run ./internal/benchdata/genmanifests DIR`.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/edsync/edsync/internal/benchdata"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: genmanifests DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "genmanifests:", err)
		os.Exit(1)
	}
	for f := range benchdata.Files {
		data, err := benchdata.ManifestList(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("slices-%03d.json", f)), data, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "genmanifests:", err)
			os.Exit(1)
		}
	}
}
