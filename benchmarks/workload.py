"""The benchmark's model: the check-in game's write mix, with intents named ``bm_*``.

Per check-in: notify friends (a transitory stream entry, consumed by a notifier), "here now" (a
volatile key with a TTL), the check-in row (acid), the activity-feed row (amorphous, deferred
at NORMAL priority) and the raw object (amorphous, deferred at LOW priority). Intent names are
global per tier in a process, and ``benchmarks/save_rates.py`` already declares ``bench_*``.

Ids are unique per save, so every store must end a run holding exactly one row per acknowledged
save: user = seq // 4 and venue = seq % 1009 make the ("here now") key (venue, user) unique too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec

import persistio as pio

HERE_TTL = timedelta(hours=3)
ACTIVITY_RETAIN = timedelta(days=365)
VENUES = 1009  # prime: four consecutive seqs (one user) always land on four venues

NOTIFY = "bm_notify"
HERE = "bm_here"
CHECKINS = "bm_checkins"
ACTIVITY = "bm_activity"
RAW = "bm_raw"


class BmFeedItem(msgspec.Struct, frozen=True):
    """One row of a user's activity feed (what the amorphous ``bm_activity`` stores)."""

    user_id: int
    at: datetime
    checkin_id: uuid.UUID
    venue_id: int
    text: str


def to_feed_item(c: BmCheckin) -> BmFeedItem:
    return BmFeedItem(c.user_id, c.at, c.id, c.venue_id, f"checked in at venue {c.venue_id}")


@pio.persist(
    pio.Transitory(NOTIFY),
    pio.Volatile(HERE, key=("venue_id", "user_id"), ttl=HERE_TTL),
    pio.Acid(CHECKINS, key=("id",)),
    pio.Amorphous(
        ACTIVITY,
        partition=("user_id",),
        order=("at", "checkin_id"),
        project=to_feed_item,
        retain=ACTIVITY_RETAIN,
    ),
    pio.Amorphous(RAW, partition=("id",), priority=pio.LOW),
)
class BmCheckin(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: int
    venue_id: int
    at: datetime
    lat: float
    lon: float


def make_checkins(seq: int, n: int) -> list[BmCheckin]:
    """``n`` check-ins numbered from ``seq``; every arm pays the same for building them."""
    now = datetime.now(UTC)
    out = []
    for s in range(seq, seq + n):
        venue = s % VENUES
        out.append(
            BmCheckin(uuid.uuid4(), s // 4, venue, now, 48.0 + venue / 1e4, 2.0 + venue / 1e4)
        )
    return out


ENCODER = msgspec.msgpack.Encoder()
CHECKIN_DECODER = msgspec.msgpack.Decoder(BmCheckin)
FEED_DECODER = msgspec.msgpack.Decoder(BmFeedItem)
