"""``python -m benchmarks``: one database vs tiered, persistio vs raw drivers (see README.md)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from .admin import Admin, LockBusy
from .arms import ARMS
from .drivers import quiet_driver_logs
from .results import RunRecord, markdown, summarize, targets
from .runner import Plan, Runner
from .settings import FULL, QUICK, REDIS_DB_PIO, REDIS_DB_RAW, Endpoints, SettingsError


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def _names(allowed: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        names = text.split(",")
        bad = [n for n in names if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{bad}: choose from {list(allowed)}")
        return names

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="single_postgres vs raw_tiered vs persistio on the PERSISTIO_*_URL servers",
    )
    p.add_argument("--quick", action="store_true", help="one round of 1 s phases (~3 min)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write every run and the summary")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write PNG plots (matplotlib)")
    p.add_argument("--markdown", type=Path, metavar="PATH", help="write the README tables")
    hidden = argparse.SUPPRESS
    # The smoke test's knobs: requests per process per phase (count-bound, one round), a subset
    # of the matrix, its own namespace, and how long to wait for another run's lock.
    p.add_argument("--size", type=int, help=hidden)
    p.add_argument("--batches", type=_ints, default=[1, 100], help=hidden)
    p.add_argument("--concurrency", type=_ints, default=[1, 8], help=hidden)
    p.add_argument(
        "--durability",
        type=_names(("strict", "relaxed")),
        default=["strict", "relaxed"],
        help=hidden,
    )
    p.add_argument("--arms", type=_names(ARMS), default=list(ARMS), help=hidden)
    p.add_argument("--namespace", default="bench", help=hidden)
    p.add_argument("--keep", action="store_true", help=hidden)  # keep databases and keyspace
    p.add_argument("--lock-wait", type=float, default=120.0, help=hidden)
    return p


def _stop(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like ^C, so the finally blocks restore Redis and stop the agents
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    size = QUICK if args.quick else FULL
    if args.size is not None:
        size = replace(size, rounds=1, requests=max(1, args.size))
    plan = Plan(size, args.batches, args.concurrency, args.durability, args.arms)
    try:
        endpoints = Endpoints.from_env(args.namespace)
    except SettingsError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop)
    quiet_driver_logs()
    say = _printer()
    admin = Admin(endpoints)
    try:
        admin.acquire_lock(args.lock_wait)
    except LockBusy as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        admin.close()
        return 2
    meta = _meta(admin, plan)
    runner = Runner(endpoints, plan, admin, say)
    try:
        say(f"setting up {endpoints.namespace}_* databases and keyspace {endpoints.keyspace}")
        runner.prepare()
        say(f"starting {max(plan.concurrencies)} load + worker processes and warming them up")
        runner.start_agents()
        records = runner.run()
    finally:
        try:
            admin.restore_durability()  # first: the shared Redis must never stay at 'always'
        finally:
            runner.close()
            steps = [] if args.keep else [lambda: _cleanup(admin, endpoints)]
            for step in (*steps, admin.release_lock, admin.close):
                try:
                    step()
                except Exception as exc:  # every step gets its chance
                    print(f"benchmarks: cleanup: {type(exc).__name__}: {exc}", file=sys.stderr)
    meta.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), loadavg_end=os.getloadavg())
    meta["seconds"] = round(time.monotonic() - meta.pop("_t0"), 1)
    return _report(records, meta, args)


def _printer() -> Any:
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {text}", file=sys.stderr, flush=True)

    return say


def _cleanup(admin: Admin, endpoints: Endpoints) -> None:
    admin.drop_databases([endpoints.database(n) for n in ("single", "raw", "pio")])
    admin.drop_keyspace()
    for db in (REDIS_DB_PIO, REDIS_DB_RAW):
        admin.redis[db].flushdb()


def _report(records: list[RunRecord], meta: dict[str, Any], args: argparse.Namespace) -> int:
    summary = summarize(records)
    goals = targets(summary)
    table = markdown(summary, goals)
    print(table)
    if args.json:
        document = {
            "runs": [r.to_json() for r in records],
            "summary": summary,
            "targets": goals,
            "meta": meta,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    if args.plots:
        from .plots import write_plots

        for path in write_plots(records, summary, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    incorrect = [r for r in records if not r.correct]
    for r in incorrect:
        print(f"INCORRECT {r.arm} b={r.batch} c={r.concurrency} {r.durability}: {r.problems}")
    return 1 if incorrect else 0


def _meta(admin: Admin, plan: Plan) -> dict[str, Any]:
    """What a reader needs to judge the numbers: the machine, its load, the servers' settings."""
    pg = admin.pg(admin.endpoints.admin_database)
    # source "client" = set by the benchmark's own sessions; the rest is the server's config
    settings = {
        name: f"{value} ({source})"
        for name, value, source in pg.execute(
            "SELECT name, setting, source FROM pg_settings WHERE name IN "
            "('server_version', 'fsync', 'synchronous_commit', 'full_page_writes', "
            "'shared_buffers', 'wal_level')"
        ).fetchall()
    }
    plain = admin.endpoints.pg_conninfo(admin.endpoints.admin_database, sync_commit=False)
    with psycopg.connect(plain) as conn:  # what a session gets without asking
        row = conn.execute("SHOW synchronous_commit").fetchone()
        settings["synchronous_commit (server default)"] = str(row[0] if row else "?")
    info = admin.redis[REDIS_DB_PIO].info("server")
    release = admin.cql("SELECT release_version FROM system.local").one()[0]
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "_t0": time.monotonic(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "loadavg_start": os.getloadavg(),
        "postgres": settings,
        "redis": {"version": info.get("redis_version"), "appendonly": "yes"},
        "cassandra": {"version": release},
        "plan": {
            "rounds": plan.size.rounds,
            "phase_seconds": plan.size.seconds,
            "phase_max_saves": plan.size.max_saves,
            "requests_per_process": plan.size.requests,
            "latency_load": plan.size.latency_load,
            "batches": list(plan.batches),
            "concurrencies": list(plan.concurrencies),
            "durabilities": list(plan.durabilities),
            "arms": list(plan.arms),
        },
    }
