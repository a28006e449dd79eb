"""A request-body size limit for every route that does not enforce its own.

Why: FastAPI reads a JSON body whole before validating it, and the dashboard login reads its
form with ``request.body()``, so without a limit one request with a multi-gigabyte (or
endless chunked) body fills the API process's memory, and with it the process that answers
Chatwoot's webhooks. The admin API and the dashboard only ever receive a few hundred bytes,
so anything over :data:`DEFAULT_MAX_BYTES` is refused with 413 before any route runs (so it
changes nothing) and is never held in memory beyond the limit.

How a refusal ends matters to the client: closing the connection while it is still sending
makes the kernel reset it, and the client then sees a broken connection instead of the 413.
So the rest of a refused body is read and dropped (not kept) up to :data:`DRAIN_BYTES`, and
the answer comes after it; only a body that goes on beyond that, or declares a length beyond
it, gets the 413 at once with ``Connection: close``: an endless body cannot keep the
connection (or the server's CPU) busy.

A body within the limit is buffered and replayed to the app unchanged. ``/webhooks/chatwoot``
is exempt: it streams its body against its own, configurable limit
(``SLUICE_WEBHOOK_MAX_BYTES``, same refusal rules) and must answer 415 before parsing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BYTES = 64 * 1024
DRAIN_BYTES = 1024 * 1024


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes`` outside ``exempt`` paths."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BYTES, exempt: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = frozenset(path.rstrip("/") for path in exempt)

    def _is_exempt(self, scope: Scope) -> bool:
        """Match on the route path: behind ``--root-path`` (or mounted in another app) the
        path carries a prefix, and ``/webhooks/chatwoot/`` is the same route to a client."""
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return path.rstrip("/") in self.exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_exempt(scope):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            ended = await discard(_chunks(receive), self.max_bytes + DRAIN_BYTES, declared)
            await self._refuse(send, close=not ended)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            more = bool(message.get("more_body", False))
            size += len(chunk)
            if size > self.max_bytes:
                ended = not more or await discard(_chunks(receive), DRAIN_BYTES, None)
                await self._refuse(send, close=not ended)
                return
            chunks.append(chunk)
            if not more:
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, send: Send, *, close: bool) -> None:
        payload = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def discard(rest: AsyncIterator[bytes], budget: int, declared: int | None) -> bool:
    """Read and drop the rest of a refused body, at most ``budget`` bytes. True when the
    body ended within that (answer normally); False when it goes on, declares more, or the
    client left (answer with ``Connection: close``, reading no further)."""
    if declared is not None and declared > budget:
        return False
    seen = 0
    try:
        async for chunk in rest:
            seen += len(chunk)
            if seen > budget:
                return False
    except ClientDisconnect:
        return False
    return True


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The remaining body chunks from an ASGI ``receive`` (as ``Request.stream`` does)."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return declared_length(value.decode("latin-1"))
    return None


def declared_length(text: str) -> int | None:
    """A ``Content-Length`` value as a number, or None when it is not one (the server
    rejects those). Bounded: ``int()`` of a 5000-digit string raises instead of answering
    (and ``"²".isdigit()`` is true), so only ASCII digits count and anything longer than 18
    digits reads as "too large" rather than being converted."""
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit():
        return None
    return int(text) if len(text) <= 18 else 10**18


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` first, then defers to the server (so a
    streaming response still learns about the client disconnecting)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
