"""Arm ``single_postgres``: "just use a database", as a careful engineer would.

Every write of a check-in goes to PostgreSQL in one transaction, one round trip (pipeline mode,
one prepared ``unnest`` statement per table), nothing weakened and nothing added:

- volatile data ("here now"; seed: the nearby-friends cell) in ``UNLOGGED`` tables with an
  ``expires_at`` column (not WAL-logged, lost on a crash, as volatile data may be; readers filter
  on ``expires_at > now()`` and a periodic ``DELETE`` sweeps, not timed here), last write wins
  by write timestamp;
- notify friends: an outbox row, taken by a drainer with ``FOR UPDATE SKIP LOCKED``, delivered
  and deleted in one transaction (the notifier);
- the activity-feed row;
- all_acid: the check-in row (the same guarded upsert as the tiered arms' acid write), which *is*
  the raw object here (writing it twice would be a strawman);
- seed: the raw check-in row, and, only on a check-in that earns a badge, the award row and the
  user's points in one statement (``INSERT ... ON CONFLICT DO NOTHING RETURNING`` feeding an
  ``INSERT ... ON CONFLICT DO UPDATE SET points = points + excluded.points``: an exactly-once
  increment, which one database makes easy).

Durability: strict commits everything synchronously, in one transaction. Relaxed commits the
ACID part synchronously (all_acid: the check-in row; seed: award + points, when the batch earns
any) and the rest, which is not ACID data, in a second transaction with
``SET LOCAL synchronous_commit = off``: still one round trip. A relaxed seed batch that earns no
badge (19 in 20 at batch 1) has no ACID part: it is one transaction with
``synchronous_commit = off``, and so never waits for a WAL flush.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus

from ..settings import Endpoints
from ..workload import (
    ALL_ACID,
    BADGE_POINTS,
    CELL_TTL,
    CHECKIN_DECODER,
    ENCODER,
    HERE_TTL,
    SEED_DECODER,
    BmCheckin,
    BsCheckin,
)
from . import Check
from .common import NOTIFY_BATCH, POLL_SECONDS, Clock, newest

if TYPE_CHECKING:
    from ..admin import Admin

ARM_DB = "single"
DDL = (
    # all_acid
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
    # seed
    """CREATE UNLOGGED TABLE IF NOT EXISTS s_here (
        venue_id bigint, user_id bigint, checkin_id uuid NOT NULL, at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL, _ts bigint NOT NULL,
        PRIMARY KEY (venue_id, user_id))""",
    """CREATE UNLOGGED TABLE IF NOT EXISTS s_cells (
        cell bigint, user_id bigint, venue_id bigint NOT NULL, checkin_id uuid NOT NULL,
        at timestamptz NOT NULL, expires_at timestamptz NOT NULL, _ts bigint NOT NULL,
        PRIMARY KEY (cell, user_id))""",
    """CREATE TABLE IF NOT EXISTS s_awards (
        checkin_id uuid PRIMARY KEY, user_id bigint NOT NULL, badge text NOT NULL,
        at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS s_points (
        user_id bigint PRIMARY KEY, points bigint NOT NULL, at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS s_activity (
        user_id bigint, at timestamptz, checkin_id uuid, venue_id bigint NOT NULL,
        text text NOT NULL, PRIMARY KEY (user_id, at, checkin_id))""",
    """CREATE TABLE IF NOT EXISTS s_checkins (
        id uuid PRIMARY KEY, user_id bigint NOT NULL, venue_id bigint NOT NULL,
        cell bigint NOT NULL, at timestamptz NOT NULL, lat double precision NOT NULL,
        lon double precision NOT NULL, badge text)""",
    """CREATE TABLE IF NOT EXISTS s_outbox (
        id bigserial PRIMARY KEY, checkin_id uuid NOT NULL, payload bytea NOT NULL)""",
)
TABLES = {
    ALL_ACID: ("checkins", "here_now", "activity", "outbox"),
    "seed": ("s_here", "s_cells", "s_awards", "s_points", "s_activity", "s_checkins", "s_outbox"),
}
OUTBOX = {ALL_ACID: "outbox", "seed": "s_outbox"}

# -- all_acid ---------------------------------------------------------------------------------
UPSERT_CHECKINS = """
INSERT INTO checkins (id, user_id, venue_id, at, lat, lon, _ts)
SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::int8[], %b::timestamptz[], %b::float8[],
                     %b::float8[], %b::int8[])
ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, venue_id = excluded.venue_id,
    at = excluded.at, lat = excluded.lat, lon = excluded.lon, _ts = excluded._ts
WHERE checkins._ts < excluded._ts"""
UPSERT_HERE = """
INSERT INTO {table} (venue_id, user_id, checkin_id, at, expires_at, _ts)
SELECT * FROM unnest(%b::int8[], %b::int8[], %b::uuid[], %b::timestamptz[], %b::timestamptz[],
                     %b::int8[])
ON CONFLICT (venue_id, user_id) DO UPDATE SET checkin_id = excluded.checkin_id,
    at = excluded.at, expires_at = excluded.expires_at, _ts = excluded._ts
WHERE {table}._ts < excluded._ts"""
INSERT_ACTIVITY = """
INSERT INTO {table} (user_id, at, checkin_id, venue_id, text)
SELECT * FROM unnest(%b::int8[], %b::timestamptz[], %b::uuid[], %b::int8[], %b::text[])
ON CONFLICT DO NOTHING"""
INSERT_OUTBOX = """
INSERT INTO {table} (checkin_id, payload) SELECT * FROM unnest(%b::uuid[], %b::bytea[])"""
TAKE_OUTBOX = "SELECT id, payload FROM {table} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
DELETE_OUTBOX = "DELETE FROM {table} WHERE id = ANY(%s)"

# -- seed -------------------------------------------------------------------------------------
UPSERT_CELLS = """
INSERT INTO s_cells (cell, user_id, venue_id, checkin_id, at, expires_at, _ts)
SELECT * FROM unnest(%b::int8[], %b::int8[], %b::int8[], %b::uuid[], %b::timestamptz[],
                     %b::timestamptz[], %b::int8[])
ON CONFLICT (cell, user_id) DO UPDATE SET venue_id = excluded.venue_id,
    checkin_id = excluded.checkin_id, at = excluded.at, expires_at = excluded.expires_at,
    _ts = excluded._ts
WHERE s_cells._ts < excluded._ts"""
AWARD_AND_POINTS = f"""
WITH awarded AS (
    INSERT INTO s_awards (checkin_id, user_id, badge, at)
    SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::text[], %b::timestamptz[])
    ON CONFLICT (checkin_id) DO NOTHING
    RETURNING user_id, at)
INSERT INTO s_points (user_id, points, at)
SELECT user_id, {BADGE_POINTS} * count(*), max(at) FROM awarded GROUP BY user_id
ON CONFLICT (user_id) DO UPDATE SET points = s_points.points + excluded.points,
    at = greatest(s_points.at, excluded.at)"""
INSERT_RAW = """
INSERT INTO s_checkins (id, user_id, venue_id, cell, at, lat, lon, badge)
SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::int8[], %b::int8[], %b::timestamptz[],
                     %b::float8[], %b::float8[], %b::text[])
ON CONFLICT (id) DO NOTHING"""


class SingleClient:
    thread_safe = False

    def __init__(self, endpoints: Endpoints, workload: str) -> None:
        conninfo = endpoints.pg_conninfo(endpoints.database(ARM_DB))
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.clock = Clock()
        self.relaxed = False
        self.workload = workload
        self._write: Callable[[psycopg.Cursor[Any], Sequence[Any], list[int]], None] = (
            self._all_acid if workload == ALL_ACID else self._seed
        )

    def configure(self, durability: str, outage: bool) -> None:
        self.relaxed = durability == "relaxed"

    def save(self, batch: Sequence[Any]) -> int:
        ts = self.clock.take(len(batch))
        cur = self.conn.cursor()
        try:
            # Manual BEGIN/COMMIT keep the whole batch in one pipeline sync: one round trip.
            with self.conn.pipeline():
                self._write(cur, batch, ts)
        except BaseException:
            if self.conn.info.transaction_status != TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
            raise
        return 0

    def _all_acid(
        self, cur: psycopg.Cursor[Any], batch: Sequence[BmCheckin], ts: list[int]
    ) -> None:
        ids = [c.id for c in batch]
        users = [c.user_id for c in batch]
        venues = [c.venue_id for c in batch]
        ats = [c.at for c in batch]
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
        cur.execute(
            UPSERT_HERE.format(table="here_now"),
            (venues, users, ids, ats, expires, ts),
            prepare=True,
        )
        texts = [f"checked in at venue {v}" for v in venues]
        cur.execute(
            INSERT_ACTIVITY.format(table="activity"),
            (users, ats, ids, venues, texts),
            prepare=True,
        )
        payloads = [ENCODER.encode(c) for c in batch]
        cur.execute(INSERT_OUTBOX.format(table="outbox"), (ids, payloads), prepare=True)
        cur.execute("COMMIT")

    def _seed(self, cur: psycopg.Cursor[Any], batch: Sequence[BsCheckin], ts: list[int]) -> None:
        earned = [c for c in batch if c.badge is not None]
        cur.execute("BEGIN")
        if earned:
            cur.execute(
                AWARD_AND_POINTS,
                (
                    [c.id for c in earned],
                    [c.user_id for c in earned],
                    [c.badge for c in earned],
                    [c.at for c in earned],
                ),
                prepare=True,
            )
        if self.relaxed:
            if earned:
                cur.execute("COMMIT")
                cur.execute("BEGIN")
            cur.execute("SET LOCAL synchronous_commit = off")
        ids = [c.id for c in batch]
        users = [c.user_id for c in batch]
        venues = [c.venue_id for c in batch]
        ats = [c.at for c in batch]
        # one statement may not touch a row twice: the newest write per key goes
        here = newest(((c.venue_id, c.user_id), (c, t)) for c, t in zip(batch, ts, strict=True))
        cur.execute(
            UPSERT_HERE.format(table="s_here"),
            (
                [c.venue_id for c, _ in here],
                [c.user_id for c, _ in here],
                [c.id for c, _ in here],
                [c.at for c, _ in here],
                [c.at + HERE_TTL for c, _ in here],
                [t for _, t in here],
            ),
            prepare=True,
        )
        cells = newest(((c.cell, c.user_id), (c, t)) for c, t in zip(batch, ts, strict=True))
        cur.execute(
            UPSERT_CELLS,
            (
                [c.cell for c, _ in cells],
                [c.user_id for c, _ in cells],
                [c.venue_id for c, _ in cells],
                [c.id for c, _ in cells],
                [c.at for c, _ in cells],
                [c.at + CELL_TTL for c, _ in cells],
                [t for _, t in cells],
            ),
            prepare=True,
        )
        texts = [f"checked in at venue {v}" for v in venues]
        cur.execute(
            INSERT_ACTIVITY.format(table="s_activity"),
            (users, ats, ids, venues, texts),
            prepare=True,
        )
        cur.execute(
            INSERT_RAW,
            (
                ids,
                users,
                venues,
                [c.cell for c in batch],
                ats,
                [c.lat for c in batch],
                [c.lon for c in batch],
                [c.badge for c in batch],
            ),
            prepare=True,
        )
        payloads = [ENCODER.encode(c) for c in batch]
        cur.execute(INSERT_OUTBOX.format(table="s_outbox"), (ids, payloads), prepare=True)
        cur.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class SingleDrainer:
    """The notifier: takes outbox rows, delivers them, deletes them, in one transaction."""

    def __init__(self, endpoints: Endpoints, workload: str) -> None:
        self.conninfo = endpoints.pg_conninfo(endpoints.database(ARM_DB))
        self.conn = psycopg.connect(self.conninfo, autocommit=True)
        table = OUTBOX[workload]
        self.take = TAKE_OUTBOX.format(table=table)
        self.delete = DELETE_OUTBOX.format(table=table)
        self.decode = CHECKIN_DECODER.decode if workload == ALL_ACID else SEED_DECODER.decode

    def run(self, stop: threading.Event, delivered: list[bytes]) -> None:
        while not stop.is_set():
            try:
                progressed = self.step(delivered)
            except psycopg.OperationalError:
                # the server went away: reconnect (what a careful engineer's loop does)
                progressed = False
                self._reconnect(stop)
            if not progressed:
                stop.wait(POLL_SECONDS)

    def _reconnect(self, stop: threading.Event) -> None:
        self.conn.close()
        while not stop.is_set():
            try:
                self.conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
                return
            except psycopg.OperationalError:
                stop.wait(0.5)

    def step(self, delivered: list[bytes]) -> bool:
        with self.conn.transaction():
            rows = self.conn.execute(self.take, (NOTIFY_BATCH,), prepare=True).fetchall()
            if not rows:
                return False
            # at-least-once: a delivery that fails rolls the rows back for another drainer
            delivered.extend(self.decode(payload).id.bytes for _, payload in rows)
            self.conn.execute(self.delete, ([r[0] for r in rows],), prepare=True)
        return True

    def backlog(self) -> int:
        return 0  # nothing is held locally: what is not done is still in the outbox

    def close(self) -> None:
        self.conn.close()


class SingleStores:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.database = admin.endpoints.database(ARM_DB)

    def prepare(self) -> None:
        for ddl in DDL:
            self.admin.pg(self.database).execute(ddl)

    def reset(self, workload: str) -> None:
        tables = ", ".join(TABLES[workload])
        self.admin.pg(self.database).execute(f"TRUNCATE {tables} RESTART IDENTITY")

    def pending(self, workload: str) -> int:
        return self.admin.pg_count(self.database, OUTBOX[workload])

    def check(self, workload: str) -> Check:
        count = self.admin.pg_count
        db = self.database
        check = Check()
        if workload == ALL_ACID:
            logical = {"checkins": "checkins", "here": "here_now", "activity": "activity"}
        else:
            logical = {
                "here": "s_here",
                "cells": "s_cells",
                "awards": "s_awards",
                "points": "s_points",
                "activity": "s_activity",
                "raw": "s_checkins",
            }
        for name, table in logical.items():
            check.add(name, f"postgres:{table}", count(db, table))
        check.leftovers["outbox"] = count(db, OUTBOX[workload])
        return check
