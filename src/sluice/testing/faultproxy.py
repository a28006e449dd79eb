"""A loopback TCP proxy with switchable faults, for reliability tests.

Put it between Sluice and Redis (or any TCP service on this host) and break the link on
purpose while traffic flows::

    proxy = FaultProxy("127.0.0.1", 6379)
    port = await proxy.start()            # point the client at redis://127.0.0.1:<port>/0
    proxy.set_latency(20)                 # +20 ms on each direction
    await proxy.drop()                    # cut every open connection (peers see a reset)
    await proxy.refuse(True)              # new connections are refused: "Redis unreachable"
    proxy.stall(True)                     # connections stay open, no byte moves
    proxy.lose_replies(2)                 # the next 2 answers vanish, their links are cut
    proxy.set_latency(0, 200)             # answers (only) arrive 200 ms late
    await proxy.stop()

Faults are independent and may be combined. Latency delays each chunk by the configured
time without serialising the stream (a chunk read at ``t`` is written at ``t + latency``,
in order). ``refuse(True)`` closes the listening socket, so connecting gets a real
ECONNREFUSED; ``refuse(False)`` listens again on the same port. Only loopback targets are
accepted and the proxy itself listens on 127.0.0.1 only.

What each switch imitates:

- ``set_latency(ms)``: a slow or distant network; ``set_latency(0, down_ms)`` delays only the
  answers ("delayed replies": the server has already acted when the client is still
  waiting, as with a congested return path or a server whose replies queue up).
- ``drop()``: a connection reset (a failover, a NAT or load balancer forgetting flows).
- ``refuse(True)``: the server is down or its port is closed (a crash, a restart).
- ``stall(True)``: a partition in which TCP keeps the connections open (packets dropped,
  not rejected); what was sent meanwhile arrives late, in order, once it heals.
- ``lose_replies(n)``: the next ``n`` chunks coming back from the target, on any link, are
  discarded and their links aborted. The server *executed* the request, but its answer was
  lost on the wire (a reset after the write, a proxy dying between request and response).
  The client sees a connection error for a command that took effect, and a client that
  retries (redis-py's ``Retry``) sends it a second time: the case idempotent writes and
  fencing tokens exist for. ``lose_replies(0)`` cancels losses not used up yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass, field

log = logging.getLogger("sluice.testing.faultproxy")

_CHUNK = 65_536
_LISTEN_HOST = "127.0.0.1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ProxyStats:
    """What the proxy saw: connections accepted, refused and cut, and bytes forwarded."""

    accepted: int = 0
    refused_while_closed: int = 0
    dropped: int = 0
    upstream_failed: int = 0
    bytes_up: int = 0  # client -> target
    bytes_down: int = 0  # target -> client
    replies_lost: int = 0  # chunks from the target discarded by lose_replies


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client side, the target side and the two pumps."""

    client: asyncio.StreamWriter
    target: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.target):
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()  # RST-like: the peer gets an error, not a clean EOF
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """An asyncio TCP proxy from ``127.0.0.1:<port>`` to ``target_host:target_port``.

    Fault switches (all may be changed at any time, from the proxy's event loop):

    - :meth:`set_latency` – milliseconds added to every chunk, each direction;
    - :meth:`drop` – close every current connection at once;
    - :meth:`refuse` – refuse (``True``) or accept again (``False``) new connections;
    - :meth:`stall` – stop (``True``) or resume (``False``) forwarding bytes, without
      closing anything;
    - :meth:`lose_replies` – discard the next ``n`` chunks sent back by the target and cut
      the links they travelled on (the request took effect, its answer never arrives).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        if not _is_loopback(target_host):
            raise ValueError(f"FaultProxy only proxies to loopback targets, not {target_host!r}")
        self.target_host = target_host
        self.target_port = target_port
        self.stats = ProxyStats()
        self._latency_up_s = 0.0
        self._latency_down_s = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._replies_to_lose = 0
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._links: set[_Link] = set()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The listening port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("FaultProxy is not started")
        return self._port

    @property
    def url_host(self) -> str:
        """``127.0.0.1:<port>``, for building a client URL."""
        return f"{_LISTEN_HOST}:{self.port}"

    async def start(self) -> int:
        """Listen on 127.0.0.1 (an ephemeral port); returns the port."""
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        await self._listen(0)
        return self.port

    async def stop(self) -> None:
        """Stop listening and cut every connection."""
        self._flowing.set()  # let stalled pumps notice their cancellation promptly
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.drop()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- faults ----------------------------------------------------------------------------

    def set_latency(self, ms: float, down_ms: float | None = None) -> None:
        """Add ``ms`` to each chunk sent to the target and ``down_ms`` (default: ``ms``) to
        each chunk sent back. ``0`` removes the latency."""
        down = ms if down_ms is None else down_ms
        if ms < 0 or down < 0:
            raise ValueError("latency must be >= 0")
        self._latency_up_s = ms / 1000
        self._latency_down_s = down / 1000

    async def drop(self) -> int:
        """Close every current connection (both sides, abruptly); returns how many."""
        links = list(self._links)
        self._links.clear()
        for link in links:
            link.abort()
        for link in links:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        self.stats.dropped += len(links)
        return len(links)

    async def refuse(self, on: bool) -> None:
        """``True``: stop listening, so new connections get ECONNREFUSED (existing ones are
        left alone; combine with :meth:`drop` for a full outage). ``False``: listen again on
        the same port."""
        if on == self._refusing:
            return
        self._refusing = on
        if self._server is None and self._port is None:
            return  # not started yet: start() will honour nothing but the flag
        if on:
            if self._server is not None:
                self._server.close()
                self._server = None
        else:
            await self._listen(self.port)

    def stall(self, on: bool) -> None:
        """``True``: keep every connection open but forward no byte in either direction
        (new connections are accepted and stall too). ``False``: resume, in order."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    def lose_replies(self, n: int) -> None:
        """Discard the next ``n`` chunks that come back from the target (on any link) and
        abort the link each one travelled on; replaces any count not used up yet, so ``0``
        cancels. A chunk is what one read from the target returned: usually one answer,
        sometimes several pipelined ones or part of a large one. The request that caused it
        was executed; the client only sees its connection fail (and may send it again)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._replies_to_lose = n

    @property
    def replies_to_lose(self) -> int:
        """Losses set by :meth:`lose_replies` that have not happened yet."""
        return self._replies_to_lose

    @property
    def refusing(self) -> bool:
        return self._refusing

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    @property
    def connections(self) -> int:
        """Connections currently proxied."""
        return len(self._links)

    # --- internals -------------------------------------------------------------------------

    async def _listen(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_LISTEN_HOST, port))
        except OSError:
            sock.close()
            raise
        self._server = await asyncio.start_server(self._accept, sock=sock)
        self._port = int(sock.getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:  # a connection that raced the listener's close
            self.stats.refused_while_closed += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError as exc:
            self.stats.upstream_failed += 1
            log.debug("target %s:%s unreachable: %s", self.target_host, self.target_port, exc)
            writer.transport.abort()
            return
        self.stats.accepted += 1
        link = _Link(client=writer, target=up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link, up=True)),
            asyncio.create_task(self._pump(up_reader, writer, link, up=False)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        link.abort()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: _Link,
        *,
        up: bool,
    ) -> None:
        """Copy ``source`` to ``sink`` through a delay line; when either side ends, end the
        whole link (a half-closed Redis connection is of no use to anyone)."""
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def writer() -> None:
            try:
                while True:
                    due, data = await line.get()
                    if not data:
                        return
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await self._flowing.wait()
                    if not up and self._replies_to_lose > 0:
                        # Decided at delivery time, so the chunk lost is one the client was
                        # about to get (latency and stalls apply first).
                        self._replies_to_lose -= 1
                        self.stats.replies_lost += 1
                        link.abort()
                        return
                    sink.write(data)
                    await sink.drain()
                    if up:
                        self.stats.bytes_up += len(data)
                    else:
                        self.stats.bytes_down += len(data)
            except OSError:
                link.abort()  # the sink is gone: end the whole link

        out = asyncio.create_task(writer())
        try:
            while True:
                data = await source.read(_CHUNK)
                latency = self._latency_up_s if up else self._latency_down_s
                line.put_nowait((time.monotonic() + latency, data))
                if not data:
                    break
            await out
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            out.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await out
            link.abort()
