"""Given a bad @persist declaration, IntentError names the model, the intent and the fix."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
import pytest

import persistio as pio


class Thing(msgspec.Struct):
    id: int
    name: str
    tags: list[str]
    maybe: int | None = None


def declare(*intents: Any, model: type = Thing) -> None:
    pio.persist(*intents)(model)


@pytest.mark.parametrize(
    ("intents", "message"),
    [
        ((pio.Acid("things", key=("nope",)),), r"key field 'nope' is not a field of Thing"),
        ((pio.Volatile("things_v", key=("id",)),), r"needs ttl=timedelta"),
        (
            (pio.Acid("dup", key="id"), pio.Amorphous("dup", partition="id")),
            r"declares this name twice",
        ),
        (
            (pio.Volatile("v", key="id", ttl=timedelta(1), partition="id"),),
            r"option 'partition' does not fit a Volatile intent",
        ),
        ((pio.Acid("Bad-Name", key="id"),), r"not a safe identifier"),
        ((pio.Acid("x; drop table t", key="id"),), r"not a safe identifier"),
        ((pio.Acid("things2", key="tags"),), r"key field 'tags' must be a non-optional"),
        ((pio.Acid("things3", key="maybe"),), r"key field 'maybe' must be a non-optional"),
        ((pio.Acid("things4", key="id", priority=7),), r"priority=7"),
        ((pio.Acid("things5", key="id", on_outage="ignore"),), r"on_outage='ignore'"),
        ((pio.Volatile("things6", key="id", ttl=timedelta(0)),), r"ttl=.*positive"),
        ((pio.Amorphous("things7", partition=()),), r"partition= must name"),
        ((pio.Amorphous("things8", partition="id", retain=timedelta(milliseconds=5)),), r"retain="),
        ((pio.Amorphous("things9", partition="id", consistency="MOST"),), r"consistency='MOST'"),
        ((pio.Transitory("things10", max_deliveries=0),), r"max_deliveries=0"),
        ((pio.Transitory("things13", partitions=0),), r"partitions=0: use an int from 1 to 256"),
        ((pio.Transitory("things14", partitions=257),), r"partitions=257"),
        ((pio.Transitory("things15", partitions=4, order_by="nope"),), r"key field 'nope'"),
        ((pio.Transitory("things16", order_by=("tags",)),), r"key field 'tags' must be"),
        ((pio.Transitory("things17", order_by=("id", "id")),), r"names a field twice"),
        ((pio.Transitory("things18", replicas=-1),), r"replicas=-1: use an int from 0 to 16"),
        ((pio.Transitory("things19", replicas=True),), r"replicas=True"),
        ((pio.Acid("things11", key="id", project=lambda t: t),), r"project= must be annotated"),
        (
            (pio.Volatile("things12", key="id", ttl=timedelta(1), rebuild_from="nothing"),),
            r"rebuild_from='nothing'",
        ),
        (("not an intent",), r"is not an intent"),
        ((), r"declare at least one intent"),
    ],
)
def test_bad_declarations_raise_intent_error(intents: tuple[Any, ...], message: str) -> None:
    with pytest.raises(pio.IntentError, match=message) as caught:
        declare(*intents)
    assert "'Thing'" in str(caught.value)


def test_the_intent_name_is_in_the_message() -> None:
    with pytest.raises(pio.IntentError, match=r"intent 'things_v'"):
        declare(pio.Volatile("things_v", key=("id",)))


def test_a_non_record_class_is_refused() -> None:
    with pytest.raises(pio.IntentError, match=r"msgspec.Struct \(or a dataclass\)"):
        declare(pio.Acid("plain", key="id"), model=int)


def test_two_models_may_declare_one_intent_name() -> None:
    class A(msgspec.Struct):
        id: int

    class B(msgspec.Struct):
        id: int

    # which store keeps them apart is the store's business (tests/contract/test_scoped_models)
    pio.persist(pio.Acid("shared_table_name", key="id"))(A)
    pio.persist(pio.Acid("shared_table_name", key="id"))(B)
    assert A.__persistio_plan__.intent("shared_table_name").model is A  # type: ignore[attr-defined]
    assert B.__persistio_plan__.intent("shared_table_name").model is B  # type: ignore[attr-defined]


def test_dataclasses_are_models_too() -> None:
    @pio.persist(pio.Acid("dataclass_rows", key="id"))
    @dataclass(frozen=True)
    class Row:
        id: uuid.UUID
        n: int

    plan = Row.__persistio_plan__  # type: ignore[attr-defined]
    assert [c.name for c in plan.intents[0].codec.columns] == ["id", "n"]


def test_decorating_does_no_io_and_defaults_follow_the_tier() -> None:
    class Quiet(msgspec.Struct):
        id: int

    pio.persist(
        pio.Transitory("quiet_t"),
        pio.Volatile("quiet_v", key="id", ttl=timedelta(1)),
        pio.Acid("quiet_a", key="id"),
        pio.Amorphous("quiet_m", partition="id"),
    )(Quiet)
    got = {b.name: (b.priority, b.intent.on_outage) for b in Quiet.__persistio_plan__.intents}  # type: ignore[attr-defined]
    assert got == {
        "quiet_t": (pio.REALTIME, "buffer"),
        "quiet_v": (pio.REALTIME, "drop"),
        "quiet_a": (pio.REALTIME, "fail"),
        "quiet_m": (pio.NORMAL, "buffer"),
    }


def test_undecorated_models_are_refused_by_the_store(tmp_path: Any) -> None:
    class Loose(msgspec.Struct):
        id: int

    with (
        pio.Persistio(data_dir=tmp_path) as store,
        pytest.raises(pio.IntentError, match="@persist"),
    ):
        store.save(Loose(1))
