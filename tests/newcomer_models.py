"""Models of the newcomer suites: several consumers per stream, reads, delayed work."""

from __future__ import annotations

from datetime import timedelta

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
