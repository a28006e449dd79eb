"""`sluice validate` with a priority rules file: a bad file stops it (and `sluice serve`,
which loads the same settings) with the file and line; a good one is reported with what
sets the deadlines."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sluice.cli import app

from .test_validate import outcomes, validate


def test_a_bad_rules_file_refuses_with_its_line(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: vip\n    when: {contact: {tier: vip}}\n    class: urgnt\n")
    result = CliRunner().invoke(
        app, ["validate"], env={"REDIS_URL": redis_url, "SLUICE_PRIORITY_RULES": str(rules)}
    )
    assert result.exit_code != 0
    assert f"{rules}:4: unknown class 'urgnt'" in result.output.replace("\n", ""), result.output


def test_the_deadline_sources_are_reported(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: vip\n    when: {contact: {tier: vip}}\n    class: urgent\n")
    env = {"REDIS_URL": redis_url, "SLUICE_PRIORITY_RULES": str(rules),
           "SLUICE_DEADLINE_FROM_SLA": "true"}  # fmt: skip
    code, report = validate(env)
    assert code == 0, report
    assert outcomes(report)["deadlines"] == "pass"
    (detail,) = [c["detail"] for c in report["checks"] if c["name"] == "deadlines"]  # type: ignore[union-attr]
    assert "SLA policies on" in detail and f"1 rules from {rules} (vip)" in detail
