"""Run N worker processes and keep them running, or as many as the scaler recommends.

Each child is ``python -m sluice worker`` with the parent's environment (so an embedded
Redis started by the parent is shared through REDIS_URL). SIGTERM/SIGINT are forwarded
and the parent waits for the children's graceful shutdown; a child that dies unexpectedly
is restarted with a backoff, so one crash costs at most its leased jobs' lease time.

With ``target`` (``sluice worker --processes auto``) the count follows it: every
``poll_s`` the supervisor asks it for the wanted count (None: keep the current one, e.g.
no recommendation yet) and starts children, or stops the newest ones with SIGTERM, the
same graceful shutdown as a deployment's: a stopping worker finishes or hands back its
jobs (docs/engine.md), so scaling down loses nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

log = logging.getLogger("sluice.supervisor")


class Supervisor:
    def __init__(
        self,
        processes: int,
        worker_args: Sequence[str],
        env: dict[str, str],
        *,
        kill_after_s: int = 45,
        target: Callable[[], int | None] | None = None,
        poll_s: float = 15.0,
        bounds: tuple[int, int] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"--processes must be at least 1, got {processes}")
        self.processes = processes
        self.target = target
        self.poll_s = poll_s
        self.bounds = bounds or (1, 10_000)
        self.retiring: set[int] = set()  # slots stopped on purpose (scaled down)
        self.command = [sys.executable, "-m", "sluice", "worker", "--processes", "1", *worker_args]
        self.env = env
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        # A child still alive this long after SIGTERM is killed: its leased jobs come back
        # after the lease, which beats a deployment that never finishes stopping.
        self.kill_after_s = kill_after_s

    def _spawn(self, slot: int) -> None:
        child = subprocess.Popen(self.command, env=self.env)
        self.children[slot] = child
        log.info("worker process %d started (pid %d)", slot, child.pid)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        first = not self.stopping
        self.stopping = True
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signum)
        if first:
            signal.signal(signal.SIGALRM, self._kill_all)
            signal.alarm(self.kill_after_s)

    def _kill_all(self, _signum: int, _frame: FrameType | None) -> None:
        for slot, child in self.children.items():
            if child.poll() is None:
                log.error(
                    "worker process %d did not stop in %d s; killing it", slot, self.kill_after_s
                )
                child.kill()

    def run(self) -> int:
        previous = {s: signal.signal(s, self._forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.processes):
                self._spawn(slot)
            if self.target is None:
                self._run_fixed()
            else:
                self._run_following()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0

    def _run_fixed(self) -> None:
        restarts: dict[int, int] = {}
        while self.children:
            pid, status = os.wait()  # blocks until a child exits; signals interrupt it
            self._exited(pid, status, restarts)

    def _run_following(self) -> None:
        """Reap children without blocking, and ask ``target`` every ``poll_s``."""
        restarts: dict[int, int] = {}
        next_poll = time.monotonic()
        while self.children or not self.stopping:
            pid, status = os.waitpid(-1, os.WNOHANG) if self.children else (0, 0)
            if pid:
                self._exited(pid, status, restarts)
                continue
            if not self.stopping and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.poll_s
                self._follow()
            time.sleep(0.1)  # the poll of a sync loop, not a synchronisation

    def _follow(self) -> None:
        assert self.target is not None
        try:
            wanted = self.target()
        except Exception as exc:  # Redis away: keep what runs, ask again next time
            log.warning("scaling recommendation unavailable (%s); keeping %d", exc, self._count())
            return
        if wanted is None:
            return
        low, high = self.bounds
        wanted = min(high, max(low, wanted))
        running = sorted(slot for slot in self.children if slot not in self.retiring)
        if wanted > len(running):
            free = (slot for slot in range(10_000) if slot not in self.children)
            for slot in [next(free) for _ in range(wanted - len(running))]:
                self._spawn(slot)
            log.info("scaled up to %d worker processes (recommendation)", wanted)
        elif wanted < len(running):
            for slot in running[wanted:]:
                self.retiring.add(slot)
                self.children[slot].send_signal(signal.SIGTERM)
            log.info("scaling down to %d worker processes (recommendation)", wanted)

    def _count(self) -> int:
        return sum(1 for slot in self.children if slot not in self.retiring)

    def _exited(self, pid: int, status: int, restarts: dict[int, int]) -> None:
        found = next((k for k, c in self.children.items() if c.pid == pid), None)
        if found is None:
            return
        slot = found
        code = os.waitstatus_to_exitcode(status)
        self.children.pop(slot).returncode = code
        if self.stopping or slot in self.retiring:
            self.retiring.discard(slot)
            log.info("worker process %d exited (%d)", slot, code)
            return
        restarts[slot] = restarts.get(slot, 0) + 1
        delay = min(30.0, 0.5 * 2 ** min(restarts[slot], 6))
        log.error("worker process %d died (%d); restarting in %.1f s", slot, code, delay)
        time.sleep(delay)
        if not self.stopping:
            self._spawn(slot)


def child_env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url}
