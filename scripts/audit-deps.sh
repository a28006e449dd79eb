#!/usr/bin/env bash
# Audit the pinned dependencies (requirements.lock) for known vulnerabilities with pip-audit.
#
# Why a wrapper: when the vulnerability service cannot be reached (offline, or an index that
# answers 404 for PyPI's per-version JSON), pip-audit reports every package as "could not be
# audited" and still exits 0, so a green run would silently mean "nothing was checked". This
# script counts audited vs skipped packages and says so; it fails (exit 1) on a known
# vulnerability, and only warns (exit 0) when nothing could be audited, so the test command
# still works offline.
#
# Arguments are passed on to pip-audit (e.g. `-s osv`, `--ignore-vuln ID`). Environment:
# PIP_AUDIT (default .venv/bin/pip-audit), AUDIT_PYTHON (default .venv/bin/python),
# AUDIT_LOCK (default requirements.lock), AUDIT_TIMEOUT (seconds, default 15).
set -euo pipefail
cd "$(dirname "$0")/.."

pip_audit="${PIP_AUDIT:-.venv/bin/pip-audit}"
python="${AUDIT_PYTHON:-.venv/bin/python}"
lock="${AUDIT_LOCK:-requirements.lock}"

report="$(mktemp)"
errors="$(mktemp)"
trap 'rm -f "$report" "$errors"' EXIT

set +e
"$pip_audit" -r "$lock" --no-deps --disable-pip --progress-spinner off \
    --timeout "${AUDIT_TIMEOUT:-15}" --format json --output "$report" "$@" 2>"$errors"
status=$?
set -e

exec "$python" - "$report" "$errors" "$status" "$lock" <<'PY'
"""Summarise pip-audit's JSON report; the exit status is the audit's verdict."""
import json
import re
import sys

report_path, errors_path, status, lock = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
errors = open(errors_path, encoding="utf-8", errors="replace").read()
UNREACHABLE = re.compile(
    r"ConnectionError|Max retries exceeded|NameResolutionError|Failed to resolve|"
    r"Temporary failure in name resolution|Network is unreachable|timed out|"
    r"Connection refused|ConnectTimeout|ReadTimeout|SSLError",
    re.IGNORECASE,
)


def warn_unreachable(total: int, detail: str) -> None:
    bar = "!" * 78
    print(bar)
    print(
        f"dependency audit: 0 of {total} packages could be audited "
        "(vulnerability service unreachable)"
    )
    print(f"  {detail}")
    print("  Nothing was checked for known vulnerabilities: run `make audit` where the")
    print("  vulnerability service is reachable.")
    print(bar)


try:
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
except (OSError, ValueError):
    report = None

if report is None:
    # pip-audit gave up without a report: unreachable service, or a real problem.
    pinned = [
        line for line in open(lock, encoding="utf-8")
        if line.strip() and not line.lstrip().startswith(("#", "-"))
    ]
    if UNREACHABLE.search(errors):
        last = errors.strip().splitlines()[-1] if errors.strip() else ""
        warn_unreachable(len(pinned), last[:300])
        sys.exit(0)
    sys.stderr.write(errors)
    print(f"dependency audit: pip-audit failed (exit {status}) without a report")
    sys.exit(1)

deps = report.get("dependencies", [])
skipped = [d for d in deps if d.get("skip_reason")]
vulnerable = [d for d in deps if d.get("vulns")]
audited = len(deps) - len(skipped)

for dep in vulnerable:
    for vuln in dep["vulns"]:
        fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
        aliases = ", ".join(vuln.get("aliases") or [])
        also = f" ({aliases})" if aliases else ""
        print(f"VULNERABLE {dep['name']} {dep.get('version', '?')}: {vuln['id']}{also}; fix: {fixes}")

if vulnerable:
    count = sum(len(d["vulns"]) for d in vulnerable)
    print(
        f"dependency audit: FAILED, {count} known vulnerabilities in {len(vulnerable)} "
        f"packages ({audited} of {len(deps)} packages audited, {len(skipped)} skipped)"
    )
    sys.exit(1)

if deps and audited == 0:
    warn_unreachable(len(deps), skipped[0]["skip_reason"])
    sys.exit(0)

if skipped:
    names = ", ".join(d["name"] for d in skipped)
    print(
        f"dependency audit: {audited} of {len(deps)} packages audited, no known "
        f"vulnerabilities; {len(skipped)} skipped (could not be audited): {names}"
    )
    sys.exit(0)

if status != 0:
    sys.stderr.write(errors)
    print(f"dependency audit: pip-audit failed (exit {status})")
    sys.exit(1)

print(f"dependency audit: {audited} of {len(deps)} packages audited, no known vulnerabilities")
PY
