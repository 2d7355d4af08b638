"""The three arms: one database, hand-written tiered code, and persistio.

Each arm has three parts, for either workload (``benchmarks.workload``):

- a ``Client`` (in every load process, or one per thread): ``save(batch)`` returns once the
  batch is acknowledged;
- a ``Worker`` (in the worker processes): the deferred work and the notifier, until stopped;
- its ``Stores`` (in the harness): reset before a run, pending work, and the end-of-run counts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..settings import Endpoints

if TYPE_CHECKING:
    from ..admin import Admin

SINGLE = "single_postgres"
RAW = "raw_tiered"
PIO = "persistio"
ARMS = (SINGLE, RAW, PIO)


class Client(Protocol):
    # True: one client serves every thread of a process (persistio's store, as a web app
    # shares it); False: each thread opens its own (its own connections and pipelines).
    thread_safe: bool

    def configure(self, durability: str, outage: bool) -> None:
        """``outage``: a persistio receipt that says buffered or dropped is allowed (it is
        what buffering is for) instead of failing the save."""

    def save(self, batch: Sequence[Any]) -> int:
        """Returns once acknowledged: the number of receipts that were buffered or dropped
        (persistio in the outage phase; otherwise 0)."""

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
    """What a run left in the stores.

    ``rows``: per logical store (``here``, ``cells``, ``awards``, ...: see
    ``workload.expected``), the rows found, each to equal what the acknowledged check-ins imply;
    ``where``: the table or key pattern each was counted in; ``leftovers``: pending or dead
    work, each to be 0.
    """

    rows: dict[str, int] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    leftovers: dict[str, int] = field(default_factory=dict)

    def add(self, logical: str, where: str, n: int) -> None:
        self.rows[logical] = n
        self.where[logical] = where


class Stores(Protocol):
    def prepare(self) -> None: ...
    def reset(self, workload: str) -> None: ...
    def pending(self, workload: str) -> int: ...
    def check(self, workload: str) -> Check: ...


def open_client(arm: str, workload: str, endpoints: Endpoints, tag: str) -> Client:
    if arm == SINGLE:
        from .single_postgres import SingleClient

        return SingleClient(endpoints, workload)
    if arm == RAW:
        from .raw_tiered import RawClient

        return RawClient(endpoints, workload)
    from .persistio_arm import PioClient

    return PioClient(endpoints, tag)


def open_worker(arm: str, workload: str, endpoints: Endpoints, tag: str) -> Worker:
    if arm == SINGLE:
        from .single_postgres import SingleDrainer

        return SingleDrainer(endpoints, workload)
    if arm == RAW:
        from .raw_tiered import RawWorker

        return RawWorker(endpoints, workload, tag)
    from .persistio_arm import PioWorker

    return PioWorker(endpoints, workload, tag)


def open_stores(arm: str, admin: Admin) -> Stores:
    if arm == SINGLE:
        from .single_postgres import SingleStores

        return SingleStores(admin)
    if arm == RAW:
        from .raw_tiered import RawStores

        return RawStores(admin)
    from .persistio_arm import PioStores

    return PioStores(admin)
