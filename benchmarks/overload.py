"""A load above the workers' service rate, once per ``on_lag`` policy: queue age over time.

    eval "$(bash scripts/services env)"
    .venv/bin/python -m benchmarks.overload --seconds 60 --out benchmarks/plots/overload
    .venv/bin/python -m benchmarks.overload --embedded --seconds 60 --out /tmp/overload-embedded
    .venv/bin/python -m benchmarks.overload --plot-only benchmarks/plots/overload   # CSVs -> PNG

Method: for each policy (``accept``, ``slow``, ``shed``), a fresh namespace and data dir, one
``persistio worker benchmarks.overload_app:store --threads N`` process, and in this process two
producer threads calling ``save_many`` of 200 raw objects of that policy's intent (LOW, within
2 s) as fast as they can, beside one urgent save (HIGH, within 500 ms) every 100 ms; the clock
starts once the worker has served one task of each (its start-up is not in the run). Every
0.5 s a sampler records the LOW queue's depth and oldest age, the saves acknowledged so far and
the ``shed`` and ``slowed`` counts; at the end, the urgent intent's share done within its slice
(the workers' counters, shared through the data dir). One CSV and one JSON summary per policy;
a PNG of the oldest age over time when matplotlib is importable (``--plot-only`` draws it later
from the CSVs).
Redis runs use a database of their own (14), flushed after each policy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import persistio as pio
from benchmarks import overload_app as app

LOG = None if os.environ.get("OVL_LOG") else subprocess.DEVNULL
COLUMNS = ("t_s", "low_oldest_s", "low_pending", "saved", "shed", "slowed")


def _produce(store: pio.Persistio, model: type, stop: threading.Event, saved: list[int]) -> None:
    while not stop.is_set():
        store.save_many([model(uuid.uuid4().hex) for _ in range(200)])
        saved[0] += 200  # one writer per slot: no lock needed


def _urgent(store: pio.Persistio, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        store.save(app.Urgent(uuid.uuid4().hex))


def _warm_up(store: pio.Persistio, model: type, timeout: float = 120.0) -> None:
    """Before the clock runs: the worker process is up, set up, and serving both queues."""
    store.save(app.Urgent(uuid.uuid4().hex))
    store.save(model(uuid.uuid4().hex))
    deadline = time.monotonic() + timeout
    while any(q["pending"] for q in store.status()["queues"].values()):
        if time.monotonic() > deadline:
            raise SystemExit(f"the worker did not serve a task within {timeout} s")
        time.sleep(0.2)


def run_policy(policy: str, seconds: float, threads: int, embedded: bool) -> dict[str, Any]:
    # this process and the worker process share the run's data dir (the workers' counters)
    os.environ.update({"OVL_DATA": tempfile.mkdtemp(prefix=f"overload-{policy}-")})
    os.environ["OVL_NAMESPACE"] = f"ovl_{policy}"
    if embedded:
        for tier in ("TRANSITORY", "VOLATILE", "ACID", "AMORPHOUS"):
            os.environ.pop(f"PERSISTIO_{tier}_URL", None)
    store = app.store_from_env()
    store.setup()
    command = [sys.executable, "-m", "persistio.cli", "worker", "benchmarks.overload_app:store"]
    worker = subprocess.Popen([*command, "--threads", str(threads)], stderr=LOG)
    stop = threading.Event()
    counts = [[0], [0]]
    producers = [
        threading.Thread(target=_produce, args=(store, app.MODELS[policy], stop, c)) for c in counts
    ]
    rows: list[tuple[float, ...]] = []
    try:
        _warm_up(store, app.MODELS[policy])
        for t in [*producers, threading.Thread(target=_urgent, args=(store, stop))]:
            t.start()
        began = time.monotonic()
        while (now := time.monotonic() - began) < seconds:
            status = store.status()
            low = status["queues"]["low"]
            rows.append(
                (
                    round(now, 2),
                    low.get("oldest_age_s") or 0.0,
                    low.get("pending", 0),
                    sum(c[0] for c in counts),
                    sum(status["shed"].values()),
                    sum(status["slowed"].values()),
                )
            )
            time.sleep(max(0.0, 0.5 - (time.monotonic() - began - now)))
    finally:
        stop.set()
        for t in producers:
            t.join()
        status = store.status()
        worker.terminate()
        worker.wait(timeout=60)
        store.close()
        if not embedded:
            from benchmarks.scaling_app import flush_redis

            url = os.environ["PERSISTIO_TRANSITORY_URL"]
            flush_redis(url.rsplit("/", 1)[0] + f"/{app.REDIS_DB}")
    urgent = status["promises"]["ovl_urgent"]
    return {
        "policy": policy,
        "rows": rows,
        "saves_per_s": sum(c[0] for c in counts) / seconds,
        "max_oldest_s": max(r[1] for r in rows),
        "final_pending": rows[-1][2],
        "shed": rows[-1][4],
        "slowed": rows[-1][5],
        "urgent_on_time": urgent["total_on_time"],
        "urgent_late": urgent["total_late"],
    }


def write_csv(out: Path, policy: str, rows: list[tuple[float, ...]]) -> None:
    with (out / f"{policy}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)


def plot(out: Path) -> Path | None:
    """queue_age.png from the CSVs in ``out``; None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # before pyplot: no display on a server
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for path in sorted(out.glob("*.csv")):
        with path.open() as f:
            data = list(csv.DictReader(f))
        ax.plot(
            [float(r["t_s"]) for r in data],
            [float(r["low_oldest_s"]) for r in data],
            label=f"on_lag={path.stem!r}",
        )
    ax.axhline(app.WITHIN.total_seconds(), color="grey", linestyle="--", label="within (2 s)")
    ax.set_xlabel("seconds under overload")
    ax.set_ylabel("oldest LOW task (s)")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)
    ax.set_title("Oldest pending task under a load above the service rate")
    ax.legend()
    fig.tight_layout()
    target = out / "queue_age.png"
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overload", description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=1, help="worker threads (one process)")
    p.add_argument("--policies", nargs="+", default=["accept", "slow", "shed"])
    p.add_argument("--embedded", action="store_true", help="ignore PERSISTIO_*_URL")
    p.add_argument("--out", type=Path, default=Path("benchmarks/plots/overload"))
    p.add_argument("--plot-only", type=Path, metavar="DIR", help="draw DIR's CSVs and stop")
    args = p.parse_args(argv)
    if args.plot_only:
        print(plot(args.plot_only) or "matplotlib is not installed: no plot")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for policy in args.policies:
        result = run_policy(policy, args.seconds, args.threads, args.embedded)
        write_csv(args.out, policy, result.pop("rows"))
        (args.out / f"{policy}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result), flush=True)
    print(plot(args.out) or "matplotlib is not installed: CSVs only (see --plot-only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
