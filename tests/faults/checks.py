"""What landed where, read with raw clients (redis-py, psycopg, cassandra-driver), and the
ledger checks: every acked write present exactly once, raised ones absent, drops counted."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Collection, Iterable
from typing import Any

import redis

from .load import Ledger


class Deliveries:
    """A consumer handler that records every delivery it gets, so duplicates stay visible."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[int] = []

    def __call__(self, obj: Any) -> None:
        with self._lock:
            self.log.append(int(obj.n))

    @property
    def counts(self) -> Counter[int]:
        with self._lock:
            return Counter(self.log)


def volatile_present(client: redis.Redis, intent: str, ns: Iterable[int]) -> set[int]:
    """The objects whose volatile value is in Redis (``pio:v:<intent>:{<n>}``)."""
    wanted = sorted(ns)
    pipe = client.pipeline(transaction=False)
    for n in wanted:
        pipe.exists(f"pio:v:{intent}:{{{n}}}")
    return {n for n, found in zip(wanted, pipe.execute(), strict=True) if found}


def acid_rows(conninfo: str, table: str) -> Counter[int]:
    """``n`` of every row of an acid table (a psycopg connection of its own)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        rows = conn.execute(sql.SQL("SELECT n FROM {}").format(sql.Identifier(table))).fetchall()
    return Counter(int(r[0]) for r in rows)


def cassandra_session(url: str) -> contextlib.AbstractContextManager[Any]:
    """A fresh cassandra-driver session (one that has not seen the server frozen)."""
    from tests.conftest import cassandra_session as fresh_session

    return fresh_session(url, request_timeout=30)


def cassandra_rows(session: Any, keyspace: str, table: str) -> Counter[int]:
    """``n`` of every row of an amorphous table (one per primary key: bucket, n)."""
    rows = session.execute(f'SELECT n FROM "{keyspace}"."{table}"')
    return Counter(int(r.n) for r in rows)


def assert_exactly_once(
    where: str,
    acked: Collection[int],
    found: Counter[int],
    *,
    may_also: Collection[int] = (),
) -> None:
    """Every acked object is found once; nothing else is, except ``may_also`` (at most once)."""
    lost = sorted(set(acked) - set(found))
    duplicated = {n: c for n, c in found.items() if c > 1}
    unexpected = sorted(set(found) - set(acked) - set(may_also))
    assert not lost, f"{where}: {len(lost)} acked writes lost, e.g. {lost[:10]}"
    assert not duplicated, f"{where}: {len(duplicated)} duplicated, e.g. {list(duplicated)[:10]}"
    assert not unexpected, f"{where}: {len(unexpected)} never acked, e.g. {unexpected[:10]}"


def assert_drops_counted(ledger: Ledger, status: dict[str, Any], intent: str, tier: str) -> int:
    """Every receipt that says ``dropped`` for ``intent`` is in ``status()["dropped"]``."""
    dropped = ledger.acked(intent, ("dropped",))
    counted = status["dropped"].get(f"{tier}:{intent}", 0)
    assert counted == len(dropped), f"{intent}: {len(dropped)} dropped, {counted} counted"
    return len(dropped)


def assert_volatile_landed(
    client: redis.Redis, ledger: Ledger, status: dict[str, Any], intent: str
) -> int:
    """Every value written before its save returned is in Redis, none of a save that raised
    (or never ran it) is, and every drop is counted; returns the number dropped."""
    present = volatile_present(client, intent, (e.n for e in ledger.entries))
    written = ledger.acked(intent, ("done",))
    dropped = ledger.acked(intent, ("dropped",))
    assert written <= present, f"{intent}: {len(written - present)} acked values lost"
    # a dropped write may still land after its deadline; nothing else may
    stray = sorted(present - written - dropped)
    assert not stray, f"{intent}: {len(stray)} values of saves that raised, e.g. {stray[:10]}"
    return assert_drops_counted(ledger, status, intent, "volatile")


def assert_only_outages(ledger: Ledger) -> None:
    """A save may raise BackendUnavailable during a fault, and nothing else."""
    import persistio as pio

    other = [e for e in ledger.errors() if not isinstance(e, pio.BackendUnavailable)]
    assert not other, f"unexpected errors: {other[:5]!r}"
