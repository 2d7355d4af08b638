"""The check-in game's models, and why each piece of each one is stored.

A check-in fans out into the six tasks of the product, in priority order (see README.md):

1. deliver it to friends        -> ``game_deliver``      transitory  REALTIME  (notifier consumer)
2. its association with a venue -> ``game_where_now``    volatile    REALTIME  (+ venue rosters)
3. nearby friends               -> geo cells             volatile    REALTIME  (app, per cell)
4. game mechanics               -> ``game_badge_jobs``   transitory  HIGH      (badge engine);
                                   its inputs, counts and rows, are amorphous REALTIME
5. the user's activity feed     -> ``game_feed``         amorphous   NORMAL
6. the check-in object itself   -> ``game_checkins``     amorphous   LOW

Every intent name starts with ``game_``: names are global per tier across all models of a
process, and this app is imported next to other models (the test suite's, for one).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import msgspec

import persistio as pio

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
HERE_TTL = timedelta(hours=3)  # "who is here now": a check-in counts as presence this long
NEARBY_TTL = timedelta(hours=1)  # the geo index forgets a position after this
INBOX_TTL = timedelta(days=7)
INBOX_CAP = 50  # each inbox keeps the newest INBOX_CAP items
MAYOR_WINDOW = timedelta(days=30)
EXPLORER_VENUES = 5  # distinct venues in one (UTC) day


def is_recent(c: Checkin) -> bool:
    """A check-in older than the presence window says nothing about where anyone is *now*
    (a backfill or a replay long after the fact): skip the presence intent for it."""
    return c.at >= datetime.now(UTC) - HERE_TTL


# -- people and places (acid: the product's source of truth) ----------------------------------


@pio.persist(pio.Acid("game_users", key=("user_id",)))
class User(msgspec.Struct, frozen=True):
    user_id: int
    name: str
    joined: datetime


@pio.persist(pio.Acid("game_venues", key=("venue_id",)))
class Venue(msgspec.Struct, frozen=True):
    venue_id: int
    name: str
    category: str
    lat: float
    lon: float


@pio.persist(
    # One row per user holding the whole adjacency list: the public API reads by primary key
    # only, so "list my friends" must be one row. Both rows of a friendship change in one
    # transaction, so the graph is symmetric or the change did not happen.
    pio.Acid("game_friends", key=("user_id",)),
    # Read on every check-in by the notifier: a cache that rebuilds itself from the acid row
    # on a miss (one rebuild per key however many readers miss at once).
    pio.Volatile(
        "game_friends_cache",
        key=("user_id",),
        ttl=timedelta(minutes=10),
        rebuild_from="game_friends",
    ),
)
class Friends(msgspec.Struct, frozen=True):
    user_id: int
    friend_ids: list[int]


# -- the check-in and its query-shaped projections ---------------------------------------------


class Visit(msgspec.Struct, frozen=True):
    """One check-in as a row of a query-shaped table: who was at a venue in an hour (a lost
    roster is rebuilt from it), which venues a user went to in a day (explorer).

    Each table is keyed by the *check-in id*, so writing the same check-in twice -- a replayed
    task, a redelivery, or a client retrying the whole save -- lands on the same row.
    """

    venue_id: int
    user_id: int
    checkin_id: uuid.UUID
    at: datetime
    hour: datetime  # ``at`` truncated to the UTC hour
    day: date  # ``at``'s UTC date


class FeedItem(msgspec.Struct, frozen=True):
    user_id: int
    at: datetime
    checkin_id: uuid.UUID
    venue_id: int
    text: str


def to_visit(c: Checkin) -> Visit:
    at = c.at.astimezone(UTC)
    hour = at.replace(minute=0, second=0, microsecond=0)
    return Visit(c.venue_id, c.user_id, c.id, c.at, hour, at.date())


def to_feed_item(c: Checkin) -> FeedItem:
    return FeedItem(c.user_id, c.at, c.id, c.venue_id, f"checked in at venue {c.venue_id}")


@pio.persist(
    # 1. friend delivery: a unit of work for the notifier, expunged once it acknowledges
    pio.Transitory("game_deliver", max_age=timedelta(hours=1)),
    # 2. where each user is now (venue rosters are built from it; see presence.py)
    pio.Volatile("game_where_now", key=("user_id",), ttl=HERE_TTL, when=is_recent),
    # counting systems, exact under replay and read per bucket, not per check-in: check-ins
    # per venue (per hour and per day), and per user per venue (mayors). Counted by check-in
    # id in the bucket of the check-in's own time, so a client retrying a save counts once
    # and a late check-in lands in its hour. REALTIME: the badge engine's inputs land before
    # its job runs.
    pio.Count(
        "game_venue_checkins",
        key=("venue_id",),
        bucket=(HOUR, DAY),
        at="at",
        identity=("id",),
        priority=pio.REALTIME,
    ),
    pio.Count(
        "game_visit_counts",
        key=("venue_id", "user_id"),
        bucket=(HOUR, DAY),
        at="at",
        identity=("id",),
        retain=MAYOR_WINDOW + DAY,
        priority=pio.REALTIME,
    ),
    # who checked in at a venue in an hour (a lost roster is rebuilt from the last 3 hours);
    # which venues a user went to in a day (explorer: distinct venues, not a count)
    pio.Amorphous(
        "game_venue_hours",
        partition=("venue_id", "hour"),
        order=("checkin_id",),
        project=to_visit,
        retain=timedelta(days=2),
        priority=pio.REALTIME,
    ),
    pio.Amorphous(
        "game_user_days",
        partition=("user_id", "day"),
        order=("checkin_id",),
        project=to_visit,
        retain=timedelta(days=2),
        priority=pio.REALTIME,
    ),
    # 4. game mechanics: after the real-time work, before the feed; a badge shows up within
    # 2 s of the check-in that earned it
    pio.Transitory(
        "game_badge_jobs", priority=pio.HIGH, max_deliveries=10, within=timedelta(seconds=2)
    ),
    # 5. the user's own activity feed: newest first, one partition per user; within 5 s
    pio.Amorphous(
        "game_feed",
        partition=("user_id",),
        order=("at", "checkin_id"),
        project=to_feed_item,
        retain=timedelta(days=365),
        within=timedelta(seconds=5),
    ),
    # 6. the raw check-in, kept for analytics and rebuilds; nothing waits for it: 10 minutes
    pio.Amorphous(
        "game_checkins", partition=("id",), priority=pio.LOW, within=timedelta(minutes=10)
    ),
)
class Checkin(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: int
    venue_id: int
    at: datetime
    lat: float  # the venue's position, copied so consumers need no venue lookup
    lon: float


# -- presence and inboxes (volatile: lost on a restart, rebuilt by normal operation) ----------


class Presence(msgspec.Struct, frozen=True):
    user_id: int
    venue_id: int
    at: datetime
    lat: float = 0.0
    lon: float = 0.0


@pio.persist(pio.Volatile("game_venue_here", key=("venue_id",), ttl=HERE_TTL))
class VenueRoster(msgspec.Struct, frozen=True):
    """Who checked in at a venue within HERE_TTL (read-modify-write: last write wins)."""

    venue_id: int
    present: list[Presence]


@pio.persist(pio.Volatile("game_geo_cells", key=("cell",), ttl=NEARBY_TTL))
class GeoCell(msgspec.Struct, frozen=True):
    """Who was seen in one grid cell within NEARBY_TTL: the app's geo index (see geo.py)."""

    cell: str
    present: list[Presence]


class InboxItem(msgspec.Struct, frozen=True):
    checkin_id: uuid.UUID
    from_user: int
    venue_id: int
    at: datetime
    nearby: bool


@pio.persist(
    # The row the notifier reads for update and rewrites (tx.get(..., for_update=True)), so
    # concurrent deliveries to one friend, in any number of threads or processes, lose no item.
    pio.Acid("game_inboxes", key=("user_id",)),
    # What the feed reads: written after each commit, rebuilt from the row on a miss.
    pio.Volatile("game_inbox", key=("user_id",), ttl=INBOX_TTL, rebuild_from="game_inboxes"),
)
class Inbox(msgspec.Struct, frozen=True):
    """A friend's real-time inbox: the newest INBOX_CAP check-ins of their friends."""

    user_id: int
    items: list[InboxItem]


# -- game mechanics (acid: an award and its points commit together) ---------------------------

BADGE_POINTS = {"newbie": 5, "explorer": 20, "mayor": 50}


@pio.persist(pio.Acid("game_awards", key=("user_id", "award_id")))
class Award(msgspec.Struct, frozen=True):
    """One badge awarded; ``award_id`` is derived from what earned it, so it is idempotent:
    ``newbie``, ``explorer:<day>``, ``mayor:<venue>:<check-in id>``."""

    user_id: int
    award_id: str
    badge: str
    points: int
    at: datetime
    checkin_id: uuid.UUID
    venue_id: int


@pio.persist(pio.Acid("game_points", key=("user_id",)))
class Points(msgspec.Struct, frozen=True):
    """The user's points ledger: the total and the awards it is the sum of."""

    user_id: int
    total: int
    award_ids: list[str]


@pio.persist(pio.Acid("game_badge_checks", key=("checkin_id",)))
class BadgeCheck(msgspec.Struct, frozen=True):
    """The badge engine's idempotency key: this check-in was evaluated and earned these awards.
    Committed with the awards, so a redelivered or replayed job finds it and does nothing."""

    checkin_id: uuid.UUID
    user_id: int
    award_ids: list[str]


@pio.persist(pio.Acid("game_mayors", key=("venue_id",)))
class Mayor(msgspec.Struct, frozen=True):
    venue_id: int
    user_id: int
    checkins: int  # in the MAYOR_WINDOW before ``since``
    since: datetime


# What the game's stores cover (Persistio(models=...)): a process that also runs another app
# keeps that app's models out of the game's setup, status and workers.
MODELS = (
    User,
    Venue,
    Friends,
    Checkin,
    VenueRoster,
    GeoCell,
    Inbox,
    Award,
    Points,
    BadgeCheck,
    Mayor,
)
