"""``store.transaction()``: acid intents of every save inside commit together, with an outbox.

The other intents of those saves are written into an outbox table in the same database
transaction, and dispatched only after the commit; if the process dies in between, a worker finds
the outbox rows and dispatches them, so nothing committed is ever lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from persistio.backends.base import AcidTransaction, Upsert
from persistio.errors import ValidationError
from persistio.model.intents import Tier
from persistio.model.tasks import TASK_ENCODER, SavePlan
from persistio.read.lookups import not_before_of
from persistio.write.router import Outcome, Receipt

if TYPE_CHECKING:
    from persistio.api.store import Persistio


log = logging.getLogger("persistio.transaction")
T = TypeVar("T")


class Transaction:
    """Collects saves; commits them on a clean exit, discards them when the block raises."""

    def __init__(self, store: Persistio) -> None:
        self._store = store
        self._plans: list[SavePlan] = []
        self.receipts: list[Receipt] = []  # filled in after the commit
        # the database transaction, opened by the first get() (else by the commit)
        self._open: ExitStack | None = None
        self._db: AcidTransaction | None = None

    def get(self, model: type[T], intent: str, *, for_update: bool = False, **key: Any) -> T | None:
        """Read an acid intent's row inside this transaction; None if absent.

        With ``for_update=True`` the key stays held until the transaction ends (PostgreSQL
        ``SELECT ... FOR UPDATE``, SQLite an immediate transaction): another transaction's
        ``get(..., for_update=True)`` of the same key waits, so a read-modify-write needs no lock
        of the application's. Keep such a transaction short: it must commit within
        ``Timeouts.realtime`` seconds of its first ``get``.

        Raises:
            ValidationError: not an acid intent, or not exactly its key fields.
            BackendUnavailable: the acid store could not be reached.
        """
        plan = self._store._plan_of(model, "transaction().get")
        bound = plan.intent(intent)
        where = f"transaction().get({model.__qualname__}, {intent!r})"
        if bound.tier is not Tier.ACID:
            raise ValidationError(
                f"{where}: a transaction reads acid intents; {intent!r} is {bound.tier}: "
                "read it with store.get()"
            )
        if not isinstance(for_update, bool):
            raise ValidationError(f"{where}: for_update={for_update!r}: use True or False")
        values = bound.codec.check_key(key, bound.key, where)
        stores = self._store._router.stores
        with stores.guard(Tier.ACID):
            stores.prepare(bound)
            found = self._begin().get(stores.ops.table(bound), values, for_update)
        if found is None:
            return None
        # the commit is stamped after what it read, so its writes win over the row they replace
        self._store._clock_sync.follow(found[1], bound.name)
        return bound.codec.from_row(found[0])  # type: ignore[no-any-return]

    def _begin(self) -> AcidTransaction:
        if self._db is None:
            stack = ExitStack()
            self._db = stack.enter_context(self._store._router.stores.acid.transaction())
            self._open = stack
        return self._db

    @contextmanager
    def _acid(self) -> Iterator[AcidTransaction]:
        """The open database transaction (committed when the block ends), or a new one."""
        stack, db = self._open, self._db
        self._open = self._db = None
        if stack is None or db is None:
            with self._store._router.stores.acid.transaction() as tx:
                yield tx
            return
        with stack:
            yield db

    def save(
        self, obj: Any, *, delay: timedelta | None = None, not_before: datetime | None = None
    ) -> str:
        """Validate and plan ``obj`` now (raising before any write); return its write id.

        ``delay`` / ``not_before``: as in ``store.save``. The acid rows commit with the
        transaction; the stream entries and deferred tasks, dispatched after the commit, are
        handed to consumers and workers only when due (if the process dies first, the outbox
        keeps them, and the due time with them).
        """
        due = not_before_of(delay, not_before, "transaction().save")
        plan = self._store._plan(obj, "transaction().save", None, due)
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
        elif self._open is not None:
            # nothing to write, or the block raised: end what get() opened (rolled back if the
            # block raised), releasing its locks
            stack = self._open
            self._open = self._db = None
            stack.__exit__(exc_type, exc, tb)

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
        with stores.guard(Tier.ACID), self._acid() as tx:
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
