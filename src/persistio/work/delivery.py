"""What a consumer may ask for besides the object: which save it comes from, and which attempt.

A consumer whose handler takes a second parameter gets a ``Delivery``: its ``key`` (the write id
and the intent) is the same on every redelivery and every replay of one save, and differs for a
different save, so a handler can make its own side effects idempotent with it (an ``INSERT ...
ON CONFLICT DO NOTHING`` on the key, a payment provider's idempotency key, ...).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import msgspec


class Delivery(msgspec.Struct, frozen=True):
    """One hand-out of a stream entry to a consumer."""

    write_id: str  # the save's write id: the same on every redelivery of it
    intent: str
    attempt: int  # 1 on the first delivery, 2 on the first retry, ...
    enqueued_at: float  # epoch seconds

    @property
    def key(self) -> str:
        """``<write id>:<intent>``: one per save and intent, stable across redeliveries."""
        return f"{self.write_id}:{self.intent}"


def takes_delivery(handler: Callable[..., Any]) -> bool:
    """Does ``handler`` accept a second positional argument (the Delivery)?"""
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: the object only
        return False
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
