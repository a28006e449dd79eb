"""The Lua loader and the scripts it assembles.

The loader: includes expanded recursively, each file once, dependencies first, clear errors.
The scripts: each assembles, compiles in Redis, defines every function it calls and includes
no function it does not call; includes hold one function each and share no mutable state.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from importlib import resources
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sluice.broker.assignment import ASSIGNMENT_SCRIPTS
from sluice.broker.breaker import BREAKER_SCRIPTS
from sluice.monitor.leader import LEASE_SCRIPTS
from sluice.queue.scripts import SCRIPT_NAMES
from sluice.redis.lua import INCLUDE, LuaIncludeError, assemble, script_source


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
            "lib/b.lua": "-- lib/b.lua\n--!include lib/keys.lua\n--!include lib/a.lua\n"
            "local function b() end\n",
            "s.lua": "-- s.lua: header\n--!include lib/b.lua\n--!include lib/a.lua\nreturn b()\n",
        },
    )
    assert assemble(root, "s.lua").splitlines() == [
        "local K = 1",
        "local function a() return K end",
        "-- lib/b.lua",  # a file's text stays in one piece, after what it includes
        "local function b() end",
        "-- s.lua: header",
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


# --- The scripts Sluice ships --------------------------------------------------------------

PACKAGES = {
    "sluice.queue": SCRIPT_NAMES,
    "sluice.broker": (*ASSIGNMENT_SCRIPTS, *BREAKER_SCRIPTS),
    "sluice.monitor": LEASE_SCRIPTS,
}
SCRIPTS = [(package, name) for package, names in PACKAGES.items() for name in names]
IDS = [f"{package}:{name}" for package, name in SCRIPTS]

# Functions a script may call without defining them: Lua's and Redis's own.
BUILTINS = {"tonumber", "tostring", "unpack", "ipairs", "pairs", "next", "error", "type", "pcall"}
KEYWORDS = {"function", "if", "elseif", "while", "return", "and", "or", "not", "in", "until"}


def _code(text: str) -> str:
    """``text`` without comments and string literals (what the checks below look at)."""
    text = re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", "''", text)
    return re.sub(r"--.*", "", text)


def _lua_root(package: str) -> Path:
    return Path(str(resources.files(package) / "lua"))


def _includes(package: str) -> list[Path]:
    return sorted((_lua_root(package) / "lib").glob("*.lua"))


@pytest.mark.parametrize(("package", "name"), SCRIPTS, ids=IDS)
def test_every_script_assembles_without_include_lines(package: str, name: str) -> None:
    source = script_source(package, name)
    assert INCLUDE not in source


@pytest.mark.parametrize(("package", "name"), SCRIPTS, ids=IDS)
async def test_every_script_compiles_in_redis(
    redis_client: aioredis.Redis, package: str, name: str
) -> None:
    """SCRIPT LOAD compiles the assembled text as one chunk: a syntax error, or more than
    Lua's 200 locals in the main chunk, fails here rather than on a live call."""
    source = script_source(package, name)
    sha = await redis_client.script_load(source)
    assert (sha.decode() if isinstance(sha, bytes) else sha) == hashlib.sha1(
        source.encode()
    ).hexdigest()


@pytest.mark.parametrize(("package", "name"), SCRIPTS, ids=IDS)
def test_every_script_includes_only_functions_it_uses(package: str, name: str) -> None:
    code = _code(script_source(package, name))
    defined = re.findall(r"\blocal function (\w+)", code)
    assert len(defined) == len(set(defined)), "a function is defined twice"
    unused = [f for f in defined if len(re.findall(rf"\b{f}\b", code)) < 2]
    assert unused == []


@pytest.mark.parametrize(("package", "name"), SCRIPTS, ids=IDS)
def test_every_script_defines_every_function_it_calls(package: str, name: str) -> None:
    code = _code(script_source(package, name))
    defined = set(re.findall(r"\blocal function (\w+)", code))
    called = set(re.findall(r"(?<![\w.:])([A-Za-z_]\w*)\s*\(", code)) - KEYWORDS
    assert called - defined - BUILTINS == set()


@pytest.mark.parametrize(("package", "name"), SCRIPTS, ids=IDS)
def test_every_script_header_names_keys_argv_returns_and_events(package: str, name: str) -> None:
    text = (_lua_root(package) / f"{name}.lua").read_text(encoding="utf-8")
    header = "\n".join(itertools.takewhile(lambda line: line.startswith("--"), text.splitlines()))
    assert header.startswith(f"-- {name}.lua: ")
    for part in ("-- KEYS:", "-- ARGV:", "-- Returns", "-- Events:"):
        assert part in header, part


@pytest.mark.parametrize("package", PACKAGES)
def test_each_include_is_one_function_named_after_its_file(package: str) -> None:
    """One function per include (keys.lua and monitor.lua hold only constants)."""
    for path in _includes(package):
        functions = re.findall(r"^local function (\w+)", path.read_text(encoding="utf-8"), re.M)
        assert functions in ([], [path.stem]), path.name


@pytest.mark.parametrize("package", PACKAGES)
def test_every_include_is_used_by_some_script(package: str) -> None:
    used = "".join(script_source(package, name) for name in PACKAGES[package])
    for path in _includes(package):
        lines = path.read_text(encoding="utf-8").splitlines()
        own = "\n".join(line for line in lines if not line.startswith(INCLUDE))
        assert own in used, path.name


@pytest.mark.parametrize("package", PACKAGES)
def test_no_file_assigns_a_name_an_include_defines(package: str) -> None:
    """Includes share constants and functions, never state: nothing assigns their names."""
    shared: set[str] = set()
    for path in _includes(package):
        for names in re.findall(r"^local ([\w, ]+?)\s*=", path.read_text(encoding="utf-8"), re.M):
            shared.update(n.strip() for n in names.split(","))
        shared.update(re.findall(r"^local function (\w+)", path.read_text(encoding="utf-8"), re.M))
    for path in sorted(_lua_root(package).rglob("*.lua")):
        code = _code(path.read_text(encoding="utf-8"))
        assigned = re.findall(r"^\s*(?!local\b)([\w, .]+?)\s*=(?!=)", code, re.M)
        targets = {t.strip() for group in assigned for t in group.split(",")}
        assert targets & shared == set(), path.name
