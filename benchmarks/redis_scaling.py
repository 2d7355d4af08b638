"""Throughput of persistio's Redis writes on a Redis Cluster of 1 master vs 3 masters.

    .venv/bin/python -m benchmarks.redis_scaling --rounds 3

Method. The script makes two throwaway clusters of its own (temporary directories, free ports,
no replicas, no persistence): one master holding all 16,384 slots, then three masters holding a
third each (``CLUSTER ADDSLOTSRANGE``, as ``redis-cli --cluster create`` splits them). Against
each, ``--clients`` processes call the backend's one write method (``RedisClusterStore.write``,
what a save's combiner flush calls) in a loop with batches of ``--batch`` saves, prebuilt, so a
client's time goes to grouping by slot, packing and the round trips, and the servers' to the
write script. Two workloads:

- ``stream``: a save is one deduplicated append to a hot transitory intent spread over 6
  partitions (two per master; ``max_len`` trims them): a batch is 6 script calls of many
  appends each, so a master does far more work per call than the client does: Redis is the
  bottleneck on one master (its CPU near 100% of a core).
- ``mixed``: the same append plus a volatile put of one of 100,000 keys. Each key is its own
  slot, so a batch is about one script call per save, and the client's per-call work (a reply
  to read per call) is the bottleneck: more masters do not help it.

It reports saves/s after a warm-up, each master's CPU (``INFO cpu``, user + sys, over the
measured span) and, per workload, the ratio 3 masters / 1 master (the median of the rounds' own
ratios: a round runs both layouts side by side). It also reports what does not depend on the
machine's other load: the masters' CPU per save, and the busiest master's share of it. When
Redis is the bottleneck a layout's capacity is one master's capacity divided by that share, so
``1 / share`` is the speed-up a core per master would give (3.0 for an even spread).

Caveats. On this 2-core machine the client processes and the masters share the cores: one
master can use at most one core while the clients use the other; three masters get what the
clients leave, so the ratio says how much a single busy master held back, not what three
machines would do (there, the ratio tends to the number of masters while clients keep up).
Without persistence or replicas the servers do less than in production (AOF writes, feeding
replicas); the shape holds, the absolute rates are optimistic. A run is short: repeat it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from persistio.backends.base import Append, Op, Options, Put, StreamSpec
from persistio.backends.redis.cluster import RedisClusterStore
from persistio.model.partitions import SLOTS, partition_names

HOST = "127.0.0.1"
KEYS = 100_000
PAYLOAD = b"x" * 200  # about a check-in's msgpack


@dataclass(frozen=True)
class Run:
    workload: str
    masters: int
    saves_per_s: float
    master_cpu: list[float]  # share of one core, per master
    clients: int

    @property
    def cpu_us_per_save(self) -> float:
        """Masters' CPU (all of them) per save, in microseconds."""
        return sum(self.master_cpu) / self.saves_per_s * 1e6

    @property
    def busiest_share(self) -> float:
        """The busiest master's share of the masters' CPU (1.0 with one master)."""
        return max(self.master_cpu) / sum(self.master_cpu)


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port + 10_000 < 65_536:
            with socket.socket() as bus:
                try:
                    bus.bind((HOST, port + 10_000))
                except OSError:
                    continue
            return port


@contextmanager
def cluster(masters: int) -> Iterator[list[int]]:
    """A cluster of ``masters`` masters and no replicas, gone on exit; its ports."""
    root = Path(tempfile.mkdtemp(prefix="persistio-redis-scaling-"))
    procs: list[subprocess.Popen[bytes]] = []
    ports = [_free_port() for _ in range(masters)]
    try:
        for port in ports:
            node = root / str(port)
            node.mkdir()
            procs.append(
                subprocess.Popen(
                    ["redis-server", "--port", str(port), "--bind", HOST, "--dir", str(node),
                     "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--save", "", "--appendonly", "no", "--daemonize", "no"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        clients = [redis.Redis(host=HOST, port=p, socket_timeout=5) for p in ports]
        for client in clients:
            _wait_ping(client)
        for client in clients[1:]:
            _command(client, "CLUSTER", "MEET", HOST, ports[0])
        for i, client in enumerate(clients):
            low, high = i * SLOTS // masters, (i + 1) * SLOTS // masters - 1
            _command(client, "CLUSTER", "ADDSLOTSRANGE", low, high)
        _wait_ok(clients)
        for client in clients:
            client.close()
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _command(client: redis.Redis, *args: Any) -> Any:
    untyped: Any = client  # redis-py's execute_command is untyped
    return untyped.execute_command(*args)


def _wait_ping(client: redis.Redis) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if client.ping():
                return
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("a redis-server did not start")
        time.sleep(0.05)


def _wait_ok(clients: list[redis.Redis]) -> None:
    deadline = time.monotonic() + 30
    while True:
        infos = [_command(c, "CLUSTER", "INFO").decode() for c in clients]
        if all(
            "cluster_state:ok" in i and f"cluster_known_nodes:{len(clients)}" in i for i in infos
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster did not form: {infos[0]}")
        time.sleep(0.1)


def _cpu(port: int) -> float:
    with redis.Redis(host=HOST, port=port) as client:
        info: Any = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _batches(workload: str, client: int, batch: int) -> Iterator[list[Op]]:
    """Endless batches: per save, a deduplicated append (fresh ids) and, in ``mixed``, a
    volatile put (a newer timestamp each time)."""
    streams = [StreamSpec(name, max_len=10_000) for name in partition_names("bench", 6)]
    n = 0
    while True:
        ops: list[Op] = []
        ts = time.time_ns() // 1000
        expires = ts + 600_000_000
        for _ in range(batch):
            n += 1
            ops.append(Append(streams[n % 6], f"{client}-{n}", PAYLOAD))
            if workload == "mixed":
                key = str((client * 7919 + n) % KEYS)
                ops.append(Put("bench_now", key, ts + n, expires, PAYLOAD))
        yield ops


def _client(
    workload: str, url: str, index: int, batch: int, start: float, stop: float, out: Any
) -> None:
    # a short dedup window keeps the markers (one key per append) few
    options = Options(Path(tempfile.gettempdir()), dedup_window_seconds=2)
    store = RedisClusterStore(url, options, "redis_scaling")
    done = 0
    try:
        for ops in _batches(workload, index, batch):
            now = time.time()
            if now >= stop:
                break
            store.write(ops)
            if now >= start:
                done += batch
    finally:
        store.close()
    out.put(done)


def measure(
    workload: str, masters: int, clients: int, batch: int, seconds: float, warmup: float
) -> Run:
    with cluster(masters) as ports:
        url = "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in ports) + "/"
        begin = time.time() + 1.0  # the processes start
        start, stop = begin + warmup, begin + warmup + seconds
        out: Any = multiprocessing.Queue()
        procs = [
            multiprocessing.Process(
                target=_client, args=(workload, url, i, batch, start, stop, out)
            )
            for i in range(clients)
        ]
        for proc in procs:
            proc.start()
        time.sleep(max(0.0, start - time.time()))
        cpu0 = [_cpu(p) for p in ports]
        time.sleep(max(0.0, stop - time.time()))
        cpu1 = [_cpu(p) for p in ports]
        saves = sum(out.get(timeout=120) for _ in procs)
        for proc in procs:
            proc.join(timeout=60)
    cpu = [(b - a) / seconds for a, b in zip(cpu0, cpu1, strict=True)]
    return Run(workload, masters, saves / seconds, cpu, clients)


def _fields(run: Run) -> dict[str, Any]:
    return {**vars(run), "cpu_us_per_save": run.cpu_us_per_save, "busiest": run.busiest_share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=3, help="client processes")
    parser.add_argument("--batch", type=int, default=1000, help="saves per write call")
    parser.add_argument("--rounds", type=int, default=1, help="1 then 3 masters, this many times")
    parser.add_argument(
        "--workload", choices=("stream", "mixed", "both"), default="both", help="see the method"
    )
    parser.add_argument("--json", type=Path, help="write the runs here")
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    workloads = ("stream", "mixed") if args.workload == "both" else (args.workload,)
    runs: list[Run] = []
    ratios: dict[str, float] = {}
    for workload in workloads:
        rounds: list[float] = []
        for _ in range(args.rounds):
            pair = [
                measure(workload, masters, args.clients, args.batch, args.seconds, args.warmup)
                for masters in (1, 3)
            ]
            runs += pair
            rounds.append(pair[1].saves_per_s / pair[0].saves_per_s)
            for run in pair:
                cpu = ", ".join(f"{c:.0%}" for c in run.master_cpu)
                print(
                    f"{workload:6} {run.masters} master(s): {run.saves_per_s:10,.0f} saves/s"
                    f"  master CPU {cpu}; {run.cpu_us_per_save:.1f} us/save,"
                    f" busiest {run.busiest_share:.0%}"
                )
            print(f"{workload:6} round ratio: {rounds[-1]:.2f}x")
        # rounds side by side share the machine's state: the median of their ratios is steadier
        # than a ratio of medians on a machine other work also uses
        ratios[workload] = statistics.median(rounds)
        spread = [r for r in runs if r.workload == workload and r.masters == 3]
        projected = statistics.median(1 / r.busiest_share for r in spread)
        cost = statistics.median(r.cpu_us_per_save for r in runs if r.workload == workload)
        print(
            f"{workload:6} 3 masters / 1 master: {ratios[workload]:.2f}x measured (median of"
            f" {len(rounds)} rounds; {os.cpu_count()} cores, {args.clients} client processes);"
            f" {cost:.1f} us of master CPU per save; with a core per master:"
            f" {projected:.2f}x"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"ratios": ratios, "runs": [_fields(r) for r in runs], "args": vars(args)},
                       indent=2, default=str) + "\n"
        )  # fmt: skip


if __name__ == "__main__":
    main()
