"""The cluster nodes the tests look at and break: found from the URLs, checked to be ours.

A node is killed only when it is a process of this checkout's ``scripts/services --cluster``:
a Redis node's working directory, or a Cassandra node's command line, must be under the
services folder. Nodes come back with ``scripts/services start --cluster``, which starts the
missing ones on their own data (a Redis node rejoins as a replica, a Cassandra node keeps its
place in the ring and gets its hints).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests import redis_clients
from tests.faults.servers import REPO, SERVICES_DIR, listener_pid

CLUSTER_DIR = SERVICES_DIR / "cluster"


@dataclass(frozen=True)
class RedisNode:
    host: str
    port: int
    node_id: str
    master: bool
    master_id: str  # "-" for a master
    slots: tuple[tuple[int, int], ...]

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def serves(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


def redis_nodes(url: str) -> list[RedisNode]:
    """Every node the cluster knows and does not think failed, as CLUSTER NODES says."""
    client = redis_clients.client(url)
    try:
        nodes: Any = client.cluster_nodes()
    finally:
        client.close()
    found = []
    for addr, info in nodes.items():
        if "fail" in info["flags"] or "noaddr" in info["flags"]:
            continue
        host, _, port = addr.rpartition(":")
        slots = tuple((int(s[0]), int(s[-1])) for s in info["slots"])
        found.append(
            RedisNode(
                host,
                int(port),
                info["node_id"],
                "master" in info["flags"],
                info["master_id"],
                slots,
            )
        )
    return found


def master_of(url: str, slot: int) -> RedisNode:
    return next(n for n in redis_nodes(url) if n.master and n.serves(slot))


def replica_of(url: str, master: RedisNode) -> RedisNode:
    return next(n for n in redis_nodes(url) if n.master_id == master.node_id)


def node_client(node: RedisNode) -> redis.Redis:
    """A plain client of one node (READONLY: a replica answers reads of its master's slots)."""
    client = redis.Redis(host=node.host, port=node.port, socket_timeout=5)
    client.execute_command("READONLY")
    return client


def redis_pid(node: RedisNode) -> int:
    pid = listener_pid(node.port)
    assert pid is not None, f"nothing listens on {node.name}"
    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    assert cwd.is_relative_to(CLUSTER_DIR), f"{node.name} (pid {pid}, in {cwd}) is not ours"
    return pid


def kill_redis(node: RedisNode) -> None:
    """SIGKILL one Redis node: no shutdown, nothing more reaches its AOF or its replica."""
    os.kill(redis_pid(node), signal.SIGKILL)


def cassandra_pid(index: int) -> int:
    pid = int((CLUSTER_DIR / "cassandra" / f"node{index}" / "cassandra.pid").read_text().split()[0])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"CassandraDaemon" in cmdline, f"pid {pid} is not a Cassandra node"
    assert str(CLUSTER_DIR).encode() in cmdline, f"pid {pid} is not this checkout's node"
    return pid


def kill_cassandra(index: int) -> None:
    os.kill(cassandra_pid(index), signal.SIGKILL)


def restart_missing_nodes(timeout: float = 300.0) -> float:
    """``scripts/services start --cluster``: starts what is down; seconds it took."""
    t0 = time.monotonic()
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "services"), "start", "--cluster"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return time.monotonic() - t0


def wait_cluster_ok(url: str, timeout: float = 60.0) -> None:
    """Every master has a replica in sync again (the restarted node resynced)."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = redis_nodes(url)
        masters = [n for n in nodes if n.master and n.slots]
        synced = all(_in_sync(n) for n in nodes if not n.master)
        if (
            len(masters) == 3
            and synced
            and all(any(r.master_id == m.node_id for r in nodes) for m in masters)
        ):
            return
        assert time.monotonic() < deadline, f"the cluster did not heal: {nodes}"
        time.sleep(0.5)


def _in_sync(node: RedisNode) -> bool:
    try:
        with redis.Redis(host=node.host, port=node.port, socket_timeout=2) as client:
            info: Any = client.info("replication")
    except redis.RedisError:
        return False
    return bool(info.get("master_link_status") == "up")
