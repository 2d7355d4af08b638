"""Typed reads over the public API, shared by the game, its consumers and its surfaces."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import persistio as pio

from .models import Checkin, Friends, Visit

S = TypeVar("S")
MAX_ROWS = 10_000  # persistio's largest query() limit: a partition bigger than this is cut


def query_as(
    store: pio.Persistio,
    model: type[Any],
    intent: str,
    stored: type[S],
    *,
    limit: int = 20,
    **partition: Any,
) -> list[S]:
    """``store.query`` for an intent whose ``project=`` stores another type than the model.

    ``query(Checkin, "game_feed", ...)`` is typed ``list[Checkin]`` but returns FeedItems: the
    library has no typed read for projections, so narrow here instead of casting.
    """
    found: Sequence[object] = store.query(model, intent, limit=limit, **partition)
    return [row for row in found if isinstance(row, stored)]


def friends_of(store: pio.Persistio, user_id: int) -> list[int]:
    """A user's friends, through the volatile cache (rebuilt from the acid row on a miss)."""
    found = store.get(Friends, "game_friends_cache", user_id=user_id)
    return [] if found is None else list(found.friend_ids)


def visits_in_window(
    store: pio.Persistio, venue_id: int, user_id: int, until: datetime, window: timedelta
) -> set[Any]:
    """Ids of the user's check-ins at the venue in ``(until - window, until]``: exact, because
    each check-in is one row keyed by its id, however often it was written."""
    rows = query_as(
        store, Checkin, "game_visits", Visit, limit=MAX_ROWS, venue_id=venue_id, user_id=user_id
    )
    return {r.checkin_id for r in rows if until - window < r.at <= until}


def has_visits(
    store: pio.Persistio,
    venue_id: int,
    user_id: int,
    until: datetime,
    window: timedelta,
    needed: int,
) -> bool:
    """Whether the user has at least ``needed`` check-ins at the venue in the window, reading
    newest first only as many rows as it takes (an incumbent mayor's partition can be large)."""
    limit = needed + 32
    while True:
        rows = query_as(
            store, Checkin, "game_visits", Visit, limit=limit, venue_id=venue_id, user_id=user_id
        )
        inside = {r.checkin_id for r in rows if until - window < r.at <= until}
        if len(inside) >= needed:
            return True
        exhausted = len(rows) < limit or limit == MAX_ROWS
        if exhausted or rows[-1].at <= until - window:  # older rows only get older
            return False
        limit = min(limit * 4, MAX_ROWS)


def venue_hour_count(store: pio.Persistio, venue_id: int, hour: datetime) -> int:
    """Check-ins at a venue in one UTC hour: the number of rows in its partition."""
    hour = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    rows = query_as(
        store, Checkin, "game_venue_hours", Visit, limit=MAX_ROWS, venue_id=venue_id, hour=hour
    )
    return len(rows)
