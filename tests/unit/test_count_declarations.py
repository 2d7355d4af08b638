"""Given Count declarations, @persist checks them; reads pick the fewest buckets for a range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

import persistio as pio
from persistio.model.counting import cover, micros
from persistio.model.declare import plan_of
from persistio.testing import temporary_store

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


class Thing(msgspec.Struct):
    id: int
    name: str
    at: datetime
    tags: list[str]
    maybe: int | None = None
    when: datetime | None = None
    bucket: int = 0


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (pio.Count("c1", key="id"), r"needs bucket=timedelta"),
        (pio.Count("c2", key="id", bucket=3600), r"bucket=3600: use a timedelta"),  # type: ignore[arg-type]
        (
            pio.Count("c3", key="id", bucket=timedelta(milliseconds=1500)),
            r"whole number of seconds",
        ),
        (pio.Count("c4", key="id", bucket=timedelta(days=400)), r"from 1 s to 366 days"),
        (pio.Count("c5", key="id", bucket=(HOUR, HOUR)), r"names a size twice"),
        (pio.Count("c6", key="id", bucket=(HOUR, DAY), retain=(DAY,)), r"one per size of bucket"),
        (pio.Count("c7", key="id", bucket=HOUR, retain=timedelta(0)), r"at least one second"),
        (pio.Count("c8", key="id", bucket=HOUR, retain=timedelta(days=365 * 21)), r"20 years"),
        (pio.Count("c9", key="id", bucket=HOUR, identity="id"), r"identity= needs at="),
        (pio.Count("c10", key="nope", bucket=HOUR), r"key field 'nope' is not a field of Thing"),
        (pio.Count("c11", key="tags", bucket=HOUR), r"field 'tags' must be a non-optional"),
        (pio.Count("c12", key="maybe", bucket=HOUR), r"field 'maybe' must be a non-optional"),
        (pio.Count("c13", key="bucket", bucket=HOUR), r"would clash with the count table"),
        (pio.Count("c14", key="id", bucket=HOUR, at="name"), r"at='name' must name a non-opt"),
        (pio.Count("c15", key="id", bucket=HOUR, at="when"), r"at='when' must name a non-opt"),
        (pio.Count("c16", key="id", bucket=HOUR, at="at", identity="nope"), r"identity field"),
        (pio.Count("c17", key="id", bucket=HOUR, weight=3), r"weight= must be a callable"),  # type: ignore[arg-type]
        (pio.Count("c18", key="id", bucket=HOUR, consistency="MOST"), r"consistency='MOST'"),
        (pio.Count("c19", key="id", bucket=HOUR, partition="id"), r"option 'partition' does not"),
        (pio.Count("c20", key="id", bucket=HOUR, project=lambda t: t), r"must be annotated"),
        (pio.Count("c21", key=("id", "id"), bucket=HOUR), r"names a field twice"),
    ],
)
def test_bad_counts_raise_intent_error_naming_model_intent_and_fix(
    count: pio.Count, message: str
) -> None:
    with pytest.raises(pio.IntentError, match=message) as caught:
        pio.persist(count)(Thing)
    assert "'Thing'" in str(caught.value)
    assert f"intent {count.name!r}" in str(caught.value)


def test_a_count_shares_the_amorphous_namespace() -> None:
    with pytest.raises(pio.IntentError, match="declares this name twice"):
        pio.persist(pio.Amorphous("same", partition="id"), pio.Count("same", bucket=HOUR))(Thing)


def test_defaults_and_bucket_order() -> None:
    # Given a count declared with its sizes out of order and one retain per size
    class Seen(msgspec.Struct):
        at: datetime

    count = pio.Count("seen_counts", bucket=(DAY, HOUR), retain=(None, timedelta(days=2)))
    pio.persist(count)(Seen)

    # Then the sizes are kept finest first, each with its own retain, deferred and buffered
    assert count.bucket == (HOUR, DAY)
    assert count.retain == (timedelta(days=2), None)
    (bound,) = plan_of(Seen).intents
    assert (bound.priority, bound.intent.on_outage) == (pio.NORMAL, "buffer")
    assert bound.counting is not None
    assert bound.counting.spec.granularities == (3600, 86_400)


def test_a_month_of_hours_and_days_is_read_as_a_few_dozen_buckets() -> None:
    class Span(msgspec.Struct):
        at: datetime

    pio.persist(pio.Count("span_counts", bucket=(HOUR, DAY)))(Span)
    counting = plan_of(Span).intents[0].counting
    assert counting is not None
    since = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)  # mid-hour: that hour is taken whole
    until = datetime(2026, 1, 31, 14, tzinfo=UTC)
    runs = cover(counting, micros(since), micros(until), micros(until), "count")
    sizes = [(size, (stop - first) // (size * 1_000_000)) for size, first, stop in runs]
    # 14 hours to the first midnight, 29 whole days, then 14 hours
    assert sizes == [(3600, 14), (86_400, 29), (3600, 14)]
    assert runs[0][1] == micros(datetime(2026, 1, 1, 10, tzinfo=UTC))
    assert runs[-1][2] == micros(until)


def test_cover_skips_a_bucket_size_past_its_retain() -> None:
    class Kept(msgspec.Struct):
        at: datetime

    # days are kept a week only: a range a month ago is read from its hours
    pio.persist(pio.Count("kept_counts", bucket=(HOUR, DAY), retain=(None, timedelta(days=7))))(
        Kept
    )
    counting = plan_of(Kept).intents[0].counting
    assert counting is not None
    now = datetime(2026, 3, 1, tzinfo=UTC)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    runs = cover(counting, micros(since), micros(since + 2 * DAY), micros(now), "count")
    assert runs == [(3600, micros(since), micros(since + 2 * DAY))]
    recent = now - 3 * DAY
    runs = cover(counting, micros(recent), micros(recent + 2 * DAY), micros(now), "count")
    assert runs == [(86_400, micros(recent), micros(recent + 2 * DAY))]


@pytest.mark.parametrize("weight", [True, "1", None, float("nan"), float("inf"), 2**63])
def test_a_bad_weight_is_refused_at_save(weight: Any) -> None:
    class Weighed(msgspec.Struct):
        at: datetime
        w: Any

    pio.persist(pio.Count("weighed_counts", bucket=HOUR, weight=lambda o: o.w))(Weighed)
    with temporary_store() as store:
        with pytest.raises(pio.ValidationError, match="weight returned"):
            store.save(Weighed(datetime.now(UTC), weight))
        assert store.status()["queues"]["normal"]["pending"] == 0


class Visit(msgspec.Struct, frozen=True):
    place: str
    when: datetime
    people: int


def to_visit(a: Arrival) -> Visit:
    return Visit(a.venue.lower(), a.at, a.party)


def people(v: Visit) -> int:
    return v.people


@pio.persist(
    pio.Count(
        "arrivals_by_place", key=("place",), bucket=HOUR, at="when", project=to_visit, weight=people
    )
)
class Arrival(msgspec.Struct, frozen=True):
    venue: str
    at: datetime
    party: int


def test_a_count_of_a_projection_counts_the_projected_fields() -> None:
    # Given a count of what project= derives from the model (its own key and time fields)
    at = datetime(2026, 2, 1, 10, 30, tzinfo=UTC)
    with temporary_store() as store:
        # When arrivals are saved under names that project to one place
        store.save_many([Arrival("Cafe", at, 2), Arrival("CAFE", at, 3), Arrival("Bar", at, 1)])
        store.drain(timeout=10)

        # Then the count is per projected place, weighted by what weight= says of a Visit
        since = datetime(2026, 2, 1, 10, tzinfo=UTC)
        cafe = store.count(
            Arrival, "arrivals_by_place", since=since, until=since + HOUR, place="cafe"
        )
        bar = store.count(
            Arrival, "arrivals_by_place", since=since, until=since + HOUR, place="bar"
        )
        assert (cafe, bar) == (5, 1)
