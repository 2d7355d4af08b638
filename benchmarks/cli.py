"""``python -m benchmarks``: one database vs tiered, persistio vs raw drivers (see README.md)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from . import ceilings
from .admin import APPENDFSYNC, Admin, LockBusy
from .arms import ARMS
from .drivers import quiet_driver_logs
from .outage import OutageRecord, OutageSize, run_outages
from .results import RunRecord, apply_ceilings, markdown, summarize, targets
from .runner import Plan, Runner, configs
from .settings import FULL, QUICK, REDIS_DB_PIO, REDIS_DB_RAW, Endpoints, SettingsError
from .workload import ALL_ACID, SEED, WORKLOADS


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


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
    p.add_argument("--quick", action="store_true", help="one round of 1 s phases (~5 min)")
    p.add_argument(
        "--workload",
        choices=(SEED, ALL_ACID, "both"),
        default="both",
        help="seed: the check-in's six tasks; all_acid: the first benchmark's mix (default both)",
    )
    p.add_argument(
        "--outage",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pause PostgreSQL for 15 s under load, per arm and workload "
        "(default: on in the full run, off with --quick)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="write every run and the summary")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write PNG plots (matplotlib)")
    p.add_argument("--markdown", type=Path, metavar="PATH", help="write the README tables")
    hidden = argparse.SUPPRESS
    # The smoke test's knobs: requests per process per phase (count-bound, one round), a subset
    # of the matrix, its own namespace, and how long to wait for another run's lock.
    p.add_argument("--size", type=int, help=hidden)
    p.add_argument("--batches", type=_ints, default=[1, 100], help=hidden)
    p.add_argument("--concurrency", type=_ints, default=[1, 8], help=hidden)
    p.add_argument("--threads", type=_ints, default=[8], help=hidden)  # at batch 1, 1 process
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
    # leave PostgreSQL's fsync/full_page_writes/synchronous_commit as they are (the smoke test,
    # on the shared test servers)
    p.add_argument("--no-pg-durability", action="store_true", help=hidden)
    p.add_argument("--ceilings", action=argparse.BooleanOptionalAction, default=True, help=hidden)
    p.add_argument("--pause", type=float, default=OutageSize.pause, help=hidden)
    return p


def _stop(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like ^C, so the finally blocks resume PostgreSQL, restore the servers'
    # settings and stop the agents
    raise SystemExit(128 + signum)


def _plan(args: argparse.Namespace) -> Plan:
    size = QUICK if args.quick else FULL
    if args.size is not None:
        size = replace(
            size,
            rounds=1,
            requests=max(1, args.size),
            ceiling_requests=5_000,
            ceiling_seconds=1,
        )
    outage = (not args.quick) if args.outage is None else args.outage
    workloads = list(WORKLOADS) if args.workload == "both" else [args.workload]
    matrix = configs(args.batches, args.concurrency, args.threads)
    return Plan(size, matrix, args.durability, args.arms, workloads, outage)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    plan = _plan(args)
    try:
        endpoints = Endpoints.from_env(args.namespace)
    except SettingsError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop)
    quiet_driver_logs()
    say = _printer()
    admin = Admin(endpoints, say)
    try:
        admin.acquire_lock(args.lock_wait)
    except LockBusy as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        admin.close()
        return 2
    meta = _meta(admin, plan)
    runner = Runner(endpoints, plan, admin, say)
    records: list[RunRecord] = []
    outages: list[OutageRecord] = []
    try:
        _setup(args, admin, runner, meta)
        say(
            f"starting {plan.processes} load + {max(plan.workers(c) for c in plan.configs)} "
            f"worker processes and warming them up ({', '.join(plan.workloads)})"
        )
        runner.start_agents()
        records = runner.run()
        meta["server_settings"]["postgres_checkpoint_before_each_run"] = admin.can_checkpoint
        if plan.outage:
            durability = "relaxed" if "relaxed" in plan.durabilities else plan.durabilities[-1]
            admin.set_durability(durability)
            say(f"outage phase: PostgreSQL paused for {args.pause:.0f} s per arm and workload")
            outages = run_outages(runner, records, durability, OutageSize(pause=args.pause))
    finally:
        aborted = sys.exc_info()[1] is not None  # ^C, SIGTERM, a fatal error: do not linger
        _unwind(
            [
                admin.restore_durability,  # first: the shared Redis must never stay at 'always'
                admin.pg_restore_durability,
                lambda: runner.close(grace=3.0 if aborted else 30.0),
                *([] if args.keep else [lambda: _cleanup(admin, endpoints)]),
                admin.release_lock,
                admin.close,
            ]
        )
    meta.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), loadavg_end=os.getloadavg())
    meta["seconds"] = round(time.monotonic() - meta.pop("_t0"), 1)
    return _report(records, outages, meta, args)


def _setup(args: argparse.Namespace, admin: Admin, runner: Runner, meta: dict[str, Any]) -> None:
    """Durable PostgreSQL, the settings it all ran with, databases and tables, the ceilings."""
    plan, say = runner.plan, admin.say
    if args.no_pg_durability:
        switch: dict[str, Any] = {"skipped": "--no-pg-durability"}
    else:
        say("PostgreSQL: fsync, full_page_writes, synchronous_commit on for this run")
        switch = admin.pg_durability_on()
    meta["server_settings"] = _server_settings(admin, plan, switch)
    meta["postgres"] = meta["server_settings"]["postgres"]
    endpoints = admin.endpoints
    say(f"setting up {endpoints.namespace}_* databases and keyspace {endpoints.keyspace}")
    runner.prepare()
    meta["ceilings"] = {}
    if args.ceilings:
        say("ceilings: redis-benchmark and pgbench on the same servers")
        meta["ceilings"] = ceilings.measure(
            admin,
            list(plan.durabilities),
            redis_requests=plan.size.ceiling_requests,
            pg_seconds=plan.size.ceiling_seconds,
        )


def _unwind(steps: Sequence[Callable[[], object]]) -> None:
    for step in steps:
        try:
            step()
        except Exception as exc:  # every step gets its chance
            print(f"benchmarks: cleanup: {type(exc).__name__}: {exc}", file=sys.stderr)


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


def _report(
    records: list[RunRecord],
    outages: list[OutageRecord],
    meta: dict[str, Any],
    args: argparse.Namespace,
) -> int:
    apply_ceilings(records, meta.get("ceilings") or {})
    summary = summarize(records, meta.get("ceilings"))
    goals = targets(summary)
    outage_rows = [o.to_json() for o in outages]
    table = markdown(summary, goals, outage_rows)
    print(table)
    if args.json:
        document = {
            "runs": [r.to_json() for r in records],
            "summary": summary,
            "targets": goals,
            "outages": outage_rows,
            "meta": meta,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    if args.plots:
        from .plots import write_plots

        for path in write_plots(records, summary, outage_rows, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    incorrect = [r for r in records if not r.correct]
    for r in incorrect:
        print(
            f"INCORRECT {r.workload} {r.arm} b={r.batch} c={r.concurrency} t={r.threads} "
            f"{r.durability}: {r.problems}"
        )
    for o in outages:
        if o.lost or o.duplicated or o.problems:
            print(
                f"OUTAGE {o.workload} {o.arm}: lost {o.lost}, duplicated {o.duplicated}, "
                f"{o.problems}"
            )
    failed_outages = [o for o in outages if o.lost or o.duplicated or o.problems]
    return 1 if incorrect or failed_outages or not records else 0


def _server_settings(admin: Admin, plan: Plan, switch: dict[str, Any]) -> dict[str, Any]:
    """The settings every run ran with (after the durability switch)."""
    pg = admin.pg_settings()
    plain = admin.endpoints.pg_conninfo(admin.endpoints.admin_database, sync_commit=False)
    with psycopg.connect(plain) as conn:  # what a session gets without asking
        row = conn.execute("SHOW synchronous_commit").fetchone()
        pg["synchronous_commit (session default)"] = str(row[0] if row else "?")
    redis_config = admin.lock_redis.config_get("appendonly")
    cassandra: dict[str, Any] = {}
    try:
        for name, value in admin.cql(
            "SELECT name, value FROM system_views.settings WHERE name IN "
            "('commitlog_sync', 'commitlog_sync_period', 'commitlog_sync_period_in_ms')"
        ):
            cassandra[name] = value
    except Exception as exc:  # an older Cassandra without the virtual table
        cassandra["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return {
        "postgres": pg,
        "postgres_durability_switch": switch,
        "redis": {
            "appendonly": redis_config.get("appendonly"),
            "appendfsync": {d: APPENDFSYNC[d] for d in plan.durabilities},
        },
        "cassandra": cassandra,
    }


def _meta(admin: Admin, plan: Plan) -> dict[str, Any]:
    """What a reader needs to judge the numbers: the machine, its load, the servers."""
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
    server_version = admin.pg_settings().get("server_version")
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
        "postgres": {"version": server_version},
        "redis": {"version": info.get("redis_version"), "appendonly": "yes"},
        "cassandra": {"version": release},
        "plan": {
            "rounds": plan.size.rounds,
            "phase_seconds": plan.size.seconds,
            "phase_max_saves": plan.size.max_saves,
            "requests_per_process": plan.size.requests,
            "latency_load": plan.size.latency_load,
            "batches": sorted({c.batch for c in plan.configs}),
            "concurrencies": sorted({c.concurrency for c in plan.configs}),
            "threads": sorted({c.threads for c in plan.configs}),
            "workloads": list(plan.workloads),
            "configs": [vars(c) for c in plan.configs],
            "durabilities": list(plan.durabilities),
            "arms": list(plan.arms),
            "outage": plan.outage,
        },
    }
