#!/usr/bin/env bash
# Fetch promtool (Debian's `prometheus` package) and amtool (`prometheus-alertmanager`)
# into DEST without installing the packages (no service, no system change), so the tests
# check the shipped alert rules and Alertmanager configuration with the projects' own
# parsers. Best effort: without apt the tests fall back to their YAML checks and say so.
set -u
dest=${1:?usage: fetch-promtool.sh DEST}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
have_apt=1
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  have_apt=0
fi
updated=0

# fetch TOOL PACKAGE: extract /usr/bin/TOOL of PACKAGE into $dest unless it is there.
fetch() {
  local tool=$1 package=$2
  if command -v "$tool" >/dev/null 2>&1 || [ -x "$dest/$tool" ]; then return 0; fi
  if [ "$have_apt" = 0 ]; then
    echo "$tool: no apt here; the tests use their YAML checks only"
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  (
    cd "$tmp" || exit 0
    if ! apt-get download "$package" >/dev/null 2>&1; then
      if [ "$updated" = 0 ]; then apt-get update -qq >/dev/null 2>&1; fi
      apt-get download "$package" >/dev/null 2>&1 || {
        echo "$tool: package $package not available; the tests use their YAML checks only"
        exit 0
      }
    fi
    dpkg-deb -x "$package"_*.deb extracted && cp "extracted/usr/bin/$tool" "$dest/$tool"
    echo "$tool: $("$dest/$tool" --version 2>&1 | head -1)"
  )
  updated=1
  rm -rf "$tmp"
}

fetch promtool prometheus
fetch amtool prometheus-alertmanager
exit 0
