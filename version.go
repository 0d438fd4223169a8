package main

import (
	"runtime/debug"
)

// version is set at link time with -ldflags "-X main.version=..." (the
// Dockerfile does: its build context has no .git, so the build info below
// would know no revision).
var version = ""

// buildVersion is the version --version, the edsync_build_info metric and
// the API client's User-Agent report.
func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(version, bi)
}

// versionFrom is the version to report: the one set at link time, else the
// main module's version from the build info (a release for `go install
// ...@v1.2.3`, a pseudo-version with the commit for `go build` in a git
// checkout, +dirty if it had local changes), else "dev" with the commit and
// its state if the build recorded them. A build with no VCS information at
// all (-buildvcs=false, `go run`, a folder without .git) is plain "dev".
func versionFrom(linked string, bi *debug.BuildInfo) string {
	if linked != "" {
		return linked
	}
	if bi == nil {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	// Semantic-version build metadata: a token, as a User-Agent needs.
	v := "dev+" + rev[:min(len(rev), 12)]
	if modified {
		v += ".dirty"
	}
	return v
}
