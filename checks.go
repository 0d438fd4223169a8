package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/writer"
)

// The checks of combinations of settings and of the paths they name, which
// would otherwise fail only once edsync runs (exit 1), or never (a file that
// stays empty): each is a usage error at start.

// checkRun checks what only a run of edsync needs: envoy-config writes no
// file and places no endpoint.
func checkRun(cfg *config) error {
	if cfg.outputDir == "" && !cfg.dryRun {
		return usagef("--output-dir is required (or use --dry-run)")
	}
	if cfg.render.Topology != render.TopologyOff && cfg.render.LocalZone == "" && cfg.nodes.Name == "" {
		return usagef("--topology %s needs the local zone: set --local-zone or --node-name", cfg.render.Topology)
	}
	return nil
}

// checkListedServices refuses a listed cluster whose Service's slices
// edsync never reads, outside --namespace or --service: its file would stay
// empty for good.
func checkListedServices(cfg *config, fc *fileConfig) error {
	for i, spec := range cfg.render.Clusters {
		where := fmt.Sprintf("config file %s: clusters[%d]", fc.path, i)
		if len(cfg.namespaces) > 0 && !slices.Contains(cfg.namespaces, spec.Service.Namespace) {
			return usagef("%s: Service %s is outside the watched namespaces (namespace: %s), so its file would stay empty",
				where, spec.Service, strings.Join(cfg.namespaces, ","))
		}
		if len(cfg.services) > 0 && !slices.Contains(cfg.services, spec.Service) {
			return usagef("%s: Service %s is not in the service list (service:), so its file would stay empty", where, spec.Service)
		}
	}
	return nil
}

// checkPaths checks the source and output paths as they are at start. A
// --from-dir is a folder of manifests or one manifest file (as kubectl -f
// takes either); a missing --output-dir is created at start (claimOutputDir),
// but a path that is something else cannot be one.
func checkPaths(cfg *config, run bool) error {
	var src fs.FileInfo
	if cfg.fromDir != "" {
		var err error
		src, err = os.Stat(cfg.fromDir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return usagef("--from-dir %s: no such file or folder", cfg.fromDir)
		case err != nil:
			return usagef("--from-dir: %v", err)
		case !src.IsDir() && !src.Mode().IsRegular():
			return usagef("--from-dir %s is %s, not a folder or a file of manifests", cfg.fromDir, fileKind(src.Mode()))
		}
	}
	if err := checkCDSFile(cfg, run); err != nil {
		return err
	}
	if run && !cfg.dryRun {
		out, err := os.Stat(cfg.outputDir)
		switch {
		case errors.Is(err, syscall.ENOTDIR):
			// A parent is a file: no folder can be made there.
			return usagef("--output-dir %s: a parent of it is not a folder", cfg.outputDir)
		case err != nil:
			// Missing: created at start. Unreadable: the writer says why.
		case !out.IsDir():
			return usagef("--output-dir %s is %s, not a folder", cfg.outputDir, fileKind(out.Mode()))
		case src != nil && os.SameFile(src, out):
			// edsync would read each file it writes as a manifest.
			return usagef("--output-dir %s is the --from-dir folder: give each its own", cfg.outputDir)
		}
	}
	return nil
}

// fileKind names what a path that is not a folder is, for an error message.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a file"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// checkCDSFile checks where the CDS file goes. Its clusters name their EDS
// files by path, which Envoy resolves from its own working folder: the
// output folder must be absolute. In the output folder, the CDS file must
// not have a name a cluster's file could have, or a cluster of that name
// would overwrite it (and the writer would take it for a cluster's file).
func checkCDSFile(cfg *config, run bool) error {
	if cfg.cdsFile == "" || !run {
		return nil
	}
	if !filepath.IsAbs(cfg.outputDir) {
		return usagef("--cds-file: --output-dir must be an absolute path: the clusters in the CDS file name their EDS files by it")
	}
	if !filepath.IsAbs(cfg.cdsFile) {
		return usagef("--cds-file must be an absolute path, as Envoy's bootstrap names it")
	}
	base := filepath.Base(cfg.cdsFile)
	inOutput := filepath.Clean(filepath.Dir(cfg.cdsFile)) == filepath.Clean(cfg.outputDir)
	if inOutput {
		if cluster, ok := cfg.layout.Cluster(base, cfg.format); ok {
			kind := "folder"
			if cfg.layout == writer.LayoutFlat {
				kind = "file"
			}
			return usagef("--cds-file %s: in the output folder, that is the %s of a cluster named %q; "+
				"use a name cluster files never have (with a '+', as cds+clusters%s) or another folder", cfg.cdsFile, kind, cluster, cfg.format.Ext())
		}
	}
	if cfg.dryRun {
		return nil
	}
	switch fi, err := os.Stat(filepath.Dir(cfg.cdsFile)); {
	case errors.Is(err, fs.ErrNotExist) && inOutput:
		// The output folder is created at start.
	case err != nil:
		return usagef("--cds-file %s: its folder: %v", cfg.cdsFile, err)
	case !fi.IsDir():
		return usagef("--cds-file %s: %s is not a folder", cfg.cdsFile, filepath.Dir(cfg.cdsFile))
	}
	if fi, err := os.Stat(cfg.cdsFile); err == nil && !fi.Mode().IsRegular() {
		kind := fileKind(fi.Mode())
		if fi.IsDir() {
			kind = "a folder"
		}
		return usagef("--cds-file %s is %s, not a file", cfg.cdsFile, kind)
	}
	return nil
}
