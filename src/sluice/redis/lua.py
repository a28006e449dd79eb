"""Lua scripts assembled from files with includes: the one loader of every Sluice script.

Each package that keeps state in Redis (``sluice.queue``, ``sluice.broker``,
``sluice.monitor``) has a ``lua/`` folder with one file per script and a ``lua/lib/`` of
helpers. Redis runs a script as one EVALSHA, atomically, so a script cannot import its
helpers at run time: a line ``--!include lib/x.lua`` is replaced by the text of that file
when the script is loaded. Paths are relative to the package's ``lua/`` folder.

Include files declare their own includes the same way, and the expansion is recursive and
deduplicated: each file's text appears once, in one piece, after the files it includes and
before its first user, so a helper is always defined (as a ``local``) above the code that
calls it, whichever script or helper asked for it first. The assembled script is therefore
its includes in dependency order, then the script's own text. A cycle is an error, not an
endless expansion.

redis-py's ``Script`` objects (:func:`register_scripts`) run the assembled text by SHA and
load it again transparently after a ``SCRIPT FLUSH`` or a Redis restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

from redis.commands.core import AsyncScript

from sluice.redis.cluster import RedisClient

__all__ = ["INCLUDE", "LuaIncludeError", "assemble", "register_scripts", "script_source"]

INCLUDE = "--!include "


class LuaIncludeError(ValueError):
    """An include that cannot be expanded: a missing file, a bad path or a cycle."""


def assemble(root: Traversable, path: str) -> str:
    """The text of ``root/path`` with its includes expanded, each included file once."""
    out: list[str] = []
    _expand(root, _normal(path, "the script itself"), [], set(), out)
    return "\n".join(out) + "\n"


def _normal(path: str, user: str) -> str:
    """``path`` as the one spelling it is deduplicated under (``lib/./x.lua`` is ``lib/x.lua``)."""
    pure = PurePosixPath(path.strip())
    if not path.strip() or pure.is_absolute() or ".." in pure.parts:
        raise LuaIncludeError(f"{user}: include path {path!r} must be relative to lua/")
    return pure.as_posix()


def _expand(root: Traversable, path: str, stack: list[str], done: set[str], out: list[str]) -> None:
    # Depth first: a file's includes (those not written out yet) go out before its own
    # text, which stays in one piece, header comment included.
    stack.append(path)
    file = root
    for part in path.split("/"):
        file = file / part
    if not file.is_file():
        chain = " -> ".join(stack)
        raise LuaIncludeError(f"{path} does not exist (include chain: {chain})")
    own: list[str] = []
    for line in file.read_text(encoding="utf-8").splitlines():
        if not line.startswith(INCLUDE):
            own.append(line)
            continue
        included = _normal(line[len(INCLUDE) :], path)
        if included in stack:
            cycle = " -> ".join([*stack[stack.index(included) :], included])
            raise LuaIncludeError(f"include cycle: {cycle}")
        if included not in done:
            _expand(root, included, stack, done, out)
    out.extend(own)
    stack.pop()
    done.add(path)


@cache
def script_source(package: str, name: str) -> str:
    """The assembled source of script ``name`` of ``package`` (its ``lua/<name>.lua``)."""
    return assemble(resources.files(package) / "lua", f"{name}.lua")


def register_scripts(
    client: RedisClient, package: str, names: Iterable[str]
) -> dict[str, AsyncScript]:
    """``client``'s callable scripts of ``package``, by name (nothing is sent to Redis yet)."""
    return {name: client.register_script(script_source(package, name)) for name in names}
