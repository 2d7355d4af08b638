"""Given tx.get(for_update=True), concurrent read-modify-writes lose no update, on every store."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

import persistio as pio
from tests.models import Account, Checkin

from .conftest import store_urls

THREADS, ROUNDS = 6, 15


def bump(store: pio.Persistio, account_id: int) -> None:
    """Add 1 to an account's balance, creating it at 1 when absent."""
    with store.transaction() as tx:
        held = tx.get(Account, "accounts", for_update=True, id=account_id)
        if held is None:
            tx.save(Account(account_id, "first", 1))
        else:
            tx.save(msgspec.structs.replace(held, balance=held.balance + 1))


def run_threads(store: pio.Persistio, account_id: int) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work() -> None:
        try:
            start.wait()
            for _ in range(ROUNDS):
                bump(store, account_id)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.parametrize("exists", [True, False], ids=["row-exists", "first-writers"])
def test_concurrent_read_modify_writes_lose_no_update(store: pio.Persistio, exists: bool) -> None:
    # Given an account (or none yet: the first writers race to create it)
    account_id = uuid.uuid4().int % 10**12
    if exists:
        store.save(Account(account_id, "owner", 0))

    # When threads add 1 to its balance at once, each in a transaction reading it for update
    errors = run_threads(store, account_id)

    # Then every increment is in the stored row: none was lost to a concurrent one
    assert errors == []
    stored = store.get(Account, "accounts", id=account_id)
    assert stored is not None
    assert stored.balance == THREADS * ROUNDS


def test_a_transaction_reads_its_rows_and_a_failed_block_releases_them(
    store: pio.Persistio,
) -> None:
    # Given an account
    account_id = uuid.uuid4().int % 10**12
    store.save(Account(account_id, "owner", 10))

    # When a block reads it for update and then raises
    with pytest.raises(RuntimeError), store.transaction() as tx:
        assert tx.get(Account, "accounts", for_update=True, id=account_id) == Account(
            account_id, "owner", 10
        )
        tx.save(Account(account_id, "owner", 99))
        raise RuntimeError("changed my mind")

    # Then nothing was written, and the row is free for the next transaction at once
    done = threading.Event()

    def next_one() -> None:
        with store.transaction() as tx:
            assert tx.get(Account, "accounts", for_update=True, id=account_id) is not None
        done.set()

    t = threading.Thread(target=next_one)
    t.start()
    t.join(timeout=3)
    assert done.is_set()
    assert store.get(Account, "accounts", id=account_id) == Account(account_id, "owner", 10)
    # and a plain read inside a transaction sees the row too, absent keys read None
    with store.transaction() as tx:
        assert tx.get(Account, "accounts", id=account_id) == Account(account_id, "owner", 10)
        assert tx.get(Account, "accounts", id=account_id + 1) is None


def test_transaction_get_refuses_what_it_cannot_read(store: pio.Persistio) -> None:
    with store.transaction() as tx:
        with pytest.raises(pio.ValidationError, match=r"reads acid intents.*store\.get"):
            tx.get(Checkin, "here_now", for_update=True, venue_id=1, user_id=2)
        with pytest.raises(pio.ValidationError, match="exactly the key fields"):
            tx.get(Account, "accounts", for_update=True, owner="x")


def test_async_read_modify_write(
    request: pytest.FixtureRequest, backend_kind: str, tmp_path: Path
) -> None:
    urls: dict[str, Any] = store_urls(request, backend_kind)
    account_id = uuid.uuid4().int % 10**12

    async def bump_async(aio: pio.AsyncPersistio) -> None:
        async with aio.transaction() as tx:
            held = await tx.get(Account, "accounts", for_update=True, id=account_id)
            balance = 0 if held is None else held.balance
            tx.save(Account(account_id, "async", balance + 1))

    async def main() -> int:
        async with pio.AsyncPersistio(**urls, data_dir=tmp_path) as aio:
            await aio.setup()
            # Given concurrent async read-modify-writes of one account
            await asyncio.gather(*(bump_async(aio) for _ in range(20)))
            # Then each of them counted
            found = await aio.get(Account, "accounts", id=account_id)
            assert found is not None
            many = await aio.get_many(Account, "accounts", [{"id": account_id}, {"id": -1}])
            assert many == [found, None]
            return found.balance

    assert asyncio.run(main()) == 20
