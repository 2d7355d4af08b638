"""Arm ``single_postgres``: "just use a database".

Every write of a check-in goes to PostgreSQL in one transaction: the check-in row (the same
guarded upsert as the tiered arms' acid write), "here now" in an UNLOGGED table with an expiry
column (the volatile tier's equivalent: not WAL-logged, lost on a crash, as volatile data may
be), the activity-feed row, and an outbox row that a drainer takes with ``FOR UPDATE SKIP
LOCKED`` (the notifier: the transitory tier's equivalent). The raw object *is* the check-in row
here; writing it twice would be a strawman.

A batch is one round trip: pipeline mode, one ``unnest`` statement per table (prepared).
Relaxed durability commits the check-in row synchronously and the rest, which is not ACID data,
in a second transaction with ``synchronous_commit = off``: still one round trip.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus

from ..settings import Endpoints
from ..workload import CHECKIN_DECODER, ENCODER, HERE_TTL, BmCheckin
from . import Check
from .common import NOTIFY_BATCH, POLL_SECONDS, Clock

if TYPE_CHECKING:
    from ..admin import Admin

ARM_DB = "single"
DDL = (
    """CREATE TABLE IF NOT EXISTS checkins (
        id uuid PRIMARY KEY, user_id bigint NOT NULL, venue_id bigint NOT NULL,
        at timestamptz NOT NULL, lat double precision NOT NULL, lon double precision NOT NULL,
        _ts bigint NOT NULL)""",
    """CREATE UNLOGGED TABLE IF NOT EXISTS here_now (
        venue_id bigint, user_id bigint, checkin_id uuid NOT NULL, at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL, _ts bigint NOT NULL,
        PRIMARY KEY (venue_id, user_id))""",
    """CREATE TABLE IF NOT EXISTS activity (
        user_id bigint, at timestamptz, checkin_id uuid, venue_id bigint NOT NULL,
        text text NOT NULL, PRIMARY KEY (user_id, at, checkin_id))""",
    """CREATE TABLE IF NOT EXISTS outbox (
        id bigserial PRIMARY KEY, checkin_id uuid NOT NULL, payload bytea NOT NULL)""",
)
UPSERT_CHECKINS = """
INSERT INTO checkins (id, user_id, venue_id, at, lat, lon, _ts)
SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::int8[], %b::timestamptz[], %b::float8[],
                     %b::float8[], %b::int8[])
ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, venue_id = excluded.venue_id,
    at = excluded.at, lat = excluded.lat, lon = excluded.lon, _ts = excluded._ts
WHERE checkins._ts < excluded._ts"""
# Readers filter on expires_at > now(); a periodic DELETE sweeps expired rows (not timed here).
UPSERT_HERE = """
INSERT INTO here_now (venue_id, user_id, checkin_id, at, expires_at, _ts)
SELECT * FROM unnest(%b::int8[], %b::int8[], %b::uuid[], %b::timestamptz[], %b::timestamptz[],
                     %b::int8[])
ON CONFLICT (venue_id, user_id) DO UPDATE SET checkin_id = excluded.checkin_id,
    at = excluded.at, expires_at = excluded.expires_at, _ts = excluded._ts
WHERE here_now._ts < excluded._ts"""
INSERT_ACTIVITY = """
INSERT INTO activity (user_id, at, checkin_id, venue_id, text)
SELECT * FROM unnest(%b::int8[], %b::timestamptz[], %b::uuid[], %b::int8[], %b::text[])
ON CONFLICT DO NOTHING"""
INSERT_OUTBOX = """
INSERT INTO outbox (checkin_id, payload) SELECT * FROM unnest(%b::uuid[], %b::bytea[])"""
TAKE_OUTBOX = "SELECT id, payload FROM outbox ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
DELETE_OUTBOX = "DELETE FROM outbox WHERE id = ANY(%s)"


class SingleClient:
    def __init__(self, endpoints: Endpoints) -> None:
        conninfo = endpoints.pg_conninfo(endpoints.database(ARM_DB))
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.clock = Clock()
        self.relaxed = False

    def set_durability(self, durability: str) -> None:
        self.relaxed = durability == "relaxed"

    def save(self, batch: Sequence[BmCheckin]) -> None:
        ts = self.clock.take(len(batch))
        ids = [c.id for c in batch]
        users = [c.user_id for c in batch]
        venues = [c.venue_id for c in batch]
        ats = [c.at for c in batch]
        cur = self.conn.cursor()
        try:
            # Manual BEGIN/COMMIT keep the whole batch in one pipeline sync: one round trip.
            with self.conn.pipeline():
                cur.execute("BEGIN")
                cur.execute(
                    UPSERT_CHECKINS,
                    (ids, users, venues, ats, [c.lat for c in batch], [c.lon for c in batch], ts),
                    prepare=True,
                )
                if self.relaxed:
                    cur.execute("COMMIT")
                    cur.execute("BEGIN")
                    cur.execute("SET LOCAL synchronous_commit = off")
                expires = [c.at + HERE_TTL for c in batch]
                cur.execute(UPSERT_HERE, (venues, users, ids, ats, expires, ts), prepare=True)
                texts = [f"checked in at venue {v}" for v in venues]
                cur.execute(INSERT_ACTIVITY, (users, ats, ids, venues, texts), prepare=True)
                payloads = [ENCODER.encode(c) for c in batch]
                cur.execute(INSERT_OUTBOX, (ids, payloads), prepare=True)
                cur.execute("COMMIT")
        except BaseException:
            if self.conn.info.transaction_status != TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()


class SingleDrainer:
    """The notifier: takes outbox rows, delivers them, deletes them, in one transaction."""

    def __init__(self, endpoints: Endpoints) -> None:
        conninfo = endpoints.pg_conninfo(endpoints.database(ARM_DB))
        self.conn = psycopg.connect(conninfo, autocommit=True)

    def run(self, stop: threading.Event, delivered: list[bytes]) -> None:
        while not stop.is_set():
            if not self.step(delivered):
                stop.wait(POLL_SECONDS)

    def step(self, delivered: list[bytes]) -> bool:
        with self.conn.transaction():
            rows = self.conn.execute(TAKE_OUTBOX, (NOTIFY_BATCH,), prepare=True).fetchall()
            if not rows:
                return False
            # at-least-once: a delivery that fails rolls the rows back for another drainer
            delivered.extend(CHECKIN_DECODER.decode(payload).id.bytes for _, payload in rows)
            self.conn.execute(DELETE_OUTBOX, ([r[0] for r in rows],), prepare=True)
        return True

    def backlog(self) -> int:
        return 0  # nothing is held locally: what is not done is still in the outbox

    def close(self) -> None:
        self.conn.close()


class SingleStores:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.database = admin.endpoints.database(ARM_DB)

    def _pg(self) -> psycopg.Connection[tuple[Any, ...]]:
        return self.admin.pg(self.database)

    def prepare(self) -> None:
        for ddl in DDL:
            self._pg().execute(ddl)

    def reset(self) -> None:
        self._pg().execute("TRUNCATE checkins, here_now, activity, outbox RESTART IDENTITY")

    def pending(self) -> int:
        return self.admin.pg_count(self.database, "outbox")

    def check(self) -> Check:
        count = self.admin.pg_count
        rows = {t: count(self.database, t) for t in ("checkins", "here_now", "activity")}
        return Check(rows, {"outbox": count(self.database, "outbox")})
