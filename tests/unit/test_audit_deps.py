"""scripts/audit-deps.sh, with a stand-in for pip-audit that returns canned reports: the
verdict (exit status) and the summary line for every way an audit can turn out. The real
pip-audit runs in `make audit`; these tests need no network."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "audit-deps.sh"
LOCK = "# comment\nalpha==1.0\nbeta==2.0\ngamma==3.0\n"

FAKE = """\
import json, os, sys
with open(os.environ["FAKE_ARGV"], "w") as log:
    json.dump(sys.argv[1:], log)
report = os.environ.get("FAKE_REPORT")
if report:
    with open(sys.argv[sys.argv.index("--output") + 1], "w") as out:
        out.write(report)
sys.stderr.write(os.environ.get("FAKE_STDERR", ""))
sys.exit(int(os.environ.get("FAKE_STATUS", "0")))
"""


def skipped(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "skip_reason": f"Dependency not found on PyPI and could not be audited: {name} (1.0)",
    }


def clean(name: str) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "vulns": []}


def run(
    tmp_path: Path, report: dict[str, Any] | None, *, status: int = 0, stderr: str = ""
) -> tuple[int, str, list[str]]:
    fake = tmp_path / "pip-audit"
    fake.write_text(f"#!{sys.executable}\n{FAKE}")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    lock = tmp_path / "requirements.lock"
    lock.write_text(LOCK)
    argv_log = tmp_path / "argv.json"
    env = {
        **os.environ,
        "PIP_AUDIT": str(fake),
        "AUDIT_PYTHON": sys.executable,
        "AUDIT_LOCK": str(lock),
        "FAKE_ARGV": str(argv_log),
        "FAKE_REPORT": json.dumps(report) if report is not None else "",
        "FAKE_STATUS": str(status),
        "FAKE_STDERR": stderr,
    }
    done = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, done.stdout + done.stderr, json.loads(argv_log.read_text())


def test_pip_audit_gets_the_lock_file_and_the_offline_flags(tmp_path: Path) -> None:
    _, _, argv = run(tmp_path, {"dependencies": [clean("alpha")]})
    assert argv[argv.index("-r") + 1] == str(tmp_path / "requirements.lock")
    for flag in ("--no-deps", "--disable-pip"):
        assert flag in argv
    assert argv[argv.index("--progress-spinner") + 1] == "off"
    assert argv[argv.index("--format") + 1] == "json"


def test_everything_skipped_is_a_loud_warning_not_a_failure(tmp_path: Path) -> None:
    report = {"dependencies": [skipped("alpha"), skipped("beta"), skipped("gamma")]}
    code, out, _ = run(tmp_path, report)
    assert code == 0
    assert (
        "dependency audit: 0 of 3 packages could be audited (vulnerability service unreachable)"
        in out.splitlines()
    )


def test_service_unreachable_without_a_report_counts_the_lock(tmp_path: Path) -> None:
    error = (
        "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.osv.dev', "
        "port=443): Max retries exceeded"
    )
    code, out, _ = run(tmp_path, None, status=1, stderr=error)
    assert code == 0
    assert (
        "dependency audit: 0 of 3 packages could be audited (vulnerability service unreachable)"
        in out.splitlines()
    )


def test_a_known_vulnerability_fails(tmp_path: Path) -> None:
    vuln = {"id": "PYSEC-2099-1", "fix_versions": ["2.1"], "aliases": ["CVE-2099-0001"]}
    report = {
        "dependencies": [
            clean("alpha"),
            {"name": "beta", "version": "2.0", "vulns": [vuln]},
            skipped("gamma"),
        ]
    }
    code, out, _ = run(tmp_path, report, status=1)
    assert code == 1
    assert "VULNERABLE beta 2.0: PYSEC-2099-1 (CVE-2099-0001); fix: 2.1" in out
    assert "1 known vulnerabilities in 1 packages (2 of 3 packages audited, 1 skipped)" in out


def test_all_audited_and_clean(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, {"dependencies": [clean("alpha"), clean("beta")]})
    assert code == 0
    assert "dependency audit: 2 of 2 packages audited, no known vulnerabilities" in out


def test_partly_skipped_says_which(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, {"dependencies": [clean("alpha"), skipped("gamma")]})
    assert code == 0
    assert "1 of 2 packages audited, no known vulnerabilities; 1 skipped" in out
    assert out.rstrip().endswith("gamma")


@pytest.mark.parametrize("stderr", ["ERROR: invalid requirement: 'alpha=='", ""])
def test_any_other_pip_audit_failure_fails(tmp_path: Path, stderr: str) -> None:
    code, out, _ = run(tmp_path, None, status=1, stderr=stderr)
    assert code == 1
    assert "pip-audit failed (exit 1) without a report" in out
