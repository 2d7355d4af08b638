"""Typed reads over the public API, shared by the game, its consumers and its surfaces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import persistio as pio

from .models import HOUR, MAYOR_WINDOW, Checkin, Friends

S = TypeVar("S")


def rows_of(
    store: pio.Persistio, model: type[Any], intent: str, stored: type[S], **partition: Any
) -> list[S]:
    """Every row of one partition of an intent that stores ``stored`` (its ``project=``),
    newest first, read page by page: no partition is too big to read whole."""
    pages = store.pages(model, intent, as_type=stored, page_size=1_000, **partition)
    return [row for page in pages for row in page]


def friends_of(store: pio.Persistio, user_id: int) -> list[int]:
    """A user's friends, through the volatile cache (rebuilt from the acid row on a miss)."""
    found = store.get(Friends, "game_friends_cache", user_id=user_id)
    return [] if found is None else list(found.friend_ids)


def visit_count(store: pio.Persistio, venue_id: int, user_id: int, until: datetime) -> int:
    """The user's check-ins at the venue in the MAYOR_WINDOW of whole hours that ends with
    ``until``'s hour: a read of about 50 hour and day buckets, however many check-ins."""
    end = _hour(until) + HOUR
    found = store.count(
        Checkin,
        "game_visit_counts",
        since=end - MAYOR_WINDOW,
        until=end,
        venue_id=venue_id,
        user_id=user_id,
    )
    return int(found)


def venue_hour_count(store: pio.Persistio, venue_id: int, hour: datetime) -> int:
    """Check-ins at a venue in one UTC hour: one bucket of its count."""
    return venue_checkins(store, venue_id, _hour(hour), _hour(hour) + HOUR)


def venue_checkins(store: pio.Persistio, venue_id: int, since: datetime, until: datetime) -> int:
    """Check-ins at a venue from ``since`` to ``until`` (whole hours), from the fewest buckets."""
    found = store.count(Checkin, "game_venue_checkins", since=since, until=until, venue_id=venue_id)
    return int(found)


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
