#!/usr/bin/env bash
# Prints the path of a promtool, fetching it on first use: promtool comes in
# Debian's prometheus package, which is downloaded (not installed: no
# service is set up, nothing outside the cache is touched) and unpacked into
#
#   ${EDSYNC_TOOLS_CACHE:-$HOME/.cache/edsync-tools}/promtool/promtool
#
# About 20 MB, a few seconds cold. $PROMTOOL, when set, is used instead.
# Used by test/e2e (TestPrometheusRules) and .ci/run.
set -euo pipefail

if [ -n "${PROMTOOL:-}" ]; then
  echo "$PROMTOOL"
  exit 0
fi
root="${EDSYNC_TOOLS_CACHE:-$HOME/.cache/edsync-tools}/promtool"
if [ -x "$root/promtool" ]; then
  echo "$root/promtool"
  exit 0
fi
mkdir -p "$(dirname "$root")"
tmp=$(mktemp -d "$(dirname "$root")/promtool.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# A machine whose package lists were never fetched knows no prometheus
# package: fetch them once (as root) and try again.
if ! apt-get download prometheus >&2; then
  apt-get update >&2
  apt-get download prometheus >&2
fi
dpkg -x prometheus_*.deb x
mkdir bin
mv x/usr/bin/promtool bin/promtool
bin/promtool --version >&2
# Appears whole, by a rename: two runs at once both fetch, one wins.
mv -T bin "$root" 2>/dev/null || true
echo "$root/promtool"
