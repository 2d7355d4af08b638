"""The benchmark's two workloads: what one check-in writes, and what the stores must hold after.

``seed`` (model ``BsCheckin``, intents ``bs_*``): the check-in of the location game persistio is
built from, six tasks, only the game mechanics ACID:

====================  =========================================================  ==========
task                  persistio intent                                           priority
====================  =========================================================  ==========
notify friends        ``Transitory("bs_notify")``, consumed by a notifier        REALTIME
here now              ``Volatile("bs_here", key=(venue_id, user_id), ttl=3h)``   REALTIME
nearby-friends cell   ``Volatile("bs_cell", key=(cell, user_id), ttl=3h)``       REALTIME
award + points        ``Acid("bs_awards")`` + ``Acid("bs_points")``, only when   HIGH
                      the check-in earns a badge (1 in 20)
activity feed         ``Amorphous("bs_activity", partition=user_id, ...)``       NORMAL
raw check-in object   ``Amorphous("bs_raw", partition=id)``                      LOW
====================  =========================================================  ==========

``all_acid`` (model ``BmCheckin``, intents ``bm_*``): the mix of the first benchmark, unchanged
so its history stays comparable: notify, here now, the check-in row as an ACID REALTIME write,
activity feed (NORMAL), raw object (LOW).

Everything about a check-in follows from its sequence number ``seq``, so the harness can say
what every store must hold from the acknowledged numbers alone: user = seq // 4, venue =
seq % 1009, cell = venue // 8 (a geo-grid cell: eight neighbouring venues share one), and the
check-in earns a badge when seq % 20 == 0. A user's four check-ins land on four venues (1009 is
prime), mostly in one cell; a user earns at most one badge, so "set the user's points" and
"add to the user's points" store the same value. The id carries ``seq`` in its low 62 bits
(and 60 random bits above, so ids stay as scattered in an index as uuid4's); ``seq_of`` reads it
back from a delivered notification.

Intent names are global per tier in a process, and ``benchmarks/save_rates.py`` declares
``bench_*``: hence ``bm_*`` and ``bs_*``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

import persistio as pio

SEED = "seed"
ALL_ACID = "all_acid"
WORKLOADS = (SEED, ALL_ACID)

HERE_TTL = timedelta(hours=3)
CELL_TTL = timedelta(hours=3)
ACTIVITY_RETAIN = timedelta(days=365)
VENUES = 1009  # prime: four consecutive seqs (one user) always land on four venues
CELL_SIZE = 8  # venues per geo-grid cell
AWARD_EVERY = 20  # one check-in in 20 earns a badge
BADGE = "explorer"
BADGE_POINTS = 10

# all_acid
NOTIFY = "bm_notify"
HERE = "bm_here"
CHECKINS = "bm_checkins"
ACTIVITY = "bm_activity"
RAW = "bm_raw"
# seed
S_NOTIFY = "bs_notify"
S_HERE = "bs_here"
S_CELL = "bs_cell"
S_AWARDS = "bs_awards"
S_POINTS = "bs_points"
S_ACTIVITY = "bs_activity"
S_RAW = "bs_raw"

_SEQ_BITS = 62
_SEQ_MASK = (1 << _SEQ_BITS) - 1
_RANDOM = random.Random()


def user_of(seq: int) -> int:
    return seq // 4


def venue_of(seq: int) -> int:
    return seq % VENUES


def cell_of(seq: int) -> int:
    return venue_of(seq) // CELL_SIZE


def earns(seq: int) -> bool:
    return seq % AWARD_EVERY == 0


def checkin_id(seq: int) -> uuid.UUID:
    """A valid uuid4 whose low 62 bits are ``seq``."""
    high = (_RANDOM.getrandbits(64) & ~(0xF << 12)) | (4 << 12)  # version 4
    return uuid.UUID(int=(high << 64) | (0b10 << _SEQ_BITS) | seq)  # RFC 4122 variant


def seq_of(checkin: uuid.UUID) -> int:
    return checkin.int & _SEQ_MASK


# -- all_acid ---------------------------------------------------------------------------------


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


# -- seed -------------------------------------------------------------------------------------


class BsFeedItem(msgspec.Struct, frozen=True):
    """One row of a user's activity feed (``bs_activity``)."""

    user_id: int
    at: datetime
    checkin_id: uuid.UUID
    venue_id: int
    text: str


class BsAward(msgspec.Struct, frozen=True):
    """A badge earned by one check-in (``bs_awards``, keyed by the check-in)."""

    checkin_id: uuid.UUID
    user_id: int
    badge: str
    at: datetime


class BsPoints(msgspec.Struct, frozen=True):
    """A user's points (``bs_points``, keyed by the user), written with the award."""

    user_id: int
    points: int
    at: datetime


def earned(c: BsCheckin) -> bool:
    return c.badge is not None


def to_seed_feed_item(c: BsCheckin) -> BsFeedItem:
    return BsFeedItem(c.user_id, c.at, c.id, c.venue_id, f"checked in at venue {c.venue_id}")


def to_award(c: BsCheckin) -> BsAward:
    return BsAward(c.id, c.user_id, c.badge or "", c.at)


def to_points(c: BsCheckin) -> BsPoints:
    return BsPoints(c.user_id, BADGE_POINTS, c.at)


@pio.persist(
    pio.Transitory(S_NOTIFY),
    pio.Volatile(S_HERE, key=("venue_id", "user_id"), ttl=HERE_TTL),
    pio.Volatile(S_CELL, key=("cell", "user_id"), ttl=CELL_TTL),
    pio.Acid(S_AWARDS, key=("checkin_id",), project=to_award, when=earned, priority=pio.HIGH),
    pio.Acid(S_POINTS, key=("user_id",), project=to_points, when=earned, priority=pio.HIGH),
    pio.Amorphous(
        S_ACTIVITY,
        partition=("user_id",),
        order=("at", "checkin_id"),
        project=to_seed_feed_item,
        retain=ACTIVITY_RETAIN,
    ),
    pio.Amorphous(S_RAW, partition=("id",), priority=pio.LOW),
)
class BsCheckin(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: int
    venue_id: int
    cell: int
    at: datetime
    lat: float
    lon: float
    badge: str | None = None


Checkin = BmCheckin | BsCheckin


def make_checkins(workload: str, seq: int, n: int) -> list[Any]:
    """``n`` check-ins numbered from ``seq``; every arm pays the same for building them."""
    now = datetime.now(UTC)
    if workload == ALL_ACID:
        return [
            BmCheckin(
                checkin_id(s),
                user_of(s),
                venue_of(s),
                now,
                48.0 + venue_of(s) / 1e4,
                2.0 + venue_of(s) / 1e4,
            )
            for s in range(seq, seq + n)
        ]
    return [
        BsCheckin(
            checkin_id(s),
            user_of(s),
            venue_of(s),
            cell_of(s),
            now,
            48.0 + venue_of(s) / 1e4,
            2.0 + venue_of(s) / 1e4,
            BADGE if earns(s) else None,
        )
        for s in range(seq, seq + n)
    ]


# -- what the stores must hold ----------------------------------------------------------------

Ranges = list[tuple[int, int]]  # (first seq, count)


def seqs(ranges: Iterable[tuple[int, int]]) -> Iterable[int]:
    for first, count in ranges:
        yield from range(first, first + count)


def add_range(ranges: Ranges, first: int, count: int) -> None:
    """Append, merging with the last range when contiguous (a process's seqs usually are)."""
    if ranges and ranges[-1][0] + ranges[-1][1] == first:
        ranges[-1] = (ranges[-1][0], ranges[-1][1] + count)
    else:
        ranges.append((first, count))


def expected(workload: str, acked: Iterable[int]) -> dict[str, int]:
    """Rows (keys, deliveries) each logical store must hold after these check-ins.

    Logical stores: ``notify`` (deliveries), ``checkins`` (all_acid), ``here``, ``cells`` and
    ``awards``/``points`` (seed), ``activity``, ``raw``. An arm reports only the ones it has.
    """
    n = 0
    here: set[tuple[int, int]] = set()
    cells: set[tuple[int, int]] = set()
    awards = 0
    points: set[int] = set()
    seed = workload == SEED
    for s in acked:
        n += 1
        user = user_of(s)
        here.add((venue_of(s), user))
        if seed:
            cells.add((cell_of(s), user))
            if earns(s):
                awards += 1
                points.add(user)
    out = {"notify": n, "here": len(here), "activity": n, "raw": n}
    if seed:
        out.update(cells=len(cells), awards=awards, points=len(points))
    else:
        out["checkins"] = n
    return out


ENCODER = msgspec.msgpack.Encoder()
CHECKIN_DECODER = msgspec.msgpack.Decoder(BmCheckin)
SEED_DECODER = msgspec.msgpack.Decoder(BsCheckin)
FEED_DECODER = msgspec.msgpack.Decoder(BmFeedItem)
SEED_FEED_DECODER = msgspec.msgpack.Decoder(BsFeedItem)
