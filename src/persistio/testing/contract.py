"""The contract every backend set keeps, as a test suite a backend's author runs with one import.

    # test_my_backend.py
    import pytest
    import persistio as pio
    from persistio.testing import BackendContract

    class TestMyAcid(BackendContract):
        @pytest.fixture
        def store(self, tmp_path):
            with pio.Persistio(acid="mysql://...", data_dir=tmp_path) as store:
                store.setup()
                yield store

pytest collects the ``test_*`` methods below and runs each against that ``store``: saves and
reads in every tier, ``get_many``, ``delete`` under last-write-wins (a late, older save never
brings a value back), ``pages`` with cursors, typed projections, and read-modify-write in a
transaction with no lost update. Importing this module declares its models (intent names
``pio_contract_*``); nothing here imports pytest.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from persistio.api.store import Persistio
from persistio.errors import ValidationError
from persistio.model.declare import persist
from persistio.model.intents import Acid, Amorphous, Volatile
from persistio.read.pages import Page
from persistio.testing import planned_delete, planned_writes, replay


class ContractItem(msgspec.Struct, frozen=True):
    owner: str
    at: datetime
    text: str


def _item(r: ContractRecord) -> ContractItem:
    return ContractItem(r.owner, r.at, f"{r.owner}/{r.n}")


@persist(
    Acid("pio_contract_rows", key=("id",)),
    Volatile("pio_contract_cache", key=("id",), ttl=timedelta(hours=1)),
    Amorphous("pio_contract_docs", partition=("owner",), order=("at", "n", "id")),
    Amorphous("pio_contract_items", partition=("owner",), order=("at",), project=_item),
)
class ContractRecord(msgspec.Struct, frozen=True):
    id: str
    owner: str
    n: int
    at: datetime
    balance: int = 0


KEYED = ("pio_contract_rows", "pio_contract_cache")


def _record(owner: str, n: int, **changes: Any) -> ContractRecord:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return ContractRecord(f"{owner}-{n}", owner, n, at, **changes)


def _owner() -> str:
    return f"o'{{;{uuid.uuid4().hex[:10]}"


def _raises(error: type[Exception], call: Any) -> None:
    try:
        call()
    except error:
        return
    raise AssertionError(f"expected {error.__name__}")


class BackendContract:
    """Subclass it with a ``store`` fixture (a set-up ``Persistio``) to run the suite."""

    def test_save_then_read_every_tier(self, store: Persistio) -> None:
        rec = _record(_owner(), 1)
        store.save(rec)
        store.drain(timeout=30)
        assert store.get(ContractRecord, "pio_contract_rows", id=rec.id) == rec
        assert store.get(ContractRecord, "pio_contract_cache", id=rec.id) == rec
        docs = store.query(ContractRecord, "pio_contract_docs", owner=rec.owner)
        assert docs == [rec]

    def test_get_many_is_aligned_with_its_keys(self, store: Persistio) -> None:
        owner = _owner()
        recs = [_record(owner, n) for n in range(3)]
        store.save_many(recs)
        store.drain(timeout=30)
        keys = [{"id": recs[2].id}, {"id": "absent"}, {"id": recs[0].id}]
        for intent in KEYED:
            assert store.get_many(ContractRecord, intent, keys) == [recs[2], None, recs[0]]
        doc_keys = [{"owner": owner, "at": r.at, "n": r.n, "id": r.id} for r in (recs[1], recs[0])]
        assert store.get_many(ContractRecord, "pio_contract_docs", doc_keys) == [recs[1], recs[0]]

    def test_delete_wins_over_a_late_older_save(self, store: Persistio) -> None:
        rec = _record(_owner(), 1)
        older = planned_writes(store, rec)
        gone = planned_delete(store, rec)
        replay(store, gone)
        replay(store, older)  # arrives after the delete, older than it
        for intent in KEYED:
            assert store.get(ContractRecord, intent, id=rec.id) is None
        key: dict[str, Any] = {"owner": rec.owner, "at": rec.at, "n": rec.n, "id": rec.id}
        assert store.get(ContractRecord, "pio_contract_docs", **key) is None
        newer = msgspec.structs.replace(rec, balance=2)
        store.save(newer)
        store.drain(timeout=30)
        replay(store, gone)  # older than the newer save: changes nothing
        assert store.get(ContractRecord, "pio_contract_rows", id=rec.id) == newer
        assert store.get(ContractRecord, "pio_contract_docs", **key) == newer

    def test_delete_through_the_store(self, store: Persistio) -> None:
        rec = _record(_owner(), 1)
        store.save(rec)
        store.drain(timeout=30)
        store.delete(rec)
        store.drain(timeout=30)
        assert store.get(ContractRecord, "pio_contract_rows", id=rec.id) is None
        assert store.query(ContractRecord, "pio_contract_docs", owner=rec.owner) == []

    def test_pages_read_a_partition_whole_and_resume(self, store: Persistio) -> None:
        owner = _owner()
        recs = [_record(owner, n) for n in range(23)]
        store.save_many(recs)
        store.drain(timeout=30)
        pages = list(store.pages(ContractRecord, "pio_contract_docs", page_size=5, owner=owner))
        assert all(isinstance(p, Page) for p in pages)
        assert [r.n for p in pages for r in p] == list(range(22, -1, -1))
        cursor = pages[1].cursor
        assert isinstance(cursor, str)
        rest = store.pages(ContractRecord, "pio_contract_docs", cursor=cursor, owner=owner)
        assert [r.n for p in rest for r in p] == list(range(12, -1, -1))
        _raises(
            ValidationError,
            lambda: store.pages(ContractRecord, "pio_contract_docs", cursor="x", owner=owner),
        )

    def test_projected_reads_are_typed(self, store: Persistio) -> None:
        rec = _record(_owner(), 1)
        store.save(rec)
        store.drain(timeout=30)
        found = store.query(
            ContractRecord, "pio_contract_items", as_type=ContractItem, owner=rec.owner
        )
        assert found == [_item(rec)]

    def test_read_modify_write_loses_no_update(self, store: Persistio) -> None:
        rec = _record(_owner(), 1)
        store.save(rec)
        errors: list[BaseException] = []

        def bump() -> None:
            try:
                for _ in range(10):
                    with store.transaction() as tx:
                        row = tx.get(
                            ContractRecord, "pio_contract_rows", for_update=True, id=rec.id
                        )
                        assert row is not None
                        tx.save(msgspec.structs.replace(row, balance=row.balance + 1))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        found = store.get(ContractRecord, "pio_contract_rows", id=rec.id)
        assert found is not None
        assert found.balance == 40
