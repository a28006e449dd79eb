"""The Lua loader: includes expanded recursively, each file once, dependencies first."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.redis.lua import LuaIncludeError, assemble


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_nested_includes_are_expanded_once_each_dependencies_first(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "lib/keys.lua": "local K = 1\n",
            "lib/a.lua": "--!include lib/keys.lua\nlocal function a() return K end\n",
            "lib/b.lua": "--!include lib/keys.lua\n--!include lib/a.lua\nlocal function b() end\n",
            "s.lua": "-- s.lua: header\n--!include lib/b.lua\n--!include lib/a.lua\nreturn b()\n",
        },
    )
    assert assemble(root, "s.lua").splitlines() == [
        "-- s.lua: header",
        "local K = 1",
        "local function a() return K end",
        "local function b() end",
        "return b()",
    ]


def test_an_include_path_is_one_file_however_it_is_spelt(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {"lib/x.lua": "local x = 1\n", "s.lua": "--!include lib/x.lua\n--!include lib/./x.lua \n"},
    )
    assert assemble(root, "s.lua") == "local x = 1\n"


def test_a_cycle_is_named_in_the_error(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "lib/a.lua": "--!include lib/b.lua\n",
            "lib/b.lua": "--!include lib/a.lua\n",
            "s.lua": "--!include lib/a.lua\n",
        },
    )
    with pytest.raises(LuaIncludeError, match=r"include cycle: lib/a\.lua -> lib/b\.lua -> lib/a"):
        assemble(root, "s.lua")


def test_a_script_including_itself_is_a_cycle(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"s.lua": "--!include s.lua\n"})
    with pytest.raises(LuaIncludeError, match=r"include cycle: s\.lua -> s\.lua"):
        assemble(root, "s.lua")


def test_a_missing_file_names_who_included_it(tmp_path: Path) -> None:
    root = _tree(
        tmp_path, {"lib/a.lua": "--!include lib/gone.lua\n", "s.lua": "--!include lib/a.lua\n"}
    )
    with pytest.raises(
        LuaIncludeError, match=r"lib/gone\.lua does not exist \(include chain: s\.lua -> lib/a\.lua"
    ):
        assemble(root, "s.lua")


@pytest.mark.parametrize("path", ["../x.lua", "/etc/x.lua", ""])
def test_a_path_outside_the_lua_folder_is_refused(tmp_path: Path, path: str) -> None:
    root = _tree(tmp_path, {"s.lua": f"--!include {path}\n"})
    with pytest.raises(LuaIncludeError, match="must be relative to lua/"):
        assemble(root, "s.lua")
