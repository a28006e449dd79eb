"""Running the API with uvicorn inside an existing event loop (next to workers in
`sluice up`, or alone in `sluice serve`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the host process (workers, CLI) owns
    SIGTERM/SIGINT and stops the server itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServer:
    """A uvicorn server on ``host:port`` (port 0 = any free port, for tests)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Start serving; returns the base URL once the socket is bound and the app's
        lifespan has run."""
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises the startup error
                raise RuntimeError("API server exited during startup")
            await asyncio.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task
