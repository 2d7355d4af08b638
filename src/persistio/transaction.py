"""``store.transaction()``: acid intents of every save inside commit together, with an outbox.

The other intents of those saves are written into an outbox table in the same database
transaction, and dispatched only after the commit; if the process dies in between, a worker finds
the outbox rows and dispatches them, so nothing committed is ever lost.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from .backends.base import Upsert
from .intents import Tier
from .plan import TASK_ENCODER, SavePlan
from .router import Outcome, Receipt

if TYPE_CHECKING:
    from .store import Persistio


log = logging.getLogger("persistio.transaction")


class Transaction:
    """Collects saves; commits them on a clean exit, discards them when the block raises."""

    def __init__(self, store: Persistio) -> None:
        self._store = store
        self._plans: list[SavePlan] = []
        self.receipts: list[Receipt] = []  # filled in after the commit

    def save(self, obj: Any) -> str:
        """Validate and plan ``obj`` now (raising before any write); return its write id."""
        plan = self._store._plan(obj, "transaction().save")
        self._plans.append(plan)
        return plan.write_id

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._plans:
            self._commit()

    def _commit(self) -> None:
        """Commit the acid rows and the outbox together, then dispatch the other intents.

        Every write takes its timestamp now, at the commit, not when it was planned: a
        transaction's writes are newer than anything the process saved before it commits.
        Once the commit is done nothing raises: other intents that cannot be dispatched now
        stay in the outbox, which a worker (or drain()) dispatches later; their receipts say
        ``deferred``.
        """
        self._restamp()
        works = [w for p in self._plans for w in p.work]
        acid = [w for w in works if w.bound.tier is Tier.ACID]
        others = [w for w in works if w.bound.tier is not Tier.ACID]
        stores = self._store._router.stores
        with stores.guard(Tier.ACID), stores.acid.transaction() as tx:
            for bound in {w.bound: None for w in acid}:
                stores.prepare(bound)
            upserts: list[Upsert] = [stores.ops.write(w) for w in acid]  # type: ignore[misc]
            if upserts:
                tx.upsert(upserts)
            if others:
                tx.add_outbox([(w.dedup_key, TASK_ENCODER.encode(w.task)) for w in others])
        Outcome.mark(acid, "done")
        if others:
            try:
                self._store._router.dispatch_works(others)
                stores.acid.finish_outbox([w.dedup_key for w in others])
            except Exception as exc:  # committed: the outbox keeps them for a worker
                log.warning("transaction committed; dispatch left to the outbox: %s", exc)
                Outcome.mark(others, "deferred")
        self.receipts = [Outcome.receipt(p) for p in self._plans]

    def _restamp(self) -> None:
        """Give every planned write a timestamp taken now (the write id stays)."""
        clock = self._store._clock
        for plan in self._plans:
            ts = clock.next()
            for work in plan.work:
                work.task = msgspec.structs.replace(work.task, ts=ts)
