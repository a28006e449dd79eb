#!/usr/bin/env bash
# Fetch promtool from Debian's `prometheus` package into DEST without installing the
# package (no service, no system change), so the tests can check the shipped alert rules
# with Prometheus's own parser. Best effort: without apt the tests fall back to their
# YAML schema checks and say so.
set -u
dest=${1:?usage: fetch-promtool.sh DEST}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
if command -v promtool >/dev/null 2>&1 || [ -x "$dest/promtool" ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "promtool: no apt here; rule files get the YAML schema checks only"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 0
if ! apt-get download prometheus >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1
  apt-get download prometheus >/dev/null 2>&1 || {
    echo "promtool: package not available; rule files get the YAML schema checks only"
    exit 0
  }
fi
dpkg-deb -x prometheus_*.deb extracted && cp extracted/usr/bin/promtool "$dest/promtool"
echo "promtool: $("$dest/promtool" --version 2>&1 | head -1)"
