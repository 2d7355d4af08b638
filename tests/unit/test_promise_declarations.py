"""Given deferred intents, `within=` and `on_lag=` are checked where they are declared."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest

import persistio as pio


class Thing(msgspec.Struct):
    id: int
    n: int = 0


def test_each_priority_has_a_default_promise() -> None:
    # Given intents that do not say within=
    high = pio.Amorphous("p_high", partition="id", priority=pio.HIGH)
    normal = pio.Amorphous("p_normal", partition="id")
    low = pio.Amorphous("p_low", partition="id", priority=pio.LOW)
    now = pio.Acid("p_now", key="id")

    # Then each deferred one promises its priority's default; a REALTIME one promises nothing
    assert high.within == timedelta(seconds=5)
    assert normal.within == timedelta(minutes=1)
    assert low.within == timedelta(minutes=10)
    assert now.within is None
    assert (high.on_lag, low.on_lag) == ("accept", "accept")


def test_a_declared_promise_is_kept_on_the_intent() -> None:
    intent = pio.Transitory("p_feed", priority=pio.HIGH, within=timedelta(seconds=2), on_lag="shed")
    pio.persist(intent)(type("Feed", (Thing,), {}))
    assert (intent.within, intent.on_lag) == (timedelta(seconds=2), "shed")


@pytest.mark.parametrize(
    ("intent", "message"),
    [
        (
            pio.Acid("bad_rt", key="id", within=timedelta(seconds=1)),
            r"within= and on_lag= are for deferred intents",
        ),
        (
            pio.Volatile("bad_rt2", key="id", ttl=timedelta(1), on_lag="slow"),
            r"within= and on_lag= are for deferred intents",
        ),
        (
            pio.Amorphous("bad_within", partition="id", within=timedelta(0)),
            r"within=datetime.timedelta\(0\): use a positive timedelta",
        ),
        (
            pio.Amorphous("bad_within2", partition="id", within=5),  # type: ignore[arg-type]
            r"within=5: use a positive timedelta",
        ),
        (
            pio.Amorphous("bad_lag", partition="id", on_lag="drop"),  # type: ignore[arg-type]
            r"on_lag='drop': use one of \('accept', 'slow', 'shed'\)",
        ),
        (
            pio.Acid("never_shed", key="id", priority=pio.NORMAL, on_lag="shed"),
            r"on_lag='shed' would drop Acid writes",
        ),
        (
            pio.Count("never_shed_count", key="id", bucket=timedelta(hours=1), on_lag="shed"),
            r"on_lag='shed' would drop Count writes",
        ),
    ],
)
def test_a_bad_promise_is_refused_naming_model_and_intent(intent: Any, message: str) -> None:
    model = type("Promised", (Thing,), {})
    with pytest.raises(pio.IntentError, match=message) as caught:
        pio.persist(intent)(model)
    assert "Promised" in str(caught.value)
    assert intent.name in str(caught.value)


def test_slow_is_allowed_for_acid_work_that_is_deferred() -> None:
    intent = pio.Acid("slow_ledger", key="id", priority=pio.NORMAL, on_lag="slow")
    pio.persist(intent)(type("Ledger", (Thing,), {}))
    assert intent.on_lag == "slow"
