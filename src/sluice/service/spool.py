"""The intake's durable spool: verified webhooks that Redis could not take in time.

Chatwoot sends account and API-inbox webhooks once and never retries them (a timeout or
any non-2xx loses the event), and an agent-bot webhook that fails opens the conversation
for humans. So the intake must answer 2xx within its deadline whatever Redis does, and a
2xx must mean the message is safe. When Redis is slow or down, the verified webhook is
appended here, and the replayer (:class:`sluice.service.intake.Intake`) moves it into the queue,
in arrival order, once Redis answers; dedupe on the message id makes a replay idempotent.

SQLite in WAL mode with ``synchronous=FULL``: an append is on disk (fsync'd) before the
webhook is answered, readers never block the writer, and a crash leaves either the whole
row or none. Order is kept per conversation: while a webhook of a conversation waits here,
newer ones of that conversation are spooled behind it; other conversations go straight to
Redis as soon as it answers.

One file per queue, ``intake-spool-<queue>.sqlite3``, under ``SLUICE_DATA_DIR`` (default
``$XDG_STATE_HOME/sluice``, else ``~/.local/state/sluice``: it must survive a reboot, so not
a temporary directory). API processes of one host share it (SQLite locks it), and a
restarted process replays what its predecessor left. Every SQLite call runs on a worker
thread (it may wait for the disk), serialised by a lock, so the event loop never blocks on
it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sluice import tracing
from sluice.errors import SluiceError
from sluice.tracing import spans

# Headers a replay needs: the delivery id (dedupe) and the signed timestamp (Chatwoot's
# own delay, for the SLA clock). The signature itself was verified on arrival.
KEPT_HEADERS = ("x-chatwoot-delivery", "x-chatwoot-timestamp")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms REAL NOT NULL,
    conversation TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL
)
"""


def spool_path(data_dir: Path | None, queue: str) -> Path:
    """Where the spool of ``queue`` lives (see the module docstring)."""
    if data_dir is None:
        state = os.environ.get("XDG_STATE_HOME")
        data_dir = (Path(state) if state else Path.home() / ".local" / "state") / "sluice"
    return data_dir / f"intake-spool-{queue}.sqlite3"


class SpoolFullError(SluiceError):
    """The spool could not be written (disk full, read-only, I/O error): the webhook is not
    safe anywhere, so the intake answers 503 and raises the alarm."""


@dataclass(frozen=True, slots=True)
class SpooledWebhook:
    seq: int
    received_ms: float
    conversation: str  # "<account>:<conversation>", or "" for a webhook of no conversation
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class SpoolStats:
    depth: int
    oldest_age_s: float  # 0 when empty
    failures: int  # appends refused since start (disk full, I/O errors)
    replayed: int  # rows moved into the queue since start
    last_error: str | None  # set while appends fail; cleared by the next good one

    def signals(self) -> dict[str, float | None]:
        """This spool's readings for the alert rules (sluice.monitor.signals)."""
        return {
            "intake_spool_oldest_age_ms": self.oldest_age_s * 1000,
            "intake_spool_write_failing": 1.0 if self.last_error else 0.0,
        }


class Spool:
    """A FIFO of webhooks on disk. ``open()`` before use, ``close()`` at shutdown."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._depth = 0
        self._oldest_ms: float | None = None
        self._failures = 0
        self._replayed = 0
        self._last_error: str | None = None
        self._nonempty = asyncio.Event()
        self._appended = asyncio.Event()
        self._waiting: collections.Counter[str] = collections.Counter()

    async def open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = await asyncio.to_thread(self._connect)
        depth, oldest = await asyncio.to_thread(self._scan)
        self._depth, self._oldest_ms = depth, oldest
        self._waiting = collections.Counter(await asyncio.to_thread(self._conversations))
        if depth:
            self._nonempty.set()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
        return db

    def _scan(self) -> tuple[int, float | None]:
        db = self._conn()
        row = db.execute("SELECT COUNT(*), MIN(received_ms) FROM spool").fetchone()
        return int(row[0]), (float(row[1]) if row[1] is not None else None)

    def _conversations(self) -> list[str]:
        return [row[0] for row in self._conn().execute("SELECT conversation FROM spool")]

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the spool is not open")
        return self._db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    @property
    def depth(self) -> int:
        return self._depth

    def holds(self, conversation: str) -> bool:
        """Whether a webhook of ``conversation`` waits here: a newer one of the same
        conversation must go behind it (order); other conversations need not wait."""
        return self._waiting[conversation] > 0

    def stats(self) -> SpoolStats:
        age = 0.0
        if self._depth and self._oldest_ms is not None:
            age = max(0.0, time.time() - self._oldest_ms / 1000)
        return SpoolStats(self._depth, age, self._failures, self._replayed, self._last_error)

    async def append(
        self,
        body: bytes,
        headers: Mapping[str, str],
        received_ms: float,
        conversation: str = "",
    ) -> int:
        """Write one webhook durably; returns its sequence number. Raises
        :class:`SpoolFullError` when it could not be written."""
        kept = {name: headers[name] for name in KEPT_HEADERS if headers.get(name)}
        if tracing.enabled:  # the webhook's trace goes on when it is replayed
            kept["traceparent"] = spans.traceparent()
        async with self._lock:
            try:
                seq = await asyncio.to_thread(
                    self._insert, body, json.dumps(kept), received_ms, conversation
                )
            except sqlite3.Error as exc:
                self._failures += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                raise SpoolFullError(f"cannot write the intake spool {self.path}: {exc}") from exc
            self._depth += 1
            self._waiting[conversation] += 1
            self._appended.set()
            if self._oldest_ms is None:
                self._oldest_ms = received_ms
            self._last_error = None
            self._nonempty.set()
            return seq

    def _insert(self, body: bytes, headers: str, received_ms: float, conversation: str) -> int:
        cursor = self._conn().execute(
            "INSERT INTO spool (received_ms, conversation, headers, body) VALUES (?, ?, ?, ?)",
            (received_ms, conversation, headers, body),
        )
        return int(cursor.lastrowid or 0)

    async def wait_nonempty(self) -> None:
        await self._nonempty.wait()

    async def wait_appended(self) -> None:
        """Until the next append (call :meth:`after` first and again after clearing)."""
        await self._appended.wait()

    def clear_appended(self) -> None:
        self._appended.clear()

    async def oldest(self, limit: int = 100) -> list[SpooledWebhook]:
        """The oldest rows, in arrival order."""
        return await self.after(0, limit)

    async def after(self, seq: int, limit: int = 100) -> list[SpooledWebhook]:
        """The rows written after row ``seq``, in arrival order."""
        async with self._lock:
            rows = await asyncio.to_thread(self._select, seq, limit)
        return [
            SpooledWebhook(int(s), float(r), c, json.loads(h), bytes(b)) for s, r, c, h, b in rows
        ]

    def _select(self, seq: int, limit: int) -> list[tuple[int, float, str, str, bytes]]:
        cursor = self._conn().execute(
            "SELECT seq, received_ms, conversation, headers, body FROM spool WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return list(cursor.fetchall())

    async def remove(self, row: SpooledWebhook) -> None:
        """Forget a row that is now in the queue (or was refused for good)."""
        async with self._lock:
            await asyncio.to_thread(self._delete, row.seq)
            self._replayed += 1
            self._waiting[row.conversation] -= 1
            if self._waiting[row.conversation] <= 0:
                del self._waiting[row.conversation]
            self._depth = max(0, self._depth - 1)
            self._oldest_ms = None
            if self._depth:
                self._oldest_ms = await asyncio.to_thread(self._oldest_received)
            if not self._depth:
                self._nonempty.clear()

    def _oldest_received(self) -> float | None:
        row = self._conn().execute("SELECT received_ms FROM spool ORDER BY seq LIMIT 1").fetchone()
        return float(row[0]) if row else None

    def _delete(self, seq: int) -> None:
        self._conn().execute("DELETE FROM spool WHERE seq = ?", (seq,))
