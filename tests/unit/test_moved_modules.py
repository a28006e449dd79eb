"""Module paths from before the reorganisation still import, as the module at its new place,
and nothing inside the package leans on them."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import sluice
from sluice._moved import MOVED

SRC = Path(sluice.__file__).parent


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_path_imports_the_module_at_its_new_place(old: str, new: str) -> None:
    moved = importlib.import_module(old)
    assert moved is importlib.import_module(new)
    assert moved.__name__ == new
    assert moved.__spec__ is not None and moved.__spec__.name == new  # not the old spec


def test_patching_through_an_old_path_patches_the_real_module() -> None:
    from unittest import mock

    from sluice.settings import config

    with mock.patch("sluice.config.load_settings") as fake:
        assert config.load_settings is fake


def test_no_module_of_the_package_imports_an_old_path() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            offenders += [f"{path.relative_to(SRC)}: {n}" for n in names if n in MOVED]
    assert offenders == []


def test_every_new_place_exists_and_no_old_file_is_left_behind() -> None:
    for old, new in MOVED.items():
        assert importlib.util.find_spec(new) is not None, new
        relative = old.removeprefix("sluice.").replace(".", "/")
        assert not (SRC / f"{relative}.py").exists(), f"{old} is both moved and present"
