"""Arm ``raw_tiered``: the writes persistio does, hand-written with redis-py, psycopg and
cassandra-driver, as a careful engineer would write them for the same guarantees, with the
cheapest code they would reasonably write.

Ack path of one batch (a save at batch 1, ``save_many`` at batch 100):

- all_acid: (1) PostgreSQL first (as persistio's ``on_outage="fail"`` intents go first, so a
  batch whose acid write fails has written nothing else): the guarded upsert
  (``... ON CONFLICT (id) DO UPDATE ... WHERE stored ts < new ts``) as one prepared ``unnest``
  statement, autocommit, ``synchronous_commit = on``; (2) one Redis pipeline, one round trip.
- seed: no PostgreSQL at all: one Redis pipeline, one round trip.

The Redis pipeline holds the notify stream entries (ENQUEUE script: a dedup marker per entry,
``SET NX PX`` one hour, + ``XADD``), one PUT script call per volatile key ("here now"; seed: the
nearby-friends cell too; last write wins by write timestamp, absolute ``PEXPIREAT``), and the
deferred tasks as plain ``XADD``s onto the priority streams (seed: HIGH award only for a
check-in that earns one; NORMAL activity; LOW raw object), without dedup markers: a duplicate
task only repeats a last-write-wins write.

Deferred work (``RawWorker``): claim a batch from the highest non-empty priority stream (CLAIM
script: redelivery after the visibility timeout first, then new entries; it creates the group
at id 0 when missing), then: HIGH -> one PostgreSQL transaction (pipeline mode, one round trip)
with the award rows and the users' points, both guarded upserts by write timestamp; NORMAL ->
Cassandra activity rows; LOW -> Cassandra raw rows (prepared ``INSERT ... USING TIMESTAMP ? AND
TTL ?``, ``execute_concurrent`` with 96 in flight, token aware); then ``XACK`` + ``XDEL``. A
failed PostgreSQL or Cassandra write is retried with backoff (PostgreSQL: reconnecting a broken
connection) rather than left for the 60 s visibility timeout. The notifier claims, delivers and
acknowledges.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
import redis
from psycopg.pq import TransactionStatus
from redis.exceptions import NoScriptError

from ..drivers import cassandra_connect
from ..settings import REDIS_DB_RAW, Endpoints
from ..workload import (
    ACTIVITY_RETAIN,
    ALL_ACID,
    BADGE_POINTS,
    CELL_TTL,
    CHECKIN_DECODER,
    ENCODER,
    FEED_DECODER,
    HERE_TTL,
    SEED_DECODER,
    SEED_FEED_DECODER,
    BmCheckin,
    BsCheckin,
    to_feed_item,
    to_seed_feed_item,
)
from . import Check
from .common import NOTIFY_BATCH, POLL_SECONDS, TASK_BATCH, Clock, newest
from .raw_lua import CLAIM, DEDUP_WINDOW_MS, ENQUEUE, GROUP, PUT, VISIBILITY_MS

if TYPE_CHECKING:
    from ..admin import Admin

log = logging.getLogger("benchmarks.raw")

ARM_DB = "raw"
NOTIFY_VISIBILITY_MS = 30_000  # a Transitory intent's default visibility
HERE_TTL_US = int(HERE_TTL.total_seconds() * 1_000_000)
CELL_TTL_US = int(CELL_TTL.total_seconds() * 1_000_000)
RETAIN_S = ACTIVITY_RETAIN.total_seconds()
IN_FLIGHT = 96
RETRIES = 5
PG_RETRY_SECONDS = 60.0  # then the batch is left to redelivery after the visibility timeout
PG_CONNECT_TIMEOUT = 5


class Keys:
    """One workload's Redis key names (hash tags, as persistio's, for Redis Cluster)."""

    def __init__(self, prefix: str) -> None:
        self.notify = f"{prefix}:{{notify}}"
        self.high = f"{prefix}:{{tasks.high}}"
        self.normal = f"{prefix}:{{tasks.normal}}"
        self.low = f"{prefix}:{{tasks.low}}"
        self.here = f"{prefix}:here:"
        self.cell = f"{prefix}:cell:"

    @property
    def streams(self) -> tuple[str, ...]:
        return (self.notify, self.high, self.normal, self.low)


KEYS = {ALL_ACID: Keys("bm"), "seed": Keys("bs")}
CASSANDRA_TABLES = {ALL_ACID: ("rw_activity", "rw_raw"), "seed": ("rs_activity", "rs_raw")}
PG_TABLES = {ALL_ACID: ("bm_checkins",), "seed": ("bs_awards", "bs_points")}
PG_DDL = (
    """CREATE TABLE IF NOT EXISTS bm_checkins (
    id uuid PRIMARY KEY, user_id bigint NOT NULL, venue_id bigint NOT NULL,
    at timestamptz NOT NULL, lat double precision NOT NULL, lon double precision NOT NULL,
    _pio_ts bigint NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS bs_awards (
    checkin_id uuid PRIMARY KEY, user_id bigint NOT NULL, badge text NOT NULL,
    at timestamptz NOT NULL, _pio_ts bigint NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS bs_points (
    user_id bigint PRIMARY KEY, points bigint NOT NULL, at timestamptz NOT NULL,
    _pio_ts bigint NOT NULL)""",
)
UPSERT = """
INSERT INTO bm_checkins (id, user_id, venue_id, at, lat, lon, _pio_ts)
SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::int8[], %b::timestamptz[], %b::float8[],
                     %b::float8[], %b::int8[])
ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, venue_id = excluded.venue_id,
    at = excluded.at, lat = excluded.lat, lon = excluded.lon, _pio_ts = excluded._pio_ts
WHERE bm_checkins._pio_ts < excluded._pio_ts"""
UPSERT_AWARDS = """
INSERT INTO bs_awards (checkin_id, user_id, badge, at, _pio_ts)
SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::text[], %b::timestamptz[], %b::int8[])
ON CONFLICT (checkin_id) DO UPDATE SET user_id = excluded.user_id, badge = excluded.badge,
    at = excluded.at, _pio_ts = excluded._pio_ts
WHERE bs_awards._pio_ts < excluded._pio_ts"""
UPSERT_POINTS = """
INSERT INTO bs_points (user_id, points, at, _pio_ts)
SELECT * FROM unnest(%b::int8[], %b::int8[], %b::timestamptz[], %b::int8[])
ON CONFLICT (user_id) DO UPDATE SET points = excluded.points, at = excluded.at,
    _pio_ts = excluded._pio_ts
WHERE bs_points._pio_ts < excluded._pio_ts"""
# The same query-shaped tables persistio creates for its amorphous intents.
CQL_DDL = tuple(
    ddl
    for activity, raw in CASSANDRA_TABLES.values()
    for ddl in (
        f'CREATE TABLE IF NOT EXISTS {{ks}}.{activity} ("user_id" bigint, "at" bigint, '
        '"checkin_id" uuid, object blob, PRIMARY KEY (("user_id"), "at", "checkin_id")) '
        'WITH CLUSTERING ORDER BY ("at" DESC, "checkin_id" DESC)',
        f'CREATE TABLE IF NOT EXISTS {{ks}}.{raw} ("id" uuid, object blob, PRIMARY KEY (("id")))',
    )
)
TASK = msgspec.msgpack.Decoder(tuple[int, bytes])  # a deferred task: (write ts, payload)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Statements = list[tuple[Any, tuple[Any, ...]]]


def _micros(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _markers(stream: str, dedups: Sequence[str]) -> list[str]:
    return [f"{stream}:seen:{d}" for d in dedups]


class RawClient:
    thread_safe = False

    def __init__(self, endpoints: Endpoints, workload: str) -> None:
        self.workload = workload
        self.keys = KEYS[workload]
        self.pg: psycopg.Connection[tuple[Any, ...]] | None = None
        if workload == ALL_ACID:
            conninfo = endpoints.pg_conninfo(endpoints.database(ARM_DB))
            self.pg = psycopg.connect(conninfo, autocommit=True)
        self.redis = redis.Redis.from_url(endpoints.redis_url(REDIS_DB_RAW))
        self.clock = Clock()
        self._load_scripts()

    def _load_scripts(self) -> None:
        # EVALSHA straight into the pipeline: redis-py's Script objects would add a
        # SCRIPT EXISTS round trip to every pipeline that holds them.
        self.enqueue_sha = str(self.redis.script_load(ENQUEUE))
        self.put_sha = str(self.redis.script_load(PUT))

    def configure(self, durability: str, outage: bool) -> None:
        """Nothing to do: Redis's fsync policy is server-wide, and acid commits synchronously."""

    def save(self, batch: Sequence[Any]) -> int:
        ts = self.clock.take(len(batch))
        write: Callable[[Sequence[Any], list[int]], None]
        if self.workload == ALL_ACID:
            self._upsert(batch, ts)
            write = self._redis_all_acid
        else:
            write = self._redis_seed
        try:
            write(batch, ts)
        except NoScriptError:  # the server restarted and lost its script cache
            self._load_scripts()
            write(batch, ts)  # idempotent: dedup markers and timestamps
        return 0

    def _upsert(self, batch: Sequence[BmCheckin], ts: list[int]) -> None:
        assert self.pg is not None
        if len({c.id for c in batch}) != len(batch):  # one INSERT may not touch a row twice
            kept = newest((c.id, (c, t)) for c, t in zip(batch, ts, strict=True))
            batch, ts = [c for c, _ in kept], [t for _, t in kept]
        params = (
            [c.id for c in batch],
            [c.user_id for c in batch],
            [c.venue_id for c in batch],
            [c.at for c in batch],
            [c.lat for c in batch],
            [c.lon for c in batch],
            ts,
        )
        self.pg.execute(UPSERT, params, prepare=True)

    def _redis_all_acid(self, batch: Sequence[BmCheckin], ts: list[int]) -> None:
        k = self.keys
        payloads = [ENCODER.encode(c) for c in batch]
        pipe = self.redis.pipeline(transaction=False)
        self._notify(pipe, batch, payloads)
        for c, t, p in zip(batch, ts, payloads, strict=True):
            key = f"{k.here}{{{c.venue_id}:{c.user_id}}}"
            pipe.evalsha(self.put_sha, 1, key, t, (t + HERE_TTL_US) // 1000, p)
        for c, t in zip(batch, ts, strict=True):
            pipe.xadd(k.normal, {"p": ENCODER.encode((t, ENCODER.encode(to_feed_item(c))))})
        for t, p in zip(ts, payloads, strict=True):
            pipe.xadd(k.low, {"p": ENCODER.encode((t, p))})
        pipe.execute()

    def _redis_seed(self, batch: Sequence[BsCheckin], ts: list[int]) -> None:
        k = self.keys
        payloads = [ENCODER.encode(c) for c in batch]
        pipe = self.redis.pipeline(transaction=False)
        self._notify(pipe, batch, payloads)
        for c, t, p in zip(batch, ts, payloads, strict=True):
            key = f"{k.here}{{{c.venue_id}:{c.user_id}}}"
            pipe.evalsha(self.put_sha, 1, key, t, (t + HERE_TTL_US) // 1000, p)
            key = f"{k.cell}{{{c.cell}:{c.user_id}}}"
            pipe.evalsha(self.put_sha, 1, key, t, (t + CELL_TTL_US) // 1000, p)
        for c, t, p in zip(batch, ts, payloads, strict=True):
            if c.badge is not None:
                pipe.xadd(k.high, {"p": ENCODER.encode((t, p))})
        for c, t in zip(batch, ts, strict=True):
            pipe.xadd(k.normal, {"p": ENCODER.encode((t, ENCODER.encode(to_seed_feed_item(c))))})
        for t, p in zip(ts, payloads, strict=True):
            pipe.xadd(k.low, {"p": ENCODER.encode((t, p))})
        pipe.execute()

    def _notify(self, pipe: Any, batch: Sequence[Any], payloads: list[bytes]) -> None:
        """The consumer-visible stream: deduplicated by check-in id for an hour."""
        dedups = [str(c.id) for c in batch]
        items = [x for pair in zip(dedups, payloads, strict=True) for x in pair]
        keys = [self.keys.notify, *_markers(self.keys.notify, dedups)]
        now = repr(time.time())
        pipe.evalsha(self.enqueue_sha, len(keys), *keys, GROUP, DEDUP_WINDOW_MS, now, *items)

    def close(self) -> None:
        if self.pg is not None:
            self.pg.close()
        self.redis.close()


class RawWorker:
    """Deferred tasks, highest priority first, one batch per step; then the notifier."""

    def __init__(self, endpoints: Endpoints, workload: str, tag: str) -> None:
        self.workload = workload
        self.keys = KEYS[workload]
        self.redis = redis.Redis.from_url(endpoints.redis_url(REDIS_DB_RAW))
        self.claim = self.redis.register_script(CLAIM)
        self.consumer = tag
        self.cluster, self.session = cassandra_connect(endpoints)
        ks = endpoints.keyspace
        activity, raw = CASSANDRA_TABLES[workload]
        self.insert_activity = self._prepare(
            f"INSERT INTO {ks}.{activity} (user_id, at, checkin_id, object) "
            "VALUES (?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?"
        )
        self.insert_raw = self._prepare(
            f"INSERT INTO {ks}.{raw} (id, object) VALUES (?, ?) USING TIMESTAMP ? AND TTL ?"
        )
        self.decode = CHECKIN_DECODER.decode if workload == ALL_ACID else SEED_DECODER.decode
        self.decode_feed = FEED_DECODER.decode if workload == ALL_ACID else SEED_FEED_DECODER.decode
        self.conninfo = endpoints.pg_conninfo(endpoints.database(ARM_DB))
        self.pg: psycopg.Connection[tuple[Any, ...]] | None = None
        self.tasks: list[tuple[str, Callable[[list[bytes]], None]]] = [
            (self.keys.normal, self._activity),
            (self.keys.low, self._raw),
        ]
        if workload != ALL_ACID:
            self.pg = self._connect()
            self.tasks.insert(0, (self.keys.high, self._awards))

    def _prepare(self, cql: str) -> Any:
        stmt = self.session.prepare(cql)
        stmt.is_idempotent = True  # USING TIMESTAMP: a retried INSERT is harmless
        return stmt

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT)

    def run(self, stop: threading.Event, delivered: list[bytes]) -> None:
        while not stop.is_set():
            try:
                progressed = self.step(delivered)
            except Exception:
                # left unacknowledged: claimed again after the visibility timeout
                log.exception("raw worker step failed")
                progressed = False
            if not progressed:
                stop.wait(POLL_SECONDS)

    def step(self, delivered: list[bytes]) -> bool:
        progressed = False
        for key, write in self.tasks:
            entries = self.claim(keys=[key], args=[GROUP, self.consumer, TASK_BATCH, VISIBILITY_MS])
            if entries:
                write([bytes(p) for _, p in entries])
                self._ack(key, [i for i, _ in entries])
                progressed = True
                break
        args: list[str | int] = [GROUP, self.consumer, NOTIFY_BATCH, NOTIFY_VISIBILITY_MS]
        entries = self.claim(keys=[self.keys.notify], args=args)
        if entries:
            delivered.extend(self.decode(bytes(p)).id.bytes for _, p in entries)
            self._ack(self.keys.notify, [i for i, _ in entries])
            progressed = True
        return progressed

    # -- HIGH: awards and points, one PostgreSQL transaction -------------------------------

    def _awards(self, payloads: list[bytes]) -> None:
        checkins: list[tuple[BsCheckin, int]] = []
        for data in payloads:
            ts, blob = TASK.decode(data)
            checkins.append((SEED_DECODER.decode(blob), ts))
        # a redelivered task may repeat a check-in: one row per key, the newest write
        awards = newest((c.id, (c, t)) for c, t in checkins)
        points = newest((c.user_id, (c, t)) for c, t in checkins)
        award_params = (
            [c.id for c, _ in awards],
            [c.user_id for c, _ in awards],
            [c.badge or "" for c, _ in awards],
            [c.at for c, _ in awards],
            [t for _, t in awards],
        )
        points_params = (
            [c.user_id for c, _ in points],
            [BADGE_POINTS] * len(points),
            [c.at for c, _ in points],
            [t for _, t in points],
        )

        def write(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
            cur = conn.cursor()
            with conn.pipeline():  # BEGIN ... COMMIT in one round trip
                cur.execute("BEGIN")
                cur.execute(UPSERT_AWARDS, award_params, prepare=True)
                cur.execute(UPSERT_POINTS, points_params, prepare=True)
                cur.execute("COMMIT")

        self._pg_retrying(write)

    def _pg_retrying(self, write: Callable[[psycopg.Connection[tuple[Any, ...]]], None]) -> None:
        """A write that fails for the connection's sake (server gone, restarted, unreachable) is
        retried with backoff on a fresh connection, rather than left for the visibility
        timeout; after ``PG_RETRY_SECONDS`` it is left to redelivery."""
        deadline = time.monotonic() + PG_RETRY_SECONDS
        delay = 0.1
        while True:
            try:
                if self.pg is None or self.pg.closed:
                    self.pg = self._connect()
                try:
                    write(self.pg)
                except BaseException:
                    if (
                        not self.pg.closed
                        and self.pg.info.transaction_status == TransactionStatus.INTRANS
                    ):
                        self.pg.execute("ROLLBACK")
                    raise
                return
            except (psycopg.OperationalError, psycopg.InterfaceError):
                if self.pg is not None:
                    self.pg.close()
                    self.pg = None
                if time.monotonic() + delay >= deadline:
                    raise
                log.warning("PostgreSQL write failed; retrying", exc_info=True)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- NORMAL and LOW: Cassandra ---------------------------------------------------------

    def _activity(self, payloads: list[bytes]) -> None:
        now = time.time()
        out: Statements = []
        for data in payloads:
            ts, blob = TASK.decode(data)
            remaining = RETAIN_S - (now - ts / 1e6)
            if remaining <= 0:
                continue  # a late replay past its retention: never resurrect it
            item = self.decode_feed(blob)
            ttl = math.ceil(remaining)  # at most a second late, never early
            values = (item.user_id, _micros(item.at), item.checkin_id, blob, ts, ttl)
            out.append((self.insert_activity, values))
        self._write_retrying(out)

    def _raw(self, payloads: list[bytes]) -> None:
        out: Statements = []
        for data in payloads:
            ts, blob = TASK.decode(data)
            out.append((self.insert_raw, (self.decode(blob).id, blob, ts, 0)))
        self._write_retrying(out)

    def _write_retrying(self, statements: Statements) -> None:
        """A timed-out batch is retried at once (its writes are idempotent) rather than left
        for the 60 s visibility timeout; after a few tries it is left to redelivery."""
        for attempt in range(RETRIES):
            try:
                self._write(statements)
                return
            except Exception:
                if attempt == RETRIES - 1:
                    raise
                log.warning("Cassandra write failed; retrying", exc_info=True)
                time.sleep(0.5 * (attempt + 1))

    def _write(self, statements: Statements) -> None:
        from cassandra.concurrent import execute_concurrent

        execute_concurrent(self.session, statements, concurrency=IN_FLIGHT)

    def _ack(self, key: str, ids: list[Any]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(key, GROUP, *ids)
        pipe.xdel(key, *ids)
        pipe.execute()

    def backlog(self) -> int:
        return 0  # no local spool: anything not done is still in its stream

    def close(self) -> None:
        self.cluster.shutdown()
        self.redis.close()
        if self.pg is not None:
            self.pg.close()


class RawStores:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.database = admin.endpoints.database(ARM_DB)

    def prepare(self) -> None:
        for ddl in PG_DDL:
            self.admin.pg(self.database).execute(ddl)
        for ddl in CQL_DDL:
            self.admin.cql(ddl.format(ks=self.admin.endpoints.keyspace))

    def reset(self, workload: str) -> None:
        self.admin.pg(self.database).execute(f"TRUNCATE {', '.join(PG_TABLES[workload])}")
        self.admin.redis[REDIS_DB_RAW].flushdb()
        for table in CASSANDRA_TABLES[workload]:
            self.admin.truncate(table)

    def pending(self, workload: str) -> int:
        return self.admin.xlen(REDIS_DB_RAW, *KEYS[workload].streams)

    def check(self, workload: str) -> Check:
        a, k = self.admin, KEYS[workload]
        activity, raw = CASSANDRA_TABLES[workload]
        check = Check()
        check.add("here", f"redis:{k.here}*", a.scan_count(REDIS_DB_RAW, f"{k.here}*"))
        if workload == ALL_ACID:
            check.add("checkins", "postgres:bm_checkins", a.pg_count(self.database, "bm_checkins"))
        else:
            check.add("cells", f"redis:{k.cell}*", a.scan_count(REDIS_DB_RAW, f"{k.cell}*"))
            for logical, table in (("awards", "bs_awards"), ("points", "bs_points")):
                check.add(logical, f"postgres:{table}", a.pg_count(self.database, table))
        check.add("activity", f"cassandra:{activity}", a.cql_count(activity))
        check.add("raw", f"cassandra:{raw}", a.cql_count(raw))
        check.leftovers["streams"] = self.pending(workload)
        return check
