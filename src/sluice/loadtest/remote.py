"""The customers' side of the simulator when it runs in another process: its ``/_sim``
control API over HTTP, with the three calls a customer makes (the same signatures as
:class:`~sluice.simulator.ChatwootSimulator`'s drivers, so one customer loop serves both)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx

from sluice.simulator import ChatwootSimulator
from sluice.simulator.waiters import ReplyWaiters

REQUESTS_IN_FLIGHT = 32  # a customer process's concurrent POSTs to the simulator


class RemoteSimulator:
    """The customers' Chatwoot over the simulator's control API (``simulator/routes/control``).

    A customer writes with one POST that returns as soon as the message exists (Chatwoot
    answers the widget before its webhook jobs run), and every reply reaches the process
    through one streamed connection (``/_sim/replies/stream``), dispatched here to the
    customer waiting for it: a long poll per line would double the requests the simulator
    serves and make the customers' process the bottleneck. Use it as an async context
    manager; the stream is subscribed before ``__aenter__`` returns.
    """

    def __init__(self, base_url: str, token: str) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"api_access_token": token},
            limits=httpx.Limits(max_connections=REQUESTS_IN_FLIGHT + 1),
            timeout=httpx.Timeout(30.0),
        )
        # httpcore matches every queued request against every connection each time one
        # frees (quadratic): a thousand customers starting at once spent their whole CPU
        # there. They queue here instead, cheaply.
        self._in_flight = asyncio.Semaphore(REQUESTS_IN_FLIGHT)
        self._latest: dict[tuple[int, int], dict[str, Any]] = {}
        self._waiters = ReplyWaiters()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RemoteSimulator:
        subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_stream(subscribed))
        try:
            await subscribed
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            # Cancelled here, or already ended by an error its waiters were given.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._http.aclose()

    async def _read_stream(self, subscribed: asyncio.Future[None]) -> None:
        try:
            async with self._http.stream(
                "GET", "/_sim/replies/stream", timeout=httpx.Timeout(30.0, read=None)
            ) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if not subscribed.done():
                        subscribed.set_result(None)
                    if line.strip():
                        self._deliver(json.loads(line))
        except Exception as exc:
            if not subscribed.done():
                subscribed.set_exception(exc)
            self._waiters.fail_all(ConnectionError(f"reply stream ended: {exc!r}"))
            raise

    def _deliver(self, reply: dict[str, Any]) -> None:
        key = (int(reply["account_id"]), int(reply["conversation_id"]))
        known = self._latest.get(key)
        if known is None or int(reply["id"]) > int(known["id"]):
            self._latest[key] = reply
        self._waiters.deliver(key, int(reply["id"]), reply)

    @staticmethod
    def _base(account_id: int) -> str:
        return f"/_sim/accounts/{account_id}/conversations"

    async def _post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        async with self._in_flight:
            return await self._http.post(url, json=body)

    async def create_conversation(self, account_id: int) -> int:
        response = await self._post(self._base(account_id), {})
        response.raise_for_status()
        return int(response.json()["id"])

    async def customer_message(
        self, account_id: int, conversation_id: int, content: str
    ) -> dict[str, Any]:
        url = f"{self._base(account_id)}/{conversation_id}/customer_message"
        response = await self._post(url, {"content": content, "wait": False})
        response.raise_for_status()
        message: dict[str, Any] = response.json()
        return message

    async def wait_for_reply(
        self,
        account_id: int,
        conversation_id: int,
        *,
        after_message_id: int,
        timeout: float,  # noqa: ASYNC109 - the simulator driver's signature
    ) -> dict[str, Any]:
        """The first reply after ``after_message_id``; ``TimeoutError`` after ``timeout``.
        A reply that came before the call is found in the latest reply seen."""
        key = (account_id, conversation_id)
        known = self._latest.get(key)
        if known is not None and int(known["id"]) > after_message_id:
            return known
        return await self._waiters.wait(key, after_message_id, timeout)


# What a customer talks to: the simulator in this process, or its control API from another.
ChatwootSide = ChatwootSimulator | RemoteSimulator
