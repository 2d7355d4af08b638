"""The three arms: one database, hand-written tiered code, and persistio.

Each arm has three parts:

- a ``Client`` (in every load process): ``save(batch)`` returns once the batch is acknowledged;
- a ``Worker`` (in the worker processes): the deferred work and the notifier, until stopped;
- its ``Stores`` (in the harness): reset before a run, pending work, and the end-of-run counts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..settings import Endpoints
from ..workload import BmCheckin

if TYPE_CHECKING:
    from ..admin import Admin

SINGLE = "single_postgres"
RAW = "raw_tiered"
PIO = "persistio"
ARMS = (SINGLE, RAW, PIO)


class Client(Protocol):
    def set_durability(self, durability: str) -> None: ...
    def save(self, batch: Sequence[BmCheckin]) -> None: ...
    def close(self) -> None: ...


class Worker(Protocol):
    def run(self, stop: threading.Event, delivered: list[bytes]) -> None:
        """Do deferred work and deliver notifications (their check-in ids into ``delivered``)
        until ``stop`` is set."""

    def backlog(self) -> int:
        """Work this process holds locally and has not done yet (persistio's spool)."""

    def close(self) -> None: ...


@dataclass
class Check:
    """What a run left in the stores: each of ``rows`` must equal the acknowledged saves, and
    each of ``leftovers`` (pending or dead work) must be 0."""

    rows: dict[str, int] = field(default_factory=dict)
    leftovers: dict[str, int] = field(default_factory=dict)


class Stores(Protocol):
    def prepare(self) -> None: ...
    def reset(self) -> None: ...
    def pending(self) -> int: ...
    def check(self) -> Check: ...


def open_client(arm: str, endpoints: Endpoints, tag: str) -> Client:
    if arm == SINGLE:
        from .single_postgres import SingleClient

        return SingleClient(endpoints)
    if arm == RAW:
        from .raw_tiered import RawClient

        return RawClient(endpoints)
    from .persistio_arm import PioClient

    return PioClient(endpoints, tag)


def open_worker(arm: str, endpoints: Endpoints, tag: str) -> Worker:
    if arm == SINGLE:
        from .single_postgres import SingleDrainer

        return SingleDrainer(endpoints)
    if arm == RAW:
        from .raw_tiered import RawWorker

        return RawWorker(endpoints, tag)
    from .persistio_arm import PioWorker

    return PioWorker(endpoints, tag)


def open_stores(arm: str, admin: Admin) -> Stores:
    if arm == SINGLE:
        from .single_postgres import SingleStores

        return SingleStores(admin)
    if arm == RAW:
        from .raw_tiered import RawStores

        return RawStores(admin)
    from .persistio_arm import PioStores

    return PioStores(admin)
