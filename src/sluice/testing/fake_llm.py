"""A fake OpenAI-compatible chat-completions endpoint on loopback HTTP that can be taken down.

It behaves like the real API as documented by OpenAI (API reference, "Chat Completions":
``POST /v1/chat/completions`` answered by a ``chat.completion`` object whose
``choices[0].message.content`` holds the text; guides, "Error codes": a ``{"error":
{"message", "type", "param", "code"}}`` body, and for an outage ``500 - The server had an
error while processing your request`` or ``503 - The engine is currently overloaded,
please try again later``). While healthy it answers after ``latency_s``; an outage is one
of:

* ``"503"`` (or any status): every request answered at once with that status and the
  error body OpenAI sends for it (what its status page calls "elevated error rates");
* ``"hang"``: requests are accepted and never answered (a stalled upstream or gateway:
  the client's own timeout ends them), until :meth:`heal`;
* ``"refused"``: the listener is closed, so connecting fails (``ConnectError``: the
  endpoint's host down or its port not served), and opened again on the same port by
  :meth:`heal`.

The reliability tests and ``benchmarks/breaker_outage.py`` use it; nothing in Sluice
depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sluice.api.server import ApiServer

__all__ = ["FakeLlm"]

_ERRORS = {
    500: ("The server had an error while processing your request. Sorry about that!", None),
    503: ("The engine is currently overloaded, please try again later.", None),
    429: ("Rate limit reached for requests.", "rate_limit_exceeded"),
}


class FakeLlm:
    """The endpoint; ``base_url`` (``http://127.0.0.1:<port>/v1``) once started."""

    def __init__(self, *, latency_s: float = 0.0, content: str = "Happy to help!") -> None:
        self.latency_s = latency_s
        self.content = content
        self.outage: str | None = None
        self.requests = 0
        self.answered = 0
        self.failed = 0
        self._healed = asyncio.Event()
        self._arrived = asyncio.Condition()
        self._port = 0
        self._server: ApiServer | None = None
        self.base_url = ""

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> JSONResponse:
            body = await request.json()
            async with self._arrived:
                self.requests += 1
                self._arrived.notify_all()
            outage = self.outage
            if outage == "hang":
                await self._healed.wait()  # answered only once the endpoint heals
            elif outage is not None:
                return self._error(int(outage))
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            self.answered += 1
            return JSONResponse(_completion(body.get("model"), self.content))

        return app

    async def wait_for_requests(self, count: int) -> None:
        """Until ``count`` requests have arrived in all (answered or not)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.requests >= count)

    def _error(self, status: int) -> JSONResponse:
        self.failed += 1
        message, code = _ERRORS.get(status, ("Upstream error.", None))
        kind = "requests" if status == 429 else "server_error"
        return JSONResponse(
            {"error": {"message": message, "type": kind, "param": None, "code": code}},
            status_code=status,
        )

    async def start(self) -> str:
        """Serve (on the same port as before after a ``refused`` outage)."""
        self._server = ApiServer(self._app(), "127.0.0.1", self._port)
        url = await self._server.start()
        self._port = int(url.rsplit(":", 1)[1])
        self.base_url = f"{url}/v1"
        return self.base_url

    async def stop(self) -> None:
        self._healed.set()  # let hanging requests end, or shutdown waits for them
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def break_down(self, outage: str) -> None:
        """Start an outage: ``"503"`` (any status), ``"hang"`` or ``"refused"``."""
        if outage not in ("hang", "refused") and not outage.isdigit():
            raise ValueError(f"outage must be a status code, 'hang' or 'refused', not {outage!r}")
        self._healed.clear()
        if outage == "refused":
            await self.stop()
            self._healed.clear()
        self.outage = outage

    async def heal(self) -> None:
        """End the outage: answer again (hanging requests get their answer now)."""
        was = self.outage
        self.outage = None
        self._healed.set()
        if was == "refused":
            await self.start()

    async def __aenter__(self) -> FakeLlm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.stop()


def _completion(model: Any, content: str) -> dict[str, Any]:
    """A ``chat.completion`` object as the API reference shows it."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 42, "completion_tokens": 12, "total_tokens": 54},
    }
