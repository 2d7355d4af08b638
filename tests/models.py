"""Models shared by the test suites (intent names are global per tier, so they live here once)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import msgspec

import persistio as pio


@pio.persist(
    pio.Transitory("notify_friends"),
    pio.Volatile("here_now", key=("venue_id", "user_id"), ttl=timedelta(hours=3)),
    pio.Acid("checkins", key=("id",)),
    # partition + order is the row's identity: "id" keeps two check-ins of one instant apart
    pio.Amorphous(
        "activity", partition=("user_id",), order=("at", "id"), retain=timedelta(days=365)
    ),
)
class Checkin(msgspec.Struct, frozen=True):
    """The DESIGN.md section 2 example, as written."""

    id: uuid.UUID
    user_id: int
    venue_id: int
    at: datetime


class Address(msgspec.Struct, frozen=True):
    city: str
    tags: list[str]
    since: datetime | None = None


class FeedItem(msgspec.Struct, frozen=True):
    user_id: int
    at: datetime
    text: str


def to_feed(p: Profile) -> FeedItem:
    return FeedItem(p.user_id, p.updated, f"{p.name} updated their profile")


@pio.persist(
    pio.Acid("profiles", key=("user_id",)),
    pio.Volatile(
        "profile_cache", key=("user_id",), ttl=timedelta(minutes=5), rebuild_from="profiles"
    ),
    pio.Amorphous("profile_feed", partition=("user_id",), order=("at",), project=to_feed),
    pio.Transitory("profile_audit", priority=pio.LOW, when=lambda p: p.balance > 100),
)
class Profile(msgspec.Struct, frozen=True):
    """Every column kind: exact round trips of UUIDs, aware datetimes, Decimals, nested structs."""

    user_id: int
    name: str
    updated: datetime
    balance: Decimal
    score: float
    active: bool
    born: date
    token: uuid.UUID
    avatar: bytes
    address: Address
    nickname: str | None = None


@pio.persist(pio.Amorphous("low_backlog", partition=("bucket",), order=("seq",), priority=pio.LOW))
class LowWork(msgspec.Struct, frozen=True):
    bucket: int
    seq: int


@pio.persist(pio.Acid("urgent", key=("id",), priority=pio.HIGH))
class HighWork(msgspec.Struct, frozen=True):
    id: int
    note: str


@pio.persist(pio.Transitory("jobs", max_deliveries=3, retry_backoff=timedelta(milliseconds=10)))
class Job(msgspec.Struct, frozen=True):
    id: int
    poison: bool = False


@pio.persist(pio.Transitory("slow_jobs", retry_backoff=timedelta(seconds=60)))
class SlowJob(msgspec.Struct, frozen=True):
    id: int


@pio.persist(pio.Acid("accounts", key=("id",)), pio.Transitory("account_events"))
class Account(msgspec.Struct, frozen=True):
    id: int
    owner: str
    balance: int


@pio.persist(
    pio.Acid("lww_rows", key=("k",)),
    pio.Volatile("lww_cache", key=("k",), ttl=timedelta(hours=1)),
    pio.Amorphous("lww_docs", partition=("k",), order=()),
    pio.Transitory("lww_events"),
)
class Versioned(msgspec.Struct, frozen=True):
    k: str
    v: int


@pio.persist(
    pio.Acid("odd_rows", key=("name", "n")),
    pio.Volatile("odd_cache", key=("name", "n"), ttl=timedelta(hours=1)),
    pio.Amorphous("odd_docs", partition=("name",), order=("n",)),
    pio.Transitory("odd_events"),
)
class Oddity(msgspec.Struct, frozen=True):
    """Hostile values as data: keys and fields full of quotes, semicolons, unicode, braces."""

    name: str
    n: int
    text: str
    blob: bytes
    extra: dict[str, list[int]]


MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def hit_weight(h: Hit) -> int:
    return h.weight


@pio.persist(
    # every save counts once, in the bucket of its write time (a replay is the same save)
    pio.Count("hit_saves", key=("page",), bucket=(MINUTE, HOUR), weight=hit_weight),
    # every hit counts once, in the bucket of its own time: a later save of it replaces it
    pio.Count(
        "hit_events",
        key=("page",),
        bucket=(HOUR, MINUTE, DAY),
        at="at",
        identity=("id",),
        weight=hit_weight,
    ),
    # the whole model, written before save returns, float weights, kept a year
    pio.Count(
        "hit_seconds",
        bucket=DAY,
        retain=timedelta(days=365),
        weight=lambda h: h.seconds,
        priority=pio.REALTIME,
    ),
    # keys of other kinds: a UUID and a datetime (Cassandra holds it as microseconds)
    pio.Count("hit_users", key=("user", "opened"), bucket=HOUR, at="at", identity=("id",)),
)
class Hit(msgspec.Struct, frozen=True):
    id: int
    page: str
    at: datetime
    weight: int = 1
    seconds: float = 0.0
    user: uuid.UUID = uuid.UUID(int=0)
    opened: datetime = datetime(2026, 1, 1, tzinfo=UTC)


@pio.persist(
    # one-second buckets kept one second: a hit from a minute ago is past retain on arrival
    pio.Count(
        "blip_counts",
        key=("page",),
        bucket=timedelta(seconds=1),
        retain=timedelta(seconds=1),
        at="at",
        priority=pio.REALTIME,
    )
)
class Blip(msgspec.Struct, frozen=True):
    page: str
    at: datetime
