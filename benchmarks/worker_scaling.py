"""Deferred-task throughput of 1 vs N worker processes on the real services.

    eval "$(scripts/services env)"; python -m benchmarks.worker_scaling --tasks 6000 --workers 1 3

Method: enqueue ``--tasks`` saves whose two intents are both deferred (an acid row at HIGH and a
Cassandra row at NORMAL, so 2 tasks per save), then start the workers (``persistio worker``
processes) and time from their start until both queues are empty; tasks/s = 2 * saves / time.
Process start-up (~1 s of imports) is inside the time, as it is for a real deploy. On this
2-core machine, more than 2 workers compete for CPU with the servers: compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid

import persistio as pio
from benchmarks.scaling_app import ScalingTask, store_from_env


def pending(store: pio.Persistio) -> int:
    return sum(q["pending"] for q in store.status()["queues"].values())


def run(tasks: int, workers: int) -> float:
    import redis

    store = store_from_env()
    redis.Redis.from_url(store.urls[pio.Tier.TRANSITORY]).flushdb()
    store.setup()
    for start in range(0, tasks, 500):
        store.save_many(ScalingTask(uuid.uuid4(), i % 64) for i in range(start, start + 500))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
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
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        store.close()
    return 2 * tasks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    rates = {n: run(args.tasks, n) for n in args.workers}
    base = rates[args.workers[0]]
    for n, rate in rates.items():
        print(f"{n} worker(s): {rate:,.0f} deferred tasks/s  ({rate / base:.2f}x)")


if __name__ == "__main__":
    main()
