#!/usr/bin/env bash
# Fetch axe-core (the accessibility engine the dashboard's browser test injects into its
# pages) from the npm registry into DEST/axe, pinned. Best effort like the other fetches:
# without npm or the registry the audit in tests/dashboard/test_dashboard_browser.py
# skips and says why; this script never fails the build by itself.
set -u
AXE_VERSION=4.14.1
dest=${1:?usage: fetch-axe.sh DEST}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
file="$dest/axe/node_modules/axe-core/axe.min.js"
if [ -f "$file" ] && grep -q "\"version\": \"$AXE_VERSION\"" "$dest/axe/node_modules/axe-core/package.json" 2>/dev/null; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "axe-core: no npm here; the dashboard's accessibility audit will skip"
  exit 0
fi
if npm install --silent --no-audit --no-fund --prefix "$dest/axe" "axe-core@$AXE_VERSION" >/dev/null 2>&1 \
  && [ -f "$file" ]; then
  echo "axe-core: $AXE_VERSION"
else
  echo "axe-core: install failed; the dashboard's accessibility audit will skip"
fi
exit 0
