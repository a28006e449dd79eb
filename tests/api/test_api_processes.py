"""`sluice serve --workers 2`: two API processes on one port, everything they share in Redis.

The server runs as a real process tree (uvicorn's manager and its children). A keep-alive
client stays on the process that accepted its connection, so two clients whose ``/healthz``
name different pids talk to different processes: what one of them stores, the other must
see (webhook dedupe, dashboard sessions, metrics); a child that is killed is replaced, and
the webhooks it spooled while Redis was unreachable are replayed in order by whoever takes
its slot; SIGTERM, or the parent's own death, leaves no process behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from sluice.queue.queue import Queue
from sluice.testing import FaultProxy

from ..integration.conftest import delete_queue_keys
from ..servers import free_port
from .conftest import TOKEN
from .served import SRC
from .test_intake import SECRET, fixture, signed
from .test_intake_spool import message

CONVERSATION = "{}:{}".format(
    json.loads(fixture("01"))["account"]["id"], json.loads(fixture("01"))["conversation"]["id"]
)


def other_conversation(message_id: int) -> bytes:
    payload = json.loads(message(message_id, "elsewhere"))
    payload["conversation"]["id"] += 1
    return json.dumps(payload).encode()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def wait_until(predicate: object, within_s: float = 15, what: str = "") -> None:
    deadline = time.monotonic() + within_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.05)


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    queue: Queue
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    async def pid_of(self, client: httpx.AsyncClient) -> int:
        response = await client.get("/healthz")
        return int(response.json()["pid"])

    async def two_processes(self, stack: AsyncExitStack) -> dict[int, httpx.AsyncClient]:
        """Keep-alive clients until two of them are on different processes."""
        found: dict[int, httpx.AsyncClient] = {}
        deadline = time.monotonic() + 20
        while len(found) < 2:
            assert time.monotonic() < deadline, "only one process answers"
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=self.url, timeout=10, headers=_admin())
            )
            try:
                found.setdefault(await self.pid_of(client), client)
            except httpx.TransportError:
                await asyncio.sleep(0.1)  # the children are still starting
        return found

    async def post(self, client: httpx.AsyncClient, body: bytes, delivery: str) -> str:
        headers = {**signed(body), "X-Chatwoot-Delivery": delivery}
        response = await client.post("/webhooks/chatwoot", content=body, headers=headers)
        assert response.status_code == 200, response.text
        return str(response.json()["status"])

    async def lane(self, conversation: str = CONVERSATION) -> list[int]:
        ids = await self.queue.redis.lrange(self.queue.keys.lane(conversation), 0, -1)
        records = [await self.queue.get_job(i.decode()) for i in ids]
        return [int(r.payload["message_id"]) for r in records if r is not None]


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def serve_two(
    redis_url: str, queue: Queue, data_dir: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Served]:
    port = free_port()
    log = data_dir / "serve.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "REDIS_URL": redis_url,
        "SLUICE_QUEUE": queue.name,
        "SLUICE_ADMIN_TOKEN": TOKEN,
        "CHATWOOT_WEBHOOK_SECRET": SECRET,
        "SLUICE_DATA_DIR": str(data_dir),
        "SLUICE_API_WORKERS": "2",
        **(extra_env or {}),
    }
    proc = _spawn(port, env, log)
    served = Served(proc, f"http://127.0.0.1:{port}", log, queue)
    children: set[int] = set()
    try:
        await wait_until(lambda: b"API listening on" in log.read_bytes(), what="listening")
        yield served
    finally:
        children = _children(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            # In a thread: the test's own servers (the fault proxy) share this event loop.
            await asyncio.to_thread(proc.wait, 20)
        finally:
            for pid in children:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def _spawn(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sluice", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split()
        found.update(int(c) for c in children)
    return found


@pytest.fixture
async def queue(redis_client: aioredis.Redis, queue_name: str) -> AsyncIterator[Queue]:
    yield Queue(queue_name, redis=redis_client)
    await delete_queue_keys(redis_client, queue_name)


async def test_two_processes_share_dedupe_sessions_and_metrics(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    async with serve_two(redis_url, queue, tmp_path) as served, AsyncExitStack() as stack:
        (pid_a, a), (pid_b, b) = (await served.two_processes(stack)).items()
        assert pid_a != pid_b and {pid_a, pid_b} <= _children(served.proc.pid)

        # One webhook, delivered to each process: queued once.
        body = message(9301, "hello")
        assert await served.post(a, body, "dlv-9301") == "queued"
        assert await served.post(b, body, "dlv-9301") == "duplicate"
        assert await served.lane() == [9301]

        # A dashboard session opened on one process works on the other.
        login = await a.post("/dashboard/login", data={"token": TOKEN})
        assert login.status_code == 303, login.text
        cookie = {"Cookie": f"sluice_dash={login.cookies['sluice_dash']}"}
        page = await b.get("/dashboard", headers=cookie)
        assert page.status_code == 200 and "csrf" in page.text.lower()

        # /metrics: the same system-wide numbers whichever process answers.
        scrapes = [(await c.get("/metrics")).text for c in (a, b)]
        system = [
            sorted(
                line
                for line in text.splitlines()
                if line.startswith(("sluice_jobs", "sluice_queue_jobs{"))
            )
            for text in scrapes
        ]
        assert system[0] and system[0] == system[1]

        # Each process's own pool: every process of the host, whichever one answers.
        async def pools_seen(client: httpx.AsyncClient) -> set[int]:
            text = (await client.get("/metrics")).text
            return {
                int(line.split('process="', 1)[1].split('"', 1)[0])
                for line in text.splitlines()
                if line.startswith("sluice_redis_pool_max_connections{")
            }

        deadline = time.monotonic() + 15
        while {pid_a, pid_b} - await pools_seen(a) or {pid_a, pid_b} - await pools_seen(b):
            assert time.monotonic() < deadline, "a process's pool is missing from a scrape"
            await asyncio.sleep(0.2)


async def test_a_killed_child_is_replaced_and_nothing_outlives_the_parent(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    async with serve_two(redis_url, queue, tmp_path) as served, AsyncExitStack() as stack:
        pids = set(await served.two_processes(stack))
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        await wait_until(
            lambda: len(_children(served.proc.pid) - pids - {victim}) >= 1 and not alive(victim),
            what="a replacement child",
        )
        answering: set[int] = set()
        deadline = time.monotonic() + 20
        while not (answering - pids) and time.monotonic() < deadline:
            async with httpx.AsyncClient(base_url=served.url, timeout=10) as fresh:
                try:
                    answering.add(await served.pid_of(fresh))
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        assert answering - pids, "the replacement never answered"
        children = _children(served.proc.pid)
        served.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(served.proc.wait, 20) == 0
        await wait_until(lambda: not any(alive(p) for p in children), what="children gone")
        assert "Finished server process" in served.log.read_text()


async def test_children_die_with_a_killed_parent(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    async with serve_two(redis_url, queue, tmp_path) as served, AsyncExitStack() as stack:
        await served.two_processes(stack)
        children = _children(served.proc.pid)
        served.proc.kill()
        await asyncio.to_thread(served.proc.wait, 10)
        await wait_until(lambda: not any(alive(p) for p in children), what="no orphans")


async def test_the_spool_of_a_killed_process_is_replayed_in_order(
    redis_client: aioredis.Redis, queue: Queue, tmp_path: Path
) -> None:
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    async with (
        FaultProxy("127.0.0.1", 6379) as proxy,
        serve_two(f"redis://{proxy.url_host}/{db}", queue, tmp_path) as served,
        AsyncExitStack() as stack,
    ):
        (pid_a, a), (_, b) = (await served.two_processes(stack)).items()
        await proxy.refuse(True)
        await proxy.drop()
        # One conversation across both processes, another one beside it; Redis is down.
        assert await served.post(a, message(9401, "one"), "dlv-9401") == "spooled"
        assert await served.post(b, message(9402, "two"), "dlv-9402") == "spooled"
        assert await served.post(b, other_conversation(9403), "dlv-9403") == "spooled"
        os.kill(pid_a, signal.SIGKILL)  # the owner of the conversation's rows dies
        await proxy.refuse(False)
        deadline = time.monotonic() + 30
        while await served.lane() != [9401, 9402]:
            assert time.monotonic() < deadline, f"lane {await served.lane()}"
            await asyncio.sleep(0.1)
        account, conversation = CONVERSATION.split(":")
        assert await served.lane(f"{account}:{int(conversation) + 1}") == [9403]
