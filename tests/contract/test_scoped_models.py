"""Given Persistio(models=[...]), the store covers exactly those models: setup, status,
consumers, saves and reads."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

import persistio as pio


@pio.persist(pio.Acid("scope_in_rows", key=("id",)), pio.Transitory("scope_in_events"))
class Covered(msgspec.Struct, frozen=True):
    id: int


@pio.persist(pio.Acid("scope_out_rows", key=("id",)), pio.Transitory("scope_out_events"))
class Uncovered(msgspec.Struct, frozen=True):
    id: int


def test_a_store_covers_only_its_models(make_store: Any, backend_kind: str) -> None:
    # Given a store scoped to one model, set up
    store: pio.Persistio = make_store(models=[Covered])

    # Then its tables and streams are those of that model only
    engine = sa.create_engine(store.urls[pio.Tier.ACID])
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert "scope_in_rows" in tables
    if backend_kind == "embedded":  # a fresh file (the real database is the whole session's)
        assert "scope_out_rows" not in tables
    streams = store.status()["streams"]
    assert "scope_in_events" in streams
    assert "scope_out_events" not in streams
    assert "notify_friends" not in streams  # another test module's model

    # and it saves and reads its model, and refuses the other with a clear error
    n = uuid.uuid4().int % 10**9
    store.save(Covered(n))
    assert store.get(Covered, "scope_in_rows", id=n) == Covered(n)
    with pytest.raises(pio.ValidationError, match=r"covers only.*Covered"):
        store.save(Uncovered(n))
    with pytest.raises(pio.ValidationError, match="covers only"):
        store.get(Uncovered, "scope_out_rows", id=n)
    with pytest.raises(pio.ValidationError, match="covers only"):
        store.consumer("scope_out_events")(print)

    # and its consumers drain its own streams
    seen: list[Covered] = []
    store.consumer("scope_in_events")(seen.append)
    store.drain(timeout=30)
    assert seen == [Covered(n)]


def test_models_must_be_declared_models(tmp_path: Any) -> None:
    with pytest.raises(pio.ConfigError, match="decorate it with @persist"):
        pio.Persistio(models=[dict], data_dir=tmp_path)
    with pytest.raises(pio.ConfigError, match="list of @persist model classes"):
        pio.Persistio(models=Covered, data_dir=tmp_path)  # type: ignore[arg-type]
