"""Models whose deferred intents make promises (``within=``) and say what to do past them."""

from __future__ import annotations

from datetime import timedelta

import msgspec

import persistio as pio


@pio.persist(
    pio.Amorphous(
        "lag_feed",
        partition=("id",),
        priority=pio.LOW,
        within=timedelta(milliseconds=300),
        on_lag="shed",
    )
)
class FeedItem(msgspec.Struct, frozen=True):
    id: str


@pio.persist(
    pio.Amorphous(
        "lag_raw",
        partition=("id",),
        priority=pio.LOW,
        within=timedelta(seconds=1),
        on_lag="slow",
    )
)
class RawItem(msgspec.Struct, frozen=True):
    id: str


@pio.persist(
    pio.Amorphous(
        "lag_late", partition=("id",), priority=pio.NORMAL, within=timedelta(milliseconds=50)
    )
)
class LateItem(msgspec.Struct, frozen=True):
    id: str


@pio.persist(pio.Acid("lag_urgent", key=("id",), priority=pio.HIGH, within=timedelta(seconds=1)))
class UrgentItem(msgspec.Struct, frozen=True):
    id: int
    at: float


@pio.persist(pio.Amorphous("lag_backlog", partition=("bucket",), order=("seq",), priority=pio.LOW))
class BacklogItem(msgspec.Struct, frozen=True):
    bucket: int
    seq: int


@pio.persist(pio.Amorphous("edf_later", partition=("id",), priority=pio.LOW))
class LaterItem(msgspec.Struct, frozen=True):
    id: str


@pio.persist(
    pio.Amorphous("edf_sooner", partition=("id",), priority=pio.LOW, within=timedelta(seconds=1))
)
class SoonerItem(msgspec.Struct, frozen=True):
    id: str
