"""Processes the tests start on loopback: a free port, a process's memory from /proc, and a
Redis-compatible server of a test's own that it can kill and restart on the same port.

One place for what the outage, reliability and fuzzing tests all need (they used to keep
a copy each).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

from sluice.redis.embedded import find_server_binary

READY_LINE = b"Ready to accept connections"  # Redis and Valkey both log it


def free_port() -> int:
    """A loopback port nobody listens on right now (a restarted server takes it again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc_status_kb(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in kB (``VmRSS``, ``VmHWM``); Linux only."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid} in /proc")


def rss_mb(pid: int) -> float:
    """Resident set size of a live process, in MB."""
    return proc_status_kb(pid, "VmRSS") / 1024


class RedisServer:
    """A Redis-compatible server on a loopback TCP port, restartable on the same port (and
    ``directory``, where its append-only file and log live when given). ``fsync`` None means
    no persistence; otherwise ``appendonly yes`` with that ``appendfsync``. Its
    ``used_memory`` is the test's alone."""

    def __init__(self, directory: Path | None = None, *, fsync: str | None = None) -> None:
        self.directory = directory
        self.fsync = fsync
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", self.fsync]
            if self.fsync
            else ["--appendonly", "no"]
        )
        where = ["--dir", str(self.directory)] if self.directory is not None else []
        self.proc = subprocess.Popen(
            [
                str(find_server_binary()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *where,
                *persistence,
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> float:
        """Seconds until the server logs that it accepts connections (after loading its
        append-only file): read from its output, an event rather than a timer. The rest of
        the output goes on being read (into ``server.log`` when there is a directory), so a
        full pipe never blocks the server. Blocking: call it via ``asyncio.to_thread``."""
        assert self.proc is not None and self.proc.stdout is not None
        started = time.monotonic()
        log = (self.directory / "server.log").open("ab") if self.directory else None
        for line in self.proc.stdout:
            if log is not None:
                log.write(line)
            if READY_LINE in line:
                threading.Thread(target=self._drain, args=(log,), daemon=True).start()
                return time.monotonic() - started
        if log is not None:
            log.close()
        raise AssertionError("the Redis server exited before it was ready")

    def _drain(self, log: object) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if log is not None:
                log.write(line)  # type: ignore[attr-defined]
                log.flush()  # type: ignore[attr-defined]
        if log is not None:
            log.close()  # type: ignore[attr-defined]

    def stop(self, how: str = "kill") -> None:
        """``kill`` (SIGKILL, a crash) or ``term`` (SIGTERM: Redis flushes its AOF first)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if how == "kill":
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=30)
