"""What the stores really hold, for the summary: rows per table, live keys per volatile intent.

persistio has no count API, so tables are counted the way their users would count them: with
SQL (SQLAlchemy, which persistio already depends on) on the acid store and the embedded
amorphous file, and with CQL on Cassandra. Volatile keys are counted through the public API:
the app knows every key it could have written (users, venues, the cells of the venues).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

import persistio as pio

from .geo import cell_of
from .models import Checkin, GeoCell, Inbox, VenueRoster
from .world import World

ACID_TABLES = (
    "game_users",
    "game_venues",
    "game_friends",
    "game_awards",
    "game_points",
    "game_mayors",
)
AMORPHOUS_TABLES = (
    "game_venue_hours",
    "game_user_days",
    "game_feed",
    "game_checkins",
)


@dataclass(frozen=True)
class Ledger:
    awards: dict[str, int]  # badge -> how many
    award_points: int  # sum of the awards' points
    ledger_points: int  # sum of the users' ledger totals

    @property
    def balanced(self) -> bool:
        return self.award_points == self.ledger_points


@contextmanager
def _engine(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _sql_counts(url: str, tables: tuple[str, ...]) -> dict[str, int]:
    with _engine(url) as engine, engine.connect() as conn:
        # table names are this module's constants: nothing from outside reaches the SQL
        return {
            t: int(conn.execute(sa.text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one())
            for t in tables
        }


def _cql_counts(url: str, tables: tuple[str, ...]) -> dict[str, int]:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    parts = urlsplit(url)
    hosts = (parts.hostname or "127.0.0.1").split(",")
    # a full-table COUNT(*) is slow by Cassandra's standards: give it time
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=120)
    cluster = Cluster(
        hosts,
        port=parts.port or 9042,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        session = cluster.connect(parts.path.strip("/"))
        return {t: int(session.execute(f'SELECT COUNT(*) FROM "{t}"').one()[0]) for t in tables}
    finally:
        cluster.shutdown()


def table_rows(store: pio.Persistio) -> dict[str, dict[str, int]]:
    acid_url = store.urls[pio.Tier.ACID]
    amorphous_url = store.urls[pio.Tier.AMORPHOUS]
    amorphous = (
        _cql_counts(amorphous_url, AMORPHOUS_TABLES)
        if amorphous_url.startswith("cassandra")
        else _sql_counts(amorphous_url, AMORPHOUS_TABLES)
    )
    return {"acid": _sql_counts(acid_url, ACID_TABLES), "amorphous": amorphous}


def ledger(store: pio.Persistio, world: World) -> Ledger:
    """Awards and points of this world's users (real servers may hold other runs' too)."""
    ids = [u.user_id for u in world.users]
    bounds: dict[str, Any] = {"lo": min(ids), "hi": max(ids)}
    within = "WHERE user_id BETWEEN :lo AND :hi"
    with _engine(store.urls[pio.Tier.ACID]) as engine, engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT badge, COUNT(*), SUM(points) FROM game_awards {within} GROUP BY badge"
            ),
            bounds,
        ).all()
        total = conn.execute(
            sa.text(f"SELECT COALESCE(SUM(total), 0) FROM game_points {within}"), bounds
        ).scalar_one()
    return Ledger({str(r[0]): int(r[1]) for r in rows}, sum(int(r[2]) for r in rows), int(total))


def volatile_keys(store: pio.Persistio, world: World) -> dict[str, int]:
    users = [u.user_id for u in world.users]
    venues = [v.venue_id for v in world.venues]
    cells = sorted({cell_of(v.lat, v.lon) for v in world.venues})
    return {
        "game_where_now": sum(
            store.get(Checkin, "game_where_now", user_id=u) is not None for u in users
        ),
        "game_inbox": sum(store.get(Inbox, "game_inbox", user_id=u) is not None for u in users),
        "game_venue_here": sum(
            store.get(VenueRoster, "game_venue_here", venue_id=v) is not None for v in venues
        ),
        "game_geo_cells": sum(
            store.get(GeoCell, "game_geo_cells", cell=c) is not None for c in cells
        ),
    }
