"""Arm ``raw_tiered``: the writes persistio does, hand-written with redis-py, psycopg and
cassandra-driver, as a careful engineer would write them.

Ack path of one batch (acid first, as persistio's ``on_outage="fail"`` intents go first, so a
batch whose acid write fails has written nothing else):

1. PostgreSQL: the same guarded upsert (``... ON CONFLICT (id) DO UPDATE ... WHERE stored ts <
   new ts``) as one prepared ``unnest`` statement, autocommit, ``synchronous_commit = on``;
2. Redis, one pipeline, one round trip: the notify stream entries (ENQUEUE script: dedup marker
   + XADD), one PUT script call per "here now" key (last write wins, absolute expiry), and the
   deferred tasks onto two priority streams (activity NORMAL, raw object LOW), deduplicated.

Deferred work (``RawWorker``): claim a batch from the highest non-empty task stream, write it
to Cassandra (prepared ``INSERT ... USING TIMESTAMP ? AND TTL ?``, ``execute_concurrent`` with
96 in flight, token aware), then XACK + XDEL; and the notifier: claim, deliver, XACK + XDEL.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
import redis
from redis.exceptions import NoScriptError

from ..drivers import cassandra_connect
from ..settings import REDIS_DB_RAW, Endpoints
from ..workload import (
    ACTIVITY_RETAIN,
    CHECKIN_DECODER,
    ENCODER,
    FEED_DECODER,
    HERE_TTL,
    BmCheckin,
    to_feed_item,
)
from . import Check
from .common import NOTIFY_BATCH, POLL_SECONDS, TASK_BATCH, Clock
from .raw_lua import CLAIM, DEDUP_WINDOW_MS, ENQUEUE, GROUP, PUT, VISIBILITY_MS

if TYPE_CHECKING:
    from ..admin import Admin

log = logging.getLogger("benchmarks.raw")

ARM_DB = "raw"
NOTIFY_KEY = "bm:{notify}"
NORMAL_KEY = "bm:{tasks.normal}"
LOW_KEY = "bm:{tasks.low}"
NOTIFY_VISIBILITY_MS = 30_000  # a Transitory intent's default visibility
HERE_TTL_US = int(HERE_TTL.total_seconds() * 1_000_000)
RETAIN_S = ACTIVITY_RETAIN.total_seconds()
IN_FLIGHT = 96
RETRIES = 5
ACTIVITY_TABLE = "rw_activity"
RAW_TABLE = "rw_raw"
PG_DDL = """CREATE TABLE IF NOT EXISTS bm_checkins (
    id uuid PRIMARY KEY, user_id bigint NOT NULL, venue_id bigint NOT NULL,
    at timestamptz NOT NULL, lat double precision NOT NULL, lon double precision NOT NULL,
    _pio_ts bigint NOT NULL)"""
UPSERT = """
INSERT INTO bm_checkins (id, user_id, venue_id, at, lat, lon, _pio_ts)
SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::int8[], %b::timestamptz[], %b::float8[],
                     %b::float8[], %b::int8[])
ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, venue_id = excluded.venue_id,
    at = excluded.at, lat = excluded.lat, lon = excluded.lon, _pio_ts = excluded._pio_ts
WHERE bm_checkins._pio_ts < excluded._pio_ts"""
# The same query-shaped tables persistio creates for bm_activity and bm_raw.
CQL_DDL = (
    'CREATE TABLE IF NOT EXISTS {ks}.rw_activity ("user_id" bigint, "at" bigint, '
    '"checkin_id" uuid, object blob, PRIMARY KEY (("user_id"), "at", "checkin_id")) '
    'WITH CLUSTERING ORDER BY ("at" DESC, "checkin_id" DESC)',
    'CREATE TABLE IF NOT EXISTS {ks}.rw_raw ("id" uuid, object blob, PRIMARY KEY (("id")))',
)
TASK = msgspec.msgpack.Decoder(tuple[int, bytes])  # a deferred task: (write ts, payload)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _markers(stream: str, dedups: Sequence[str]) -> list[str]:
    return [f"{stream}:seen:{d}" for d in dedups]


class RawClient:
    def __init__(self, endpoints: Endpoints) -> None:
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

    def set_durability(self, durability: str) -> None:
        """Nothing to do: Redis's fsync policy is server-wide, and acid commits synchronously."""

    def save(self, batch: Sequence[BmCheckin]) -> None:
        ts = self.clock.take(len(batch))
        self._upsert(batch, ts)
        try:
            self._redis_writes(batch, ts)
        except NoScriptError:  # the server restarted and lost its script cache
            self._load_scripts()
            self._redis_writes(batch, ts)  # idempotent: dedup markers and timestamps

    def _upsert(self, batch: Sequence[BmCheckin], ts: list[int]) -> None:
        if len({c.id for c in batch}) != len(batch):  # one INSERT may not touch a row twice
            newest = {c.id: (c, t) for c, t in zip(batch, ts, strict=True)}
            batch, ts = [c for c, _ in newest.values()], [t for _, t in newest.values()]
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

    def _redis_writes(self, batch: Sequence[BmCheckin], ts: list[int]) -> None:
        now = repr(time.time())
        dedups = [str(c.id) for c in batch]
        payloads = [ENCODER.encode(c) for c in batch]
        pipe = self.redis.pipeline(transaction=False)
        self._enqueue(pipe, NOTIFY_KEY, dedups, payloads, now)
        for c, t, p in zip(batch, ts, payloads, strict=True):
            key = f"bm:here:{{{c.venue_id}:{c.user_id}}}"
            pipe.evalsha(self.put_sha, 1, key, t, (t + HERE_TTL_US) // 1000, p)
        feed = [
            ENCODER.encode((t, ENCODER.encode(to_feed_item(c))))
            for c, t in zip(batch, ts, strict=True)
        ]
        self._enqueue(pipe, NORMAL_KEY, dedups, feed, now)
        raws = [ENCODER.encode((t, p)) for t, p in zip(ts, payloads, strict=True)]
        self._enqueue(pipe, LOW_KEY, dedups, raws, now)
        pipe.execute()

    def _enqueue(
        self, pipe: Any, stream: str, dedups: list[str], payloads: list[bytes], now: str
    ) -> None:
        items = [x for pair in zip(dedups, payloads, strict=True) for x in pair]
        keys = [stream, *_markers(stream, dedups)]
        pipe.evalsha(self.enqueue_sha, len(keys), *keys, GROUP, DEDUP_WINDOW_MS, now, *items)

    def close(self) -> None:
        self.pg.close()
        self.redis.close()


class RawWorker:
    """Deferred tasks, highest priority first, one batch per step; then the notifier."""

    def __init__(self, endpoints: Endpoints, tag: str) -> None:
        self.redis = redis.Redis.from_url(endpoints.redis_url(REDIS_DB_RAW))
        self.claim = self.redis.register_script(CLAIM)
        self.consumer = tag
        self.cluster, self.session = cassandra_connect(endpoints)
        ks = endpoints.keyspace
        self.insert_activity = self._prepare(
            f"INSERT INTO {ks}.{ACTIVITY_TABLE} (user_id, at, checkin_id, object) "
            "VALUES (?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?"
        )
        self.insert_raw = self._prepare(
            f"INSERT INTO {ks}.{RAW_TABLE} (id, object) VALUES (?, ?) USING TIMESTAMP ? AND TTL ?"
        )

    def _prepare(self, cql: str) -> Any:
        stmt = self.session.prepare(cql)
        stmt.is_idempotent = True  # USING TIMESTAMP: a retried INSERT is harmless
        return stmt

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
        for key, write in ((NORMAL_KEY, self._activity), (LOW_KEY, self._raw)):
            entries = self.claim(keys=[key], args=[GROUP, self.consumer, TASK_BATCH, VISIBILITY_MS])
            if entries:
                self._write_retrying(write([bytes(p) for _, p in entries]))
                self._ack(key, [i for i, _ in entries])
                progressed = True
                break
        args: list[str | int] = [GROUP, self.consumer, NOTIFY_BATCH, NOTIFY_VISIBILITY_MS]
        entries = self.claim(keys=[NOTIFY_KEY], args=args)
        if entries:
            delivered.extend(CHECKIN_DECODER.decode(bytes(p)).id.bytes for _, p in entries)
            self._ack(NOTIFY_KEY, [i for i, _ in entries])
            progressed = True
        return progressed

    def _activity(self, payloads: list[bytes]) -> list[tuple[Any, tuple[Any, ...]]]:
        now = time.time()
        out = []
        for data in payloads:
            ts, blob = TASK.decode(data)
            remaining = RETAIN_S - (now - ts / 1e6)
            if remaining <= 0:
                continue  # a late replay past its retention: never resurrect it
            item = FEED_DECODER.decode(blob)
            ttl = math.ceil(remaining)  # at most a second late, never early
            values = (item.user_id, _micros(item.at), item.checkin_id, blob, ts, ttl)
            out.append((self.insert_activity, values))
        return out

    def _raw(self, payloads: list[bytes]) -> list[tuple[Any, tuple[Any, ...]]]:
        out = []
        for data in payloads:
            ts, blob = TASK.decode(data)
            out.append((self.insert_raw, (CHECKIN_DECODER.decode(blob).id, blob, ts, 0)))
        return out

    def _write_retrying(self, statements: list[tuple[Any, tuple[Any, ...]]]) -> None:
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

    def _write(self, statements: list[tuple[Any, tuple[Any, ...]]]) -> None:
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


class RawStores:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.database = admin.endpoints.database(ARM_DB)

    def prepare(self) -> None:
        self.admin.pg(self.database).execute(PG_DDL)
        for ddl in CQL_DDL:
            self.admin.cql(ddl.format(ks=self.admin.endpoints.keyspace))

    def reset(self) -> None:
        self.admin.pg(self.database).execute("TRUNCATE bm_checkins")
        self.admin.redis[REDIS_DB_RAW].flushdb()
        for table in (ACTIVITY_TABLE, RAW_TABLE):
            self.admin.truncate(table)

    def pending(self) -> int:
        return self.admin.xlen(REDIS_DB_RAW, NOTIFY_KEY, NORMAL_KEY, LOW_KEY)

    def check(self) -> Check:
        a = self.admin
        rows = {
            "postgres:bm_checkins": a.pg_count(self.database, "bm_checkins"),
            "redis:here": a.scan_count(REDIS_DB_RAW, "bm:here:*"),
            f"cassandra:{ACTIVITY_TABLE}": a.cql_count(ACTIVITY_TABLE),
            f"cassandra:{RAW_TABLE}": a.cql_count(RAW_TABLE),
        }
        return Check(rows, {"streams": self.pending()})
