"""`sluice serve --workers N`: N API processes on one listening socket.

uvicorn's own manager (:class:`uvicorn.supervisors.Multiprocess`) does the supervision: the
parent binds the socket once and spawns N children that inherit it (the kernel spreads
connections across their ``accept``), pings each child every half second and replaces one
that died or hangs, stops them all gracefully on SIGTERM/SIGINT (each child finishes its
requests and runs the lifespan's shutdown), restarts them one by one on SIGHUP and adds or
removes one on SIGTTIN/SIGTTOU. A child that fails before serving stops the parent.

A child rebuilds the app from the environment (:func:`app_from_env`, the factory uvicorn
imports by name): the settings are read again, and the parent has put the Redis it
resolved (REDIS_URL, or the embedded server it started) into that environment. The child
asks the kernel for SIGTERM when the parent dies (``PR_SET_PDEATHSIG``), so a parent that
is SIGKILLed leaves no orphan serving the port.

Everything the processes share lives in Redis (docs/operations.md, "Several API
processes"); the intake spool is one SQLite file per queue whose rows each process owns by
slot (:mod:`sluice.service.spool`).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

PARENT_ENV = "SLUICE_API_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """The number of cores this process may run on (the issue's default)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def die_with_parent(parent: int) -> None:
    """Ask for SIGTERM when the parent process dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def app_from_env() -> FastAPI:
    """The app of one child process (uvicorn calls this factory in the child)."""
    from sluice import logs, tracing
    from sluice.api.factory import create_app
    from sluice.settings.config import load_settings

    parent = os.environ.get(PARENT_ENV)
    if parent:
        die_with_parent(int(parent))
    settings = load_settings()
    logs.configure(settings.log_format, process=True)  # the children share one log
    if tracing.configure_tracing("sluice-api"):
        atexit.register(tracing.shutdown_tracing)  # the child's spans are flushed at its exit
    url = settings.redis_url
    if not url:
        raise RuntimeError("an API child needs REDIS_URL (set by `sluice serve`)")
    return create_app(settings, url)


def serve_processes(
    host: str, port: int, workers: int, redis_url: str, listening: Callable[[str], None]
) -> int:
    """Run ``workers`` API processes on ``host:port`` until SIGTERM/SIGINT; the exit code.
    ``listening`` gets the base URL once the socket is bound (connections wait in its
    backlog until a child accepts them). Runs on the main thread (signal handlers, and the
    children's parent-death signal is tied to the thread that spawned them)."""
    os.environ["REDIS_URL"] = redis_url
    os.environ[PARENT_ENV] = str(os.getpid())
    # uvloop's libuv accepts every pending connection at once by default, so a burst of new
    # keep-alive connections (a load balancer's pool, wrk) lands on whichever child woke
    # first; one connection per wake-up spreads them over the children.
    os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
    config = uvicorn.Config(
        "sluice.api.processes:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        lifespan="on",
        access_log=False,
        log_config=None,
    )
    sock = config.bind_socket()
    bound_host, bound_port = sock.getsockname()[:2]
    listening(f"http://{bound_host}:{bound_port}")
    manager = Multiprocess(config, sockets=[sock])
    manager.run()
    sock.close()
    failed = any(p.exitcode == 3 for p in manager.processes)  # uvicorn's STARTUP_FAILURE
    return 3 if failed else 0
