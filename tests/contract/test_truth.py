"""The truth when a save raises: never for an acid write that committed; and when it does raise,
the exception says which intents were written and which were not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

import persistio as pio

NOBODY_REDIS = "redis://127.0.0.1:1/0"  # nothing listens: every call fails at once
NOBODY_PG = "postgresql+psycopg://nobody@127.0.0.1:1/none"


@pio.persist(
    pio.Acid("truth_orders", key=("id",)),
    pio.Transitory("truth_order_events"),
)
class TruthOrder(msgspec.Struct, frozen=True):
    id: int
    cents: int


@pio.persist(
    pio.Acid("truth_accounts", key=("id",)),
    pio.Volatile(
        "truth_account_now",
        key=("id",),
        ttl=__import__("datetime").timedelta(hours=1),
        on_outage="fail",
    ),
)
class TruthAccount(msgspec.Struct, frozen=True):
    id: int
    balance: int


def urls_with(make_store: Any, **down: str) -> dict[str, str]:
    probe = make_store()
    urls = {t.value: u for t, u in probe.urls.items()}
    probe.close()
    return {**urls, **down}


def test_a_save_whose_acid_write_committed_never_raises(make_store: Any, tmp_path: Path) -> None:
    # Given an acid row and a stream entry per order, the stream's Redis down and a spool that
    # holds one item (and waits for room only briefly)
    urls = urls_with(make_store, transitory=NOBODY_REDIS, volatile=NOBODY_REDIS)
    with pio.Persistio(
        **urls,
        data_dir=tmp_path / "full",
        spool_limits=pio.SpoolLimits(max_items=1, full_timeout=0.1),
    ) as store:
        assert store.save(TruthOrder(1, 100)).buffered == ("truth_order_events",)

        # When a second order commits its row but its entry finds the spool full
        receipt = store.save(TruthOrder(2, 200))

        # Then the save did not raise: the row is there, and the receipt says what failed
        assert receipt.done == ("truth_orders",)
        assert receipt.failed == ("truth_order_events",)
        assert store.get(TruthOrder, "truth_orders", id=2) == TruthOrder(2, 200)
        assert store.status()["failed"] == {"truth_order_events": 1}


def test_a_save_that_raises_says_what_was_written(make_store: Any, tmp_path: Path) -> None:
    # Given an acid server that cannot be reached
    urls = urls_with(make_store, acid=NOBODY_PG)
    with (
        pio.Persistio(
            **urls, data_dir=tmp_path / "down", connect_timeout=1, realtime_deadline=2
        ) as store,
        pytest.raises(pio.BackendUnavailable) as caught,
    ):
        # When an order is saved, then it raises, saying nothing was written, naming the intents
        store.save(TruthOrder(3, 300))
    assert caught.value.written == ()
    assert caught.value.not_written == ("truth_order_events", "truth_orders")
    assert "nothing of this save was written" in str(caught.value)


def test_a_transaction_that_committed_never_raises(make_store: Any, tmp_path: Path) -> None:
    # Given an account whose volatile copy must not be buffered (on_outage="fail") and whose
    # Redis is down
    urls = urls_with(make_store, transitory=NOBODY_REDIS, volatile=NOBODY_REDIS)
    with pio.Persistio(**urls, data_dir=tmp_path / "tx") as store:
        # When a transaction commits it
        with store.transaction() as tx:
            tx.save(TruthAccount(1, 50))

        # Then it did not raise after its commit: the row is there, and the volatile copy
        # waits in the outbox for a worker (its receipt says deferred)
        assert store.get(TruthAccount, "truth_accounts", id=1) == TruthAccount(1, 50)
        (receipt,) = tx.receipts
        assert receipt.done == ("truth_accounts",)
        assert receipt.deferred == ("truth_account_now",)
