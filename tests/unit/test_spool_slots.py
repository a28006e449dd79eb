"""The intake spool shared by the host's API processes: each claims a slot, a conversation's
rows stay with one owner (one replayer, in order), a gone process's rows are taken over,
and a file from before slots still opens. Two Spools of one process stand for two processes:
flock locks belong to open files, so they exclude each other the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sluice.service.spool import Spool

HEADERS = {"x-chatwoot-delivery": "d-1"}


async def opened(path: Path) -> Spool:
    spool = Spool(path)
    await spool.open()
    return spool


async def test_processes_claim_distinct_slots_and_reuse_a_freed_one(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    a, b = await opened(path), await opened(path)
    try:
        assert (a.slot, b.slot) == (0, 1)
        await a.close()
        c = await opened(path)
        assert c.slot == 0  # the lowest free slot: a restarted process takes over its place
        await c.close()
    finally:
        await a.close()
        await b.close()


async def test_a_conversation_stays_with_the_owner_of_its_oldest_row(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    a, b = await opened(path), await opened(path)
    try:
        first = await a.append(b"1", HEADERS, 1.0, "1:7")
        await b.sync()
        assert b.holds("1:7") and not b.holds("1:8")
        second = await b.append(b"2", HEADERS, 2.0, "1:7")  # behind a's row: a's to replay
        other = await b.append(b"3", HEADERS, 3.0, "1:8")
        assert [r.seq for r in await a.oldest()] == [first, second]
        assert [r.seq for r in await b.oldest()] == [other]
        assert a.stats().depth == 1 and b.stats().depth == 3  # the file, as each last saw it
        await a.sync()
        assert a.stats().depth == 3 and a.stats().owned == 2
    finally:
        await a.close()
        await b.close()


async def test_the_rows_of_a_gone_process_are_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    a, b = await opened(path), await opened(path)
    try:
        seqs = [await a.append(str(i).encode(), HEADERS, float(i), "1:7") for i in range(3)]
        assert not await b.sync()  # a is alive: its rows are its own
        assert await b.oldest() == []
        await a.close()  # a dies: the kernel releases its slot lock
        assert await b.sync()
        assert [r.seq for r in await b.oldest()] == seqs
        assert b.stats().owned == 3
    finally:
        await b.close()


async def test_a_file_from_before_slots_opens_with_its_rows_in_slot_zero(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, received_ms REAL NOT NULL,"
        " conversation TEXT NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL)"
    )
    db.execute(
        "INSERT INTO spool (received_ms, conversation, headers, body)"
        " VALUES (1, '1:7', '{}', x'31')"
    )
    db.commit()
    db.close()
    spool = await opened(path)
    try:
        assert spool.slot == 0 and spool.depth == 1 and spool.holds("1:7")
        (row,) = await spool.oldest()
        assert row.body == b"1"
    finally:
        await spool.close()
