"""Models of the newcomer suites: several consumers per stream, reads, delayed work."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

import persistio as pio


@pio.persist(
    pio.Transitory(
        "evts",
        consumers=("email", "sms"),
        max_deliveries=2,
        retry_backoff=timedelta(milliseconds=10),
    ),
)
class Signup(msgspec.Struct, frozen=True):
    """One stream, two consumers: each receives every entry."""

    id: int
    email: str
    fail_sms: bool = False


@pio.persist(
    pio.Acid("transfers", key=("id",), index=[("owner_id", "created"), ("state",)]),
)
class Transfer(msgspec.Struct, frozen=True):
    """A money transfer, looked up by its owner (an index) as well as by its id."""

    id: int
    owner_id: int
    created: datetime
    state: str
    cents: int


@pio.persist(
    pio.Amorphous("chat_lines", partition=("room",), order=("at", "id")),
)
class ChatLine(msgspec.Struct, frozen=True):
    """A chat room's lines: read by time range, oldest or newest first."""

    id: int
    room: str
    at: datetime
    text: str
