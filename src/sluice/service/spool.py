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
a temporary directory), shared by every API process of the host (`sluice serve --workers N`,
`sluice up`, a second `sluice serve`). Each process claims a *slot* when it opens the spool:
the lowest ``k`` whose lock file ``<file>.slot-<k>.lock`` it can ``flock`` exclusively, held
for the process's life, and every row names the slot that owns it. A process replays only
the rows it owns; a slot whose lock is free belongs to a process that is gone, so whoever
finds it free (its restarted successor claims the lowest free slot, or any process on its
next poll) takes its rows over and replays them. Nothing waits for a dead process.

Order across processes: a new row of a conversation that already has rows here is owned by
the owner of its oldest row, whichever process wrote it (the lookup and the insert are one
write transaction), so one process replays a conversation's spooled webhooks, in the order
of their sequence numbers, which the file assigns across all processes. :meth:`Spool.holds`
answers for the whole file: this process's own appends and removals at once, the other
processes' within one poll (``POLL_S``, when the replayer re-reads the file).

Every SQLite call runs on a worker thread (it may wait for the disk or for another
process's write), serialised by a lock, so the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
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
# Files written before slots had no owner column: their rows belong to slot 0.
_OWNER = "ALTER TABLE spool ADD COLUMN owner INTEGER NOT NULL DEFAULT 0"
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS spool_owner ON spool (owner, seq)",
    "CREATE INDEX IF NOT EXISTS spool_conversation ON spool (conversation, seq)",
)
# How often the replayer re-reads the file: rows other processes wrote for this one (their
# conversation's oldest row is this process's), slots of processes that are gone.
POLL_S = 0.25
# A write waits this long for another process's write to finish.
BUSY_TIMEOUT_MS = 2_000


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
    """The host's spool file (every process's rows: the same whichever process answers),
    and this process's own counters."""

    depth: int
    oldest_age_s: float  # 0 when empty
    failures: int  # appends refused since start (disk full, I/O errors)
    replayed: int  # rows moved into the queue since start
    last_error: str | None  # set while appends fail; cleared by the next good one
    owned: int = 0  # rows this process replays (its slot's)

    def signals(self) -> dict[str, float | None]:
        """This spool's readings for the alert rules (sluice.monitor.signals)."""
        return {
            "intake_spool_oldest_age_ms": self.oldest_age_s * 1000,
            "intake_spool_write_failing": 1.0 if self.last_error else 0.0,
        }


class Spool:
    """A FIFO of webhooks on disk, shared by the host's API processes (see the module
    docstring). ``open()`` before use, ``close()`` at shutdown."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.slot = -1  # claimed by open()
        self._slot_fd: int | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._depth = 0  # rows in the file (every process's)
        self._oldest_ms: float | None = None
        self._owned = 0
        self._failures = 0
        self._replayed = 0
        self._last_error: str | None = None
        self._appended = asyncio.Event()
        self._waiting: collections.Counter[str] = collections.Counter()

    def slot_lock_path(self, slot: int) -> Path:
        return self.path.with_name(f"{self.path.name}.slot-{slot}.lock")

    async def open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.slot, self._slot_fd = await asyncio.to_thread(self._claim_slot)
        self._db = await asyncio.to_thread(self._connect)
        await self.sync()

    def _claim_slot(self) -> tuple[int, int]:
        """The lowest free slot, locked for this process's life (the lock is released by
        the kernel when the process dies, however it dies)."""
        slot = 0
        while True:
            fd = _try_lock(self.slot_lock_path(slot))
            if fd is not None:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return slot, fd
            slot += 1

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            check_same_thread=False,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(spool)")}
        if "owner" not in columns:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it
                db.execute(_OWNER)
        for index in _INDEXES:
            db.execute(index)
        return db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the spool is not open")
        return self._db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)
        if self._slot_fd is not None:
            os.close(self._slot_fd)  # releases the slot
            self._slot_fd = None

    async def sync(self) -> bool:
        """Re-read the file: take over the rows of slots whose process is gone, and refresh
        what :meth:`holds` and :meth:`stats` know of the other processes' rows. Whether rows
        were taken over (the replayer then reads its rows from the start again)."""
        async with self._lock:
            taken, waiting, depth, oldest, owned = await asyncio.to_thread(self._sync)
        self._waiting = waiting
        self._depth, self._oldest_ms, self._owned = depth, oldest, owned
        if taken:
            self._appended.set()
        return taken > 0

    def _sync(
        self,
    ) -> tuple[int, collections.Counter[str], int, float | None, int]:
        db = self._conn()
        taken = 0
        others = db.execute(
            "SELECT DISTINCT owner FROM spool WHERE owner != ?", (self.slot,)
        ).fetchall()
        for (owner,) in others:
            fd = _try_lock(self.slot_lock_path(int(owner)))
            if fd is None:
                continue  # its process is alive: its rows are its own
            try:
                cursor = db.execute(
                    "UPDATE spool SET owner = ? WHERE owner = ?", (self.slot, int(owner))
                )
                taken += cursor.rowcount
            finally:
                os.close(fd)
        waiting = collections.Counter(
            {
                str(c): int(n)
                for c, n in db.execute("SELECT conversation, COUNT(*) FROM spool GROUP BY 1")
            }
        )
        (depth,) = db.execute("SELECT COUNT(*) FROM spool").fetchone()
        first = db.execute("SELECT received_ms FROM spool ORDER BY seq LIMIT 1").fetchone()
        oldest = first[0] if first else None
        (owned,) = db.execute("SELECT COUNT(*) FROM spool WHERE owner = ?", (self.slot,)).fetchone()
        return (
            taken,
            waiting,
            int(depth),
            float(oldest) if oldest is not None else None,
            int(owned),
        )

    @property
    def depth(self) -> int:
        """Webhooks waiting in the file (every process's)."""
        return self._depth

    @property
    def owned(self) -> int:
        """Webhooks this process replays."""
        return self._owned

    def holds(self, conversation: str) -> bool:
        """Whether a webhook of ``conversation`` waits here (any process's): a newer one of
        the same conversation must go behind it (order); other conversations need not wait."""
        return self._waiting[conversation] > 0

    def stats(self) -> SpoolStats:
        age = 0.0
        if self._depth and self._oldest_ms is not None:
            age = max(0.0, time.time() - self._oldest_ms / 1000)
        return SpoolStats(
            self._depth, age, self._failures, self._replayed, self._last_error, self._owned
        )

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
                seq, owner = await asyncio.to_thread(
                    self._insert, body, json.dumps(kept), received_ms, conversation
                )
            except sqlite3.Error as exc:
                self._failures += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                raise SpoolFullError(f"cannot write the intake spool {self.path}: {exc}") from exc
            self._depth += 1
            self._waiting[conversation] += 1
            if owner == self.slot:
                self._owned += 1
                self._appended.set()
            if self._oldest_ms is None:
                self._oldest_ms = received_ms
            self._last_error = None
            return seq

    def _insert(
        self, body: bytes, headers: str, received_ms: float, conversation: str
    ) -> tuple[int, int]:
        """One write transaction: the owner of the conversation's oldest row (this slot when
        it has none), then the row."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            owner = self.slot
            if conversation:
                row = db.execute(
                    "SELECT owner FROM spool WHERE conversation = ? ORDER BY seq LIMIT 1",
                    (conversation,),
                ).fetchone()
                if row is not None:
                    owner = int(row[0])
            cursor = db.execute(
                "INSERT INTO spool (received_ms, conversation, headers, body, owner) "
                "VALUES (?, ?, ?, ?, ?)",
                (received_ms, conversation, headers, body, owner),
            )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return int(cursor.lastrowid or 0), owner

    async def wait_appended(self) -> None:
        """Until the next append of a row this process owns, or a takeover (call
        :meth:`clear_appended` first)."""
        await self._appended.wait()

    def clear_appended(self) -> None:
        self._appended.clear()

    async def oldest(self, limit: int = 100) -> list[SpooledWebhook]:
        """This process's oldest rows, in arrival order."""
        return await self.after(0, limit)

    async def after(self, seq: int, limit: int = 100) -> list[SpooledWebhook]:
        """This process's rows written after row ``seq``, in arrival order."""
        async with self._lock:
            rows = await asyncio.to_thread(self._select, seq, limit)
        return [
            SpooledWebhook(int(s), float(r), c, json.loads(h), bytes(b)) for s, r, c, h, b in rows
        ]

    def _select(self, seq: int, limit: int) -> list[tuple[int, float, str, str, bytes]]:
        cursor = self._conn().execute(
            "SELECT seq, received_ms, conversation, headers, body FROM spool "
            "WHERE owner = ? AND seq > ? ORDER BY seq LIMIT ?",
            (self.slot, seq, limit),
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
            self._owned = max(0, self._owned - 1)
            self._oldest_ms = None
            if self._depth:
                self._oldest_ms = await asyncio.to_thread(self._oldest_received)

    def _oldest_received(self) -> float | None:
        row = self._conn().execute("SELECT received_ms FROM spool ORDER BY seq LIMIT 1").fetchone()
        return float(row[0]) if row else None

    def _delete(self, seq: int) -> None:
        self._conn().execute("DELETE FROM spool WHERE seq = ?", (seq,))


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive ``flock`` on ``path``, or None when another
    open file holds it (another process, or another Spool of this one)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd
