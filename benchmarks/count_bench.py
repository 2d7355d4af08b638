"""Counting check-ins at one venue: one row per check-in counted at read time, or ``pio.Count``.

    .venv/bin/python -m benchmarks.count_bench                        # embedded (SQLite)
    eval "$(bash scripts/services env)"
    .venv/bin/python -m benchmarks.count_bench --real                 # Cassandra
    .venv/bin/python -m benchmarks.count_bench --real --checkins 2000 --json out.json

Method: one venue gets ``--checkins`` check-ins spread evenly over ``--days`` days, saved twice
with ``save_many`` (batches of ``--batch``, REALTIME, so a save's time is its store's write):

- **rows**: ``Amorphous("cb_rows", partition=("venue_id", "hour"), order=("checkin_id",))``, the
  check-in game's earlier design: one row per check-in, an hour per partition. A count is the
  rows of the hours in its range: read through ``query()`` (what an app using persistio does:
  every row travels) and with the engine's own ``COUNT(*)`` per partition (the best case for
  rows: the server still reads every row, none travels).
- **count**: ``Count("cb_counts", key=("venue_id",), bucket=(HOUR, DAY), at="at",
  identity=("id",))``: a count reads the fewest hour and day buckets that tile its range.

Write cost: wall time and the process's CPU per save (all threads: on Cassandra the folder's too),
then, for the count, the time until every contribution is folded into its rollup
(``status()["counts"]``; on Cassandra a contribution is folded once it is 10 s old). Read
latency: median and p95 of ``--reads`` reads (``--row-reads`` for the slow row reads) of one
hour, one UTC day and the whole range, and of an hourly series of one day.
Both arms must agree on every number read; the run fails otherwise. Caveats: see the README.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import sqlalchemy as sa

import persistio as pio
from persistio.testing import wait_for_folds

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
VENUE = 7


@pio.persist(
    pio.Amorphous(
        "cb_rows", partition=("venue_id", "hour"), order=("checkin_id",), priority=pio.REALTIME
    )
)
class RowCheckin(msgspec.Struct, frozen=True):
    venue_id: int
    hour: datetime
    checkin_id: uuid.UUID
    at: datetime


@pio.persist(
    pio.Count(
        "cb_counts",
        key=("venue_id",),
        bucket=(HOUR, DAY),
        at="at",
        identity=("id",),
        priority=pio.REALTIME,
    )
)
class CountCheckin(msgspec.Struct, frozen=True):
    id: uuid.UUID
    venue_id: int
    at: datetime


def checkins(n: int, days: int, end: datetime) -> list[tuple[uuid.UUID, datetime]]:
    start = end - days * DAY
    step = (end - start) / n
    return [(uuid.uuid4(), start + i * step) for i in range(n)]


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def write(store: pio.Persistio, objs: list[Any], batch: int) -> dict[str, float]:
    """Save ``objs``, then wait until they are settled (the counts' contributions folded)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(objs), batch):
        store.save_many(objs[start : start + batch])
    saved, saved_cpu = time.perf_counter() - wall, time.process_time() - cpu
    store.drain(timeout=3600)
    wait_for_folds(store, timeout=3600)  # every contribution folded into its rollup
    settled, settled_cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = len(objs)
    return {
        "write_s": round(saved, 2),
        "saves_per_s": round(n / saved),
        "us_per_save": round(saved / n * 1e6, 1),
        "cpu_us_per_save": round(saved_cpu / n * 1e6, 1),
        "settled_s": round(settled, 2),
        "settled_cpu_us_per_save": round(settled_cpu / n * 1e6, 1),
    }


class RowCounter:
    """Counts of the rows arm: through query() (every row read), or the engine's COUNT(*)."""

    def __init__(self, store: pio.Persistio, raw: Callable[[datetime, datetime], int]) -> None:
        self.store = store
        self.raw = raw

    def by_query(self, since: datetime, until: datetime) -> int:
        total = 0
        hour = since
        while hour < until:
            total += len(
                self.store.query(RowCheckin, "cb_rows", limit=10_000, venue_id=VENUE, hour=hour)
            )
            hour += HOUR
        return total

    def by_count_star(self, since: datetime, until: datetime) -> int:
        return self.raw(since, until)


def sqlite_count_star(path: Path) -> Callable[[datetime, datetime], int]:
    """One ``COUNT(*)`` over the range: SQLite walks the primary key's index entries."""
    engine = sa.create_engine(f"sqlite:///{path}")
    table = sa.Table(
        "cb_rows",
        sa.MetaData(),
        sa.Column("venue_id", sa.BigInteger),
        sa.Column("hour", sa.DateTime),
    )

    def count(since: datetime, until: datetime) -> int:
        query = sa.select(sa.func.count()).where(
            table.c.venue_id == VENUE,
            table.c.hour >= since.replace(tzinfo=None),
            table.c.hour < until.replace(tzinfo=None),
        )
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    return count


def cql_count_star(session: Any, keyspace: str) -> Callable[[datetime, datetime], int]:
    """``COUNT(*)`` per hour partition (a partition key allows no range), run concurrently."""
    from cassandra.concurrent import execute_concurrent_with_args

    stmt = session.prepare(
        f'SELECT COUNT(*) FROM "{keyspace}".cb_rows WHERE venue_id = ? AND hour = ?'
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)

    def count(since: datetime, until: datetime) -> int:
        hours = []
        hour = since
        while hour < until:
            hours.append((VENUE, (hour - epoch) // timedelta(microseconds=1)))
            hour += HOUR
        results = execute_concurrent_with_args(session, stmt, hours, concurrency=64)
        return sum(int(result.one()[0]) for _, result in results)

    return count


def timed(call: Callable[[], Any], times: int) -> tuple[Any, dict[str, float]]:
    took: list[float] = []
    result: Any = None
    for _ in range(times):
        t = time.perf_counter()
        result = call()
        took.append((time.perf_counter() - t) * 1000)
    took.sort()
    p95 = took[min(len(took) - 1, round(0.95 * (len(took) - 1)))]
    return result, {"p50_ms": round(statistics.median(took), 2), "p95_ms": round(p95, 2)}


def reads(
    store: pio.Persistio, rows: RowCounter, span: tuple[datetime, datetime], args: Any
) -> dict[str, Any]:
    first, end = span
    day = (first + DAY * (args.days // 2)).replace(hour=0)  # a UTC day, midnight to midnight
    ranges = {
        "one hour": (day + 12 * HOUR, day + 13 * HOUR),
        "one day": (day, day + DAY),
        f"{args.days} days (on the hour)": (first, end),
    }
    out: dict[str, Any] = {}
    for name, (since, until) in ranges.items():

        def count(since: datetime = since, until: datetime = until) -> Any:
            return store.count(CountCheckin, "cb_counts", since=since, until=until, venue_id=VENUE)

        def query(since: datetime = since, until: datetime = until) -> int:
            return rows.by_query(since, until)

        def star(since: datetime = since, until: datetime = until) -> int:
            return rows.by_count_star(since, until)

        n_count, t_count = timed(count, args.reads)
        slow = args.row_reads if until - since > DAY else args.reads
        n_query, t_query = timed(query, slow)
        n_star, t_star = timed(star, slow)
        if not n_count == n_query == n_star:
            raise SystemExit(f"{name}: the arms disagree: {n_count}, {n_query}, {n_star}")
        out[name] = {
            "checkins": n_count,
            "count": t_count,
            "rows_query": t_query,
            "rows_count_star": t_star,
        }

    def series() -> Any:
        return store.counts(
            CountCheckin, "cb_counts", since=day, until=day + DAY, granularity=HOUR, venue_id=VENUE
        )

    found, took = timed(series, args.reads)
    hourly = [rows.by_query(day + i * HOUR, day + (i + 1) * HOUR) for i in range(24)]
    if [n for _, n in found] != hourly:
        raise SystemExit("the hourly series disagrees with the rows")
    out["hourly series of a day (24 buckets)"] = {"count": took}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    end = hour_of(datetime.now(UTC))
    made = checkins(args.checkins, args.days, end)
    row_objs = [RowCheckin(VENUE, hour_of(at), cid, at) for cid, at in made]
    count_objs = [CountCheckin(cid, VENUE, at) for cid, at in made]
    with tempfile.TemporaryDirectory(prefix="count-bench-") as data:
        options: dict[str, Any] = {"data_dir": data}
        cleanup: Callable[[], None] = _nothing
        if args.real:
            options["amorphous"], raw, cleanup = cassandra_keyspace()
        else:
            raw = sqlite_count_star(Path(data) / "amorphous.db")
        store = pio.Persistio(**options)
        try:
            store.setup()
            result: dict[str, Any] = {
                "backend": "cassandra" if args.real else "sqlite",
                "checkins": args.checkins,
                "days": args.days,
                "batch": args.batch,
            }
            result["write"] = {
                "rows": write(store, row_objs, args.batch),
                "count": write(store, count_objs, args.batch),
            }
            result["counts_status"] = store.status()["counts"]
            result["read"] = reads(
                store, RowCounter(store, raw), (end - args.days * DAY, end), args
            )
        finally:
            store.close()
            cleanup()
    return result


def _nothing() -> None:
    return None


def cassandra_keyspace() -> tuple[str, Callable[[datetime, datetime], int], Callable[[], None]]:
    """A keyspace of the run's own on PERSISTIO_AMORPHOUS_URL's hosts, dropped at the end."""
    from cassandra.cluster import Cluster

    url = os.environ.get("PERSISTIO_AMORPHOUS_URL")
    if not url:
        raise SystemExit(
            '--real needs PERSISTIO_AMORPHOUS_URL (eval "$(bash scripts/services env)")'
        )
    parts = urlsplit(url)
    keyspace = f"bench_counts_{secrets.token_hex(4)}"
    cluster = Cluster([parts.hostname or "127.0.0.1"], port=parts.port or 9042, protocol_version=5)
    session = cluster.connect()
    session.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    counter: dict[str, Callable[[datetime, datetime], int]] = {}

    def raw(since: datetime, until: datetime) -> int:
        if "f" not in counter:  # the table exists once the store has set it up
            counter["f"] = cql_count_star(session, keyspace)
        return counter["f"](since, until)

    def cleanup() -> None:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        cluster.shutdown()

    return f"cassandra://{parts.netloc}/{keyspace}", raw, cleanup


def table(result: dict[str, Any]) -> str:
    write, read = result["write"], result["read"]
    lines = [
        f"{result['checkins']:,} check-ins at one venue over {result['days']} days, "
        f"{result['backend']}, save_many batches of {result['batch']}",
        "",
        "| write | saves/s | µs per save | client CPU µs per save | settled after "
        "| client CPU µs per save, settled |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arm in ("rows", "count"):
        w = write[arm]
        lines.append(
            f"| {arm} | {w['saves_per_s']:,} | {w['us_per_save']} | {w['cpu_us_per_save']} "
            f"| {w['settled_s']} s | {w['settled_cpu_us_per_save']} |"
        )
    lines += [
        "",
        "| read (p50 / p95 ms) | check-ins | Count | rows via query() | rows via COUNT(*) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in read.items():
        cells = [
            f"{r[k]['p50_ms']} / {r[k]['p95_ms']}" if k in r else "-"
            for k in ("count", "rows_query", "rows_count_star")
        ]
        n = f"{r['checkins']:,}" if "checkins" in r else "-"
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real", action="store_true", help="Cassandra (PERSISTIO_AMORPHOUS_URL)")
    p.add_argument("--checkins", type=int, default=100_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--reads", type=int, default=30, help="timed reads per case")
    p.add_argument("--row-reads", type=int, default=3, help="timed row reads of long ranges")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    result = run(args)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
