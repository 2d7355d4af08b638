"""Given Persistio(models=[...]), the store covers exactly those models: setup, status,
consumers, saves, reads and the tasks its workers run. Given namespace=, everything it stores is
its own: two stores may use one intent name for two models."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
import sqlalchemy as sa

import persistio as pio
from tests import redis_clients


@pio.persist(pio.Acid("scope_in_rows", key=("id",)), pio.Transitory("scope_in_events"))
class Covered(msgspec.Struct, frozen=True):
    id: int


@pio.persist(
    pio.Acid("scope_out_rows", key=("id",)),
    pio.Transitory("scope_out_events"),
    pio.Amorphous("scope_out_log", partition=("id",), priority=pio.NORMAL),
)
class Uncovered(msgspec.Struct, frozen=True):
    id: int


# Two models of two apps that name their intents alike: one store each, in its own namespace.
# Declared by the tests that use them (a store over every declared model leaves such a pair out,
# with a warning: the other tests' stores need not see them).
class ShopOrder(msgspec.Struct, frozen=True):
    id: int
    label: str


class GameOrder(msgspec.Struct, frozen=True):
    id: int
    label: str
    points: int


@pytest.fixture(scope="module")
def orders() -> None:
    for model in (ShopOrder, GameOrder):
        if "__persistio_plan__" not in model.__dict__:
            pio.persist(
                pio.Acid("ns_orders", key=("id",)),
                pio.Volatile("ns_order_cache", key=("id",), ttl=timedelta(minutes=5)),
                pio.Amorphous("ns_order_log", partition=("id",), priority=pio.NORMAL),
                pio.Transitory("ns_order_events"),
            )(model)


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


def test_a_namespace_joins_names_unambiguously(tmp_path: Any) -> None:
    for bad in ("two__parts", "trailing_", "n" * 33):
        with pytest.raises(pio.ConfigError, match=rf"namespace='{bad}'"):
            pio.Persistio(data_dir=tmp_path, namespace=bad)


def test_models_must_be_declared_models(tmp_path: Any) -> None:
    with pytest.raises(pio.ConfigError, match="decorate it with @persist"):
        pio.Persistio(models=[dict], data_dir=tmp_path)
    with pytest.raises(pio.ConfigError, match="list of @persist model classes"):
        pio.Persistio(models=Covered, data_dir=tmp_path)  # type: ignore[arg-type]


def _tables(store: pio.Persistio, tier: pio.Tier, raw_cassandra: Any) -> set[str]:
    """The tables the tier's server holds, read with its own client."""
    url = store.urls[tier]
    if url.startswith("cassandra"):
        keyspace = urlsplit(url).path.strip("/")
        rows = raw_cassandra.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", [keyspace]
        )
        return {r.table_name for r in rows}
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _acid_label(store: pio.Persistio, table: str, n: int) -> Any:
    engine = sa.create_engine(store.urls[pio.Tier.ACID])
    try:
        with engine.connect() as conn:
            query = sa.text(f'SELECT label FROM "{table}" WHERE id = :n')
            return conn.execute(query, {"n": n}).scalar_one_or_none()
    finally:
        engine.dispose()


@pytest.mark.usefixtures("orders")
def test_two_stores_keep_one_intent_name_apart_by_namespace(
    make_store: Any, backend_kind: str, request: pytest.FixtureRequest
) -> None:
    raw_cassandra = request.getfixturevalue("raw_cassandra") if backend_kind == "real" else None
    # Given two stores on the same servers, each with its own model and namespace, whose
    # models declare intents of the same names in every tier
    shop = make_store(models=[ShopOrder], namespace="shop")
    game = make_store(models=[GameOrder], namespace="game")
    shop_seen: list[ShopOrder] = []
    game_seen: list[GameOrder] = []
    shop.consumer("ns_order_events")(shop_seen.append)
    game.consumer("ns_order_events")(game_seen.append)

    # When each saves an object with the same key, and each drains its own work
    n = uuid.uuid4().int % 10**9
    shop.save(ShopOrder(n, "boots"))
    game.save(GameOrder(n, "badge", 30))
    shop.drain(timeout=30)
    game.drain(timeout=30)

    # Then each reads back its own object in every tier, and delivered only its own event
    assert shop.get(ShopOrder, "ns_orders", id=n) == ShopOrder(n, "boots")
    assert game.get(GameOrder, "ns_orders", id=n) == GameOrder(n, "badge", 30)
    assert shop.get(ShopOrder, "ns_order_cache", id=n) == ShopOrder(n, "boots")
    assert game.get(GameOrder, "ns_order_cache", id=n) == GameOrder(n, "badge", 30)
    assert shop.query(ShopOrder, "ns_order_log", id=n) == [ShopOrder(n, "boots")]
    assert game.query(GameOrder, "ns_order_log", id=n) == [GameOrder(n, "badge", 30)]
    assert shop_seen == [ShopOrder(n, "boots")]
    assert game_seen == [GameOrder(n, "badge", 30)]

    # And the servers hold two tables (namespace__intent), each with its own row
    for tier, name in ((pio.Tier.ACID, "ns_orders"), (pio.Tier.AMORPHOUS, "ns_order_log")):
        tables = _tables(shop, tier, raw_cassandra)
        assert {f"shop__{name}", f"game__{name}"} <= tables, tier
        if backend_kind == "embedded":  # a fresh file: nothing else could have made it
            assert name not in tables
    assert _acid_label(shop, "shop__ns_orders", n) == "boots"
    assert _acid_label(shop, "game__ns_orders", n) == "badge"
    if backend_kind == "real":  # the volatile values are two keys of their own in Redis
        redis = redis_clients.client(shop.urls[pio.Tier.VOLATILE])
        try:
            for ns in ("shop", "game"):
                assert list(redis.scan_iter(match=f"pio:v:{ns}__ns_order_cache:*{n}*"))
            assert not list(redis.scan_iter(match=f"pio:v:ns_order_cache:*{n}*"))
        finally:
            redis.close()


@pytest.mark.usefixtures("orders")
def test_a_store_whose_models_share_an_intent_name_is_refused(make_store: Any) -> None:
    # Given one store over both models, which would write both into one table
    with pytest.raises(pio.IntentError, match=r"ShopOrder and GameOrder both declare"):
        make_store(models=[ShopOrder, GameOrder], namespace="both")  # setup() refuses
    store = pio.Persistio(
        models=[ShopOrder, GameOrder], data_dir=make_store(namespace="probe").data_dir
    )
    try:
        # Then saving either is refused too, naming the fix, and nothing is written
        with pytest.raises(pio.IntentError, match=r"namespace="):
            store.save(ShopOrder(1, "boots"))
        assert "ns_orders" not in _tables(store, pio.Tier.ACID, None)
    finally:
        store.close()


@pytest.mark.usefixtures("orders")
def test_two_stores_on_one_server_without_namespaces_are_refused(make_store: Any) -> None:
    # Given a store that keeps ShopOrder's intents under their own names
    shop = make_store(models=[ShopOrder])
    # When another store of the process, on the same servers, would keep GameOrder's there
    with pytest.raises(pio.IntentError, match=r"another store in this process.*namespace"):
        make_store(models=[GameOrder])
    # Then it may, once the first store is closed
    shop.close()
    game = make_store(models=[GameOrder])
    n = uuid.uuid4().int % 10**9
    game.save(GameOrder(n, "badge", 3))
    assert game.get(GameOrder, "ns_orders", id=n) == GameOrder(n, "badge", 3)


def test_a_scoped_store_leaves_other_models_tasks_to_their_store(make_store: Any) -> None:
    # Given two stores sharing the task queues, each scoped to its own model
    covered = make_store(models=[Covered])
    uncovered = make_store(models=[Uncovered])
    n = uuid.uuid4().int % 10**9
    uncovered.save(Uncovered(n))  # its amorphous row is a NORMAL task on the shared queue
    assert covered.status()["queues"]["normal"]["pending"] == 1

    # When the first store's worker runs, it does not write the other model's row
    for _ in range(3):
        covered.step()
    assert uncovered.query(Uncovered, "scope_out_log", id=n) == []
    assert covered.status()["dead_letters"] == 0

    # Then the store that covers the model runs it
    uncovered.drain(timeout=30)
    assert uncovered.query(Uncovered, "scope_out_log", id=n) == [Uncovered(n)]
