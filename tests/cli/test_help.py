"""Every command's ``--help`` reads naturally: flags are shown without a value type."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from sluice.cli import app


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """``()`` for ``sluice`` itself, then every group and command below it, depth first."""
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


PATHS = command_paths(typer.main.get_command(app))


def help_text(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_walked() -> None:
    assert ("up",) in PATHS
    assert ("chatwoot", "setup") in PATHS
    assert ("dlq", "purge") in PATHS
    assert len(PATHS) >= 17


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(("sluice", *p)))
def test_help_shows_no_bool_metavar(path: tuple[str, ...]) -> None:
    text = help_text(*path)
    assert "Usage:" in text
    assert "--help" in text
    assert "<bool>" not in text


def test_flags_are_listed_and_options_with_values_keep_their_type() -> None:
    up = help_text("up")
    assert "--demo" in up
    assert "--no-demo" in up
    assert "<int" in up  # --processes, --port: a value type is still shown where one is due
    assert "--json" in help_text("status")
    assert "--yes" in help_text("dlq", "purge")
