#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager for the end-to-end
# tests (test/e2e) from the Go module proxy, and caches them outside the repo:
#
#   ${EDSYNC_K8S_CACHE:-$HOME/.cache/edsync-k8s}/<hash>/bin/
#
# <hash> covers everything that decides the binaries: the two wrapper modules'
# go.mod/go.sum, the link flags and the Go version. A warm cache returns at once; a
# cold one takes 7 minutes on 2 idle cores, 17 on busy ones (2.7 GB peak RSS,
# ~5 GB GOCACHE), printing progress on stderr at least every 20 s.
#
# The last line on stdout is the bin folder; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

# Kubernetes stamps its version at link time; without it the binaries say
# v0.0.0 and clients warn about skew.
k8s_version=v1.37.2
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean"

# The cache key is what decides the binaries: the modules, the link flags and
# the Go version (not the rest of this script, so that changing how progress
# is printed does not cost every machine a rebuild).
hash=$({
  sha256sum go.mod go.sum etcd/go.mod etcd/go.sum
  echo "$ldflags CGO_ENABLED=0 $(go env GOVERSION)"
} | sha256sum | cut -c1-16)
root="${EDSYNC_K8S_CACHE:-$HOME/.cache/edsync-k8s}/$hash"
bin="$root/bin"

# bin/ only ever appears by a rename of a finished build, so its presence
# means all three binaries are there.
if [ -d "$bin" ]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$root"
# Two test runs starting at once on a cold machine would otherwise both pay
# the 7 minutes; the second waits here and then finds bin/.
exec 9>"$root/.lock"
flock 9
if [ -d "$bin" ]; then
  echo "$bin"
  exit 0
fi

tmp="$root/bin.partial"
rm -rf "$tmp"
mkdir -p "$tmp"

# progress WHAT TOTAL reads `go build -v` output (one package path per line
# as each is compiled; anything else is an error message, passed through)
# and prints a line at most every 20 s (EDSYNC_K8S_PROGRESS_EVERY), so a
# person watching a cold build sees it move: a silent 15 minutes looks like
# a hang.
progress() {
  local what=$1 total=$2 n=0 last now
  last=$(date +%s)
  while IFS= read -r line; do
    if [[ $line =~ ^[A-Za-z0-9._~/+-]+$ ]]; then
      n=$((n + 1))
      now=$(date +%s)
      if (( now - last >= ${EDSYNC_K8S_PROGRESS_EVERY:-20} )); then
        last=$now
        echo "edsync-k8s: $what: $n of about $total packages compiled, $(( (now - start) / 60 ))m$(( (now - start) % 60 ))s" >&2
      fi
    else
      echo "$line" >&2
    fi
  done
}

# count PKG... is how many packages a build of PKG... compiles at most (its
# dependencies, the standard library included).
count() {
  go list -deps "$@" 2>/dev/null | wc -l
}

# nice: other work (benchmarks) shares these 2 cores. CGO off: static
# binaries, as Kubernetes builds its own server binaries.
start=$(date +%s)
echo "edsync-k8s: building etcd, kube-apiserver and kube-controller-manager into $tmp" >&2
echo "edsync-k8s: once per machine: 7 to 17 minutes on 2 idle cores (up to 30 when busy), about 5 GB of Go build cache" >&2
(
  cd etcd
  export CGO_ENABLED=0
  nice -n 19 go build -v -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 2>&1 |
    progress etcd "$(count go.etcd.io/etcd/server/v3)"
)
echo "edsync-k8s: etcd built after $(( $(date +%s) - start ))s; now kube-apiserver and kube-controller-manager" >&2
k8s_cmds=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
CGO_ENABLED=0 nice -n 19 go build -v -ldflags "$ldflags" -o "$tmp/" "${k8s_cmds[@]}" 2>&1 |
  progress "kube-apiserver, kube-controller-manager" "$(CGO_ENABLED=0 count "${k8s_cmds[@]}")"

{
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start ))s with $(go version)"
  echo "kubernetes $k8s_version, etcd $(cd etcd && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
} > "$tmp/BUILD-INFO"
mv -T "$tmp" "$bin"
echo "edsync-k8s: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
