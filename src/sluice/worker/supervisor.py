"""Run N worker processes and keep them running.

Each child is ``python -m sluice worker`` with the parent's environment (so an embedded
Redis started by the parent is shared through REDIS_URL). SIGTERM/SIGINT are forwarded
and the parent waits for the children's graceful shutdown; a child that dies unexpectedly
is restarted with a backoff, so one crash costs at most its leased jobs' lease time.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
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
    ) -> None:
        if processes < 1:
            raise ValueError(f"--processes must be at least 1, got {processes}")
        self.processes = processes
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
        restarts: dict[int, int] = {}
        try:
            for slot in range(self.processes):
                self._spawn(slot)
            while self.children:
                pid, status = os.wait()  # blocks until a child exits; signals interrupt it
                found = next((k for k, c in self.children.items() if c.pid == pid), None)
                if found is None:
                    continue
                slot = found
                code = os.waitstatus_to_exitcode(status)
                self.children.pop(slot).returncode = code
                if self.stopping:
                    log.info("worker process %d exited (%d)", slot, code)
                    continue
                restarts[slot] = restarts.get(slot, 0) + 1
                delay = min(30.0, 0.5 * 2 ** min(restarts[slot], 6))
                log.error(
                    "worker process %d died (%d); restarting in %.1f s",
                    slot,
                    code,
                    delay,
                )
                time.sleep(delay)
                if not self.stopping:
                    self._spawn(slot)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0


def child_env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url}
