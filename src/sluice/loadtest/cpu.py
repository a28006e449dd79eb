"""CPU time of a process and its descendants, read from ``/proc`` (Linux), so the load
test can say what each part (customers, simulator, API, workers) used during the load.

``getrusage(RUSAGE_CHILDREN)`` only counts children once they are reaped and cannot tell
parts apart; ``/proc/<pid>/stat`` gives each live process's user and system ticks."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    return raw[raw.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    return parents


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and every live descendant, or ``None`` where
    ``/proc`` is not available."""
    if not _PROC.is_dir():
        return None
    parents = _parents()
    members, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in members:
                members.add(child)
                frontier.append(child)
    total = 0
    for member in members:
        fields = _stat_fields(member)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / _TICKS
