"""Probes: what metrics and tracing hang on, around a store's saves, tasks and backend calls.

A store has no probe by default, and then the save path pays one ``is None`` test per save and
per backend batch. ``persistio.metrics`` and ``persistio.tracing`` each attach one; several
attached probes nest (the first attached is the outermost), like middleware.

A probe wraps a call rather than being told about it afterwards, so a tracing probe can make its
span current while the store works (backend calls become its children, queued tasks carry its
context).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from persistio.errors import ValidationError

if TYPE_CHECKING:
    from persistio.model.tasks import SavePlan, Work
    from persistio.write.router import Receipt, Router

T = TypeVar("T")
SaveCall = Callable[["Sequence[SavePlan]"], "list[Receipt]"]
TasksCall = Callable[["Sequence[Work]"], "Errors"]
CallEnd = Callable[["BaseException | None"], None]
Errors = list["BaseException | None"]  # per work: its error, or None when it was written


class Probe:
    """Instrumentation around a store's work. Every method's default does nothing more.

    A subclass overrides what it observes; each wrapping method must call ``call`` exactly once
    and return what it returned (or let what it raised through).
    """

    def save(self, plans: Sequence[SavePlan], call: SaveCall) -> list[Receipt]:
        """One ``save`` or ``save_many``: ``call(plans)`` writes and returns the receipts."""
        return call(plans)

    def tasks(self, kind: str, works: Sequence[Work], call: TasksCall) -> Errors:
        """A batch of queued writes applied to their stores: ``kind`` is ``"deferred"`` (a
        worker ran tasks from the priority queues) or ``"replayed"`` (from the spool)."""
        return call(works)

    def backend_call(self, tiers: str, ops: int) -> CallEnd | None:
        """A batch of ``ops`` sent to one server (``tiers`` it serves, "/"-joined) is about to
        go; the function returned (if any) is called with its error, or None, when it ended."""
        return None


class Chain(Probe):
    """Several probes as one: each wraps the next."""

    def __init__(self, probes: Sequence[Probe]) -> None:
        self.probes = tuple(probes)

    def save(self, plans: Sequence[SavePlan], call: SaveCall) -> list[Receipt]:
        for probe in reversed(self.probes):
            call = _bind_save(probe, call)
        return call(plans)

    def tasks(self, kind: str, works: Sequence[Work], call: TasksCall) -> Errors:
        for probe in reversed(self.probes):
            call = _bind_tasks(probe, kind, call)
        return call(works)

    def backend_call(self, tiers: str, ops: int) -> CallEnd | None:
        ends = [e for p in self.probes if (e := p.backend_call(tiers, ops)) is not None]
        if not ends:
            return None

        def end(error: BaseException | None) -> None:
            for e in reversed(ends):
                e(error)

        return end


def _bind_save(probe: Probe, call: SaveCall) -> SaveCall:
    return lambda plans: probe.save(plans, call)


def _bind_tasks(probe: Probe, kind: str, call: TasksCall) -> TasksCall:
    return lambda works: probe.tasks(kind, works, call)


_attach_lock = threading.Lock()


def router_of(store: Any) -> Router:
    """The router of a ``Persistio`` or ``AsyncPersistio``; ValidationError for anything else."""
    from persistio.api.aio import AsyncPersistio
    from persistio.api.store import Persistio

    if isinstance(store, AsyncPersistio):
        store = store.sync
    if not isinstance(store, Persistio):
        raise ValidationError(f"{store!r} is not a Persistio or AsyncPersistio store")
    return store._router


def attach(store: Any, probe: Probe) -> Callable[[], None]:
    """Attach ``probe`` to ``store``; returns a function that detaches it."""
    router = router_of(store)
    with _attach_lock:
        router.probes = (*router.probes, probe)
        router.probe = _combined(router.probes)

    def detach() -> None:
        with _attach_lock:
            router.probes = tuple(p for p in router.probes if p is not probe)
            router.probe = _combined(router.probes)

    return detach


def _combined(probes: Sequence[Probe]) -> Probe | None:
    if not probes:
        return None
    return probes[0] if len(probes) == 1 else Chain(probes)
