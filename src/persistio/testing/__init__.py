"""Helpers for users' own tests: a throwaway store, and a check that all work has landed.

    from persistio.testing import temporary_store, assert_settled

    def test_checkin_reaches_the_feed():
        with temporary_store() as store:          # embedded: no server, a temporary data dir
            store.save(checkin)
            assert_settled(store)                 # deferred work ran; nothing spooled or dead
            assert store.query(Checkin, "activity", user_id=1) == [checkin]

Pass URLs (``temporary_store(acid="postgresql+psycopg://...")``) to run the same test on real
servers. ``BackendContract`` is the contract suite a backend (a plugin's, see the
``persistio.backends`` entry points) is tested with. Nothing here imports pytest.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from persistio.api.store import Persistio
from persistio.model.declare import plan_of
from persistio.model.tasks import plan_uncount


@contextmanager
def temporary_store(**options: Any) -> Iterator[Persistio]:
    """A set-up ``Persistio`` whose embedded files live in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="persistio-test-") as data_dir:
        store = Persistio(**{"data_dir": data_dir, **options})
        try:
            store.setup()
            yield store
        finally:
            store.close()


def assert_settled(store: Persistio, timeout: float = 30.0) -> dict[str, Any]:
    """Drain ``store``, then assert nothing is spooled, dead-lettered or dropped; return status."""
    store.drain(timeout=timeout)
    status = store.status()
    problems = {
        "spooled": status["spool"]["depth"],
        "dead letters": status["dead_letters"],
        "dropped": sum(status["dropped"].values()),
    }
    found = {k: v for k, v in problems.items() if v}
    assert not found, f"the store did not settle cleanly: {found}"
    return status


def wait_for_folds(store: Persistio, timeout: float = 60.0) -> None:
    """Until every count contribution this store wrote is folded into its bucket's rollup
    (``status()["counts"]["fold_queue"] == 0``), for a test that reads the rollups raw. Counts
    read through the store are exact without it."""
    deadline = time.monotonic() + timeout
    while store.status()["counts"]["fold_queue"]:
        if time.monotonic() > deadline:
            raise AssertionError(f"counts not folded after {timeout}s: {store.status()['counts']}")
        time.sleep(0.1)


def planned_writes(
    store: Persistio, obj: Any, *, write_id: str | None = None, ts: int | None = None
) -> list[Any]:
    """The writes one ``save(obj)`` would make (one per intent), planned but not written.

    Pass them to ``replay`` in any order, any number of times, to test what a spool replay or a
    redelivery does: every store keeps the newest write, and a consumer sees an entry once.
    ``write_id`` and ``ts`` (both or neither) stamp them as another process would have, e.g. to
    make two writes with one timestamp.
    """
    stamp = None
    if write_id is not None or ts is not None:
        if write_id is None or ts is None:
            raise ValueError("planned_writes: give both write_id and ts, or neither")
        stamp = (write_id, ts)
    return list(store._plan(obj, "planned_writes", stamp).work)


def planned_uncount(store: Persistio, obj: Any) -> list[Any]:
    """The writes that withdraw ``obj`` from its model's counts declared with ``identity=``
    (what a delete of ``obj`` does to them), planned but not written; apply with ``replay``."""
    return list(plan_uncount(plan_of(type(obj)), obj, store._clock, "planned_uncount").work)


def planned_delete(store: Persistio, obj: Any) -> list[Any]:
    """The writes one ``delete(obj)`` would make (a tombstone per keyed intent, and the
    uncounts), stamped now but not written; apply with ``replay``, e.g. before an older save's
    ``planned_writes`` to test that a late save never brings a deleted value back."""
    return list(store._plan_delete_object(obj).work)


def replay(store: Persistio, writes: list[Any]) -> None:
    """Apply ``writes`` (from ``planned_writes``) to their own stores, as a spool replay does."""
    for result in store._router.apply(writes):
        if isinstance(result, BaseException):
            raise result


def __getattr__(name: str) -> Any:
    # the suite declares its own models: only a test that asks for it imports it
    if name == "BackendContract":
        from persistio.testing.contract import BackendContract

        return BackendContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
