"""Deferred-task throughput of 1 vs N worker processes, and what each task costs each server.

    eval "$(scripts/services env)"; python -m benchmarks.worker_scaling --tasks 6000 --workers 1 3
    eval "$(scripts/services env --cluster)"; python -m benchmarks.worker_scaling  # the clusters

Method: enqueue ``--tasks`` saves whose two intents are both deferred (an acid row at HIGH and a
Cassandra row at NORMAL, so 2 tasks per save; task queues of 3 partitions), then start the
workers (``persistio worker`` processes) and time from their start until both queues are empty;
tasks/s = 2 * saves / time. Process start-up (~1 s of imports) is inside the time, as it is for
a real deploy. Over the same span it reads the CPU time of the workers and of every local server
process (each Redis master or server, each Cassandra node, PostgreSQL with its backends), found
by the address it listens on (``benchmarks/listeners.py``), less what each burnt idle in the 3 s
before: per task, that is what a capacity model needs (docs/scaling.md). On this 2-core machine,
more than 2 workers compete for CPU with the servers: compare the ratios, and the CPU per task,
rather than the absolute rates.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import persistio as pio
from benchmarks.listeners import cpu_seconds, listener
from benchmarks.scaling_app import ScalingTask, flush_redis, store_from_env
from benchmarks.serverload import PgProcesses

IDLE_SAMPLE = 3.0  # seconds the servers are watched idle before the workers start


def pending(store: pio.Persistio) -> int:
    return sum(q["pending"] for q in store.status()["queues"].values())


def servers(store: pio.Persistio) -> dict[str, list[int]]:
    """Local server pids by kind: Redis (each listed node), Cassandra (each listed host)."""
    found: dict[str, list[int]] = {"redis": [], "cassandra": []}
    for kind, tier in (("redis", pio.Tier.TRANSITORY), ("cassandra", pio.Tier.AMORPHOUS)):
        netloc = urlsplit(store.urls[tier]).netloc.rpartition("@")[2]
        items = netloc.split(",")
        last_port = items[-1].rpartition(":")[2]
        for item in items:
            host, sep, port = item.rpartition(":")
            host, port = (host, port) if sep else (item, last_port)
            pid = listener(host, int(port or 9042))
            if pid is not None:
                found[kind].append(pid)
    return found


def cpu_now(pids: dict[str, list[int]], pg: PgProcesses | None) -> dict[str, float]:
    out = {kind: sum(cpu_seconds(p) for p in found) for kind, found in pids.items()}
    pg_cpu = pg.cpu_seconds() if pg is not None else None
    if pg_cpu is not None:
        out["postgres"] = pg_cpu
    return out


def run(tasks: int, workers: int) -> dict[str, Any]:
    store = store_from_env()
    flush_redis(store.urls[pio.Tier.TRANSITORY])
    store.setup()
    for start in range(0, tasks, 500):
        store.save_many(ScalingTask(uuid.uuid4(), i % 64) for i in range(start, start + 500))
    pids = servers(store)
    pg = PgProcesses.of(store.urls[pio.Tier.ACID])
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    # what the servers burn idle (a JVM's housekeeping), taken off their figures below
    idle_at, idle0 = time.monotonic(), cpu_now(pids, pg)
    time.sleep(IDLE_SAMPLE)
    before = cpu_now(pids, pg)
    idle = {k: (before[k] - idle0[k]) / (time.monotonic() - idle_at) for k in before}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "persistio.cli", "worker", "benchmarks.scaling_app:store"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        while pending(store):
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        after = cpu_now(pids, pg)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        store.close()
    done = 2 * tasks
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the workers' own CPU (start-up included): what sizes the worker fleet
    workers_cpu = ended.ru_utime + ended.ru_stime - children.ru_utime - children.ru_stime
    return {
        "workers": workers,
        "tasks_per_s": done / elapsed,
        "nodes": {k: len(v) for k, v in pids.items()},
        "cpu_us_per_task": {
            "workers": workers_cpu / done * 1e6,
            **{k: max(0.0, after[k] - before[k] - idle[k] * elapsed) / done * 1e6 for k in after},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    results = [run(args.tasks, n) for n in args.workers]
    base = results[0]["tasks_per_s"]
    for r in results:
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_us_per_task"].items())
        print(
            f"{r['workers']} worker(s): {r['tasks_per_s']:,.0f} deferred tasks/s"
            f"  ({r['tasks_per_s'] / base:.2f}x); CPU per task, us: {cpu}"
            f"  (nodes: {r['nodes']})"
        )


if __name__ == "__main__":
    main()
