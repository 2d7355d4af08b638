"""The PostgreSQL half of ``SQLAcid``: the one-round-trip write path and its error mapping.

Imported only when the acid URL is PostgreSQL (it needs psycopg). See ``pg_writes`` for the
statements and why a late write is refused by the server itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus

from ..errors import BackendUnavailable, PersistioError, ValidationError
from .base import TableSpec, Upsert
from .pg_writes import LATE, Statements, clock_offset, newest_per_key, parameters, quoted
from .sql_types import WRITE_TS
from .watchdog import Watchdog

OFFSET = "persistio_clock_offset"  # in each pooled connection's info: server clock - ours
TIER = "acid"


class WritePool:
    """The write path's own connections (autocommit), separate from SQLAlchemy's pool.

    A write takes an idle connection on the calling thread; when none is idle, a new one is
    opened on a connector thread and waited for only until the caller's deadline (a paused
    server would otherwise hold the caller for libpq's connect_timeout, which counts whole
    seconds). A connection that failed is closed, never returned: nothing reconnects lazily on
    a caller's thread.
    """

    def __init__(self, conninfo: str, size: int, connect_timeout: float) -> None:
        self._conninfo = conninfo
        self._connect_timeout = max(2, int(connect_timeout))
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)  # connections open or being opened
        self._size = size
        self._connector = ThreadPoolExecutor(2, thread_name_prefix="persistio-acid-connect")

    def take(self, deadline: float) -> tuple[psycopg.Connection[Any], float]:
        """(connection, its server clock offset)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise BackendUnavailable(f"{TIER} backend: every connection is busy", tier=TIER)
        future = self._connector.submit(self._open)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            future.add_done_callback(self._adopt)  # opened late: kept for the next caller
            raise BackendUnavailable(
                f"{TIER} backend: no connection within the deadline", tier=TIER
            ) from None
        except BaseException:
            self._slots.release()
            raise

    def _open(self) -> tuple[psycopg.Connection[Any], float]:
        conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=self._connect_timeout,
            # a dead peer is noticed by the kernel, not only by a write that never returns
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        return conn, clock_offset(conn)

    def _adopt(self, future: Future[tuple[psycopg.Connection[Any], float]]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._slots.release()
            return
        self.give(future.result())

    def give(self, held: tuple[psycopg.Connection[Any], float]) -> None:
        conn = held[0]
        healthy = not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if healthy and len(self._idle) < self._size:
                self._idle.append(held)
                return
        self.discard(conn)

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()
        self._slots.release()

    def close(self) -> None:
        self._connector.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


class PostgresWrites:
    """Guarded upserts of one batch: one transaction, one round trip."""

    def __init__(self, url: sa.URL, pool_size: int, connect_timeout: float) -> None:
        self._pool = WritePool(conninfo_of(url), 2 * pool_size, connect_timeout)
        self._statements = Statements()
        self.watchdog = Watchdog("persistio-acid-watchdog")

    def close(self) -> None:
        self._pool.close()

    def write(self, ops: Sequence[Upsert], deadline: float) -> list[bool]:
        names = ", ".join(sorted({op.table.name for op in ops}))
        with mapped(f"upsert into {names}"):
            try:
                return self._attempt(ops, deadline)
            except psycopg.OperationalError:
                # a pooled connection that died with a restarted server: once more on a fresh
                # one, if there is still time (every write here is an idempotent upsert)
                if time.monotonic() >= deadline:
                    raise
                return self._attempt(ops, deadline)

    def _attempt(self, ops: Sequence[Upsert], deadline: float) -> list[bool]:
        if time.monotonic() >= deadline:
            raise BackendUnavailable(
                f"{TIER} backend: the deadline passed before sending", tier=TIER
            )
        groups = _by_table(ops)
        held = self._pool.take(deadline)
        dbapi, offset = held
        try:
            with self.watchdog.guard(dbapi.pgconn.socket, deadline):
                server_deadline = time.time() + (deadline - time.monotonic()) + offset
                written = self._execute(dbapi, ops, groups, server_deadline)
        except psycopg.Error as exc:
            if _recovered(dbapi, exc):
                self._pool.give(held)
            else:
                self._pool.discard(dbapi)
            raise
        except BaseException:
            self._pool.discard(dbapi)
            raise
        self._pool.give(held)
        return written

    def _execute(
        self,
        dbapi: psycopg.Connection[Any],
        ops: Sequence[Upsert],
        groups: dict[TableSpec, list[int]],
        server_deadline: float,
    ) -> list[bool]:
        params: list[Any] = []
        tables = []
        shape = []
        for spec, indexes in groups.items():
            rows, survived = newest_per_key([ops[i] for i in indexes])
            params += parameters(spec, rows, server_deadline)
            tables.append((spec, indexes, rows, survived))
            shape.append((spec, len(rows) == 1))
        sql = self._statements.upserts(tuple(shape), guarded=True)
        cur = dbapi.execute(sql, params, prepare=True)
        if len(shape) == 1:
            counts = [cur.rowcount]
        else:
            row = cur.fetchone()
            counts = [int(n) for n in row] if row is not None else []
        written = [True] * len(ops)
        for count, (spec, indexes, rows, survived) in zip(counts, tables, strict=True):
            took = survived
            if count != len(rows) or not all(survived):
                took = _ours(dbapi, spec, [ops[i] for i in indexes])
            for i, t in zip(indexes, took, strict=True):
                written[i] = t
        return written

    def upsert_in(self, conn: sa.Connection, ops: Sequence[Upsert]) -> None:
        """Rows of one table inside the caller's transaction (``store.transaction()``)."""
        dbapi: Any = conn.connection.driver_connection
        spec = ops[0].table
        rows, _ = newest_per_key(ops)
        sql = self._statements.upsert(spec, guarded=False, single=len(rows) == 1)
        with mapped(f"upsert into {spec.name}"):
            dbapi.cursor().execute(sql, parameters(spec, rows, None), prepare=True)


def conninfo_of(url: sa.URL) -> str:
    """libpq's key=value form of a SQLAlchemy URL, query options included as they are.

    (A URL rendered back to text would write a space in ``?options=-c x=y`` as ``+``, which
    libpq does not read as a space.)"""
    query = {k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()}
    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "dbname": url.database,
        "user": url.username,
        "password": url.password,
    }
    return make_conninfo(**{k: v for k, v in params.items() if v is not None}, **query)


def _by_table(ops: Sequence[Upsert]) -> dict[TableSpec, list[int]]:
    groups: dict[TableSpec, list[int]] = {}
    for i, op in enumerate(ops):
        groups.setdefault(op.table, []).append(i)
    return groups


def _ours(dbapi: psycopg.Connection[Any], spec: TableSpec, ops: Sequence[Upsert]) -> list[bool]:
    """Which rows hold our write: the others lost to a newer stored value (rare: read then)."""
    keys = ", ".join(map(quoted, spec.key))
    where = " OR ".join(
        "(" + " AND ".join(f"{quoted(k)} = %s" for k in spec.key) + ")" for _ in ops
    )
    values = [op.values[k] for op in ops for k in spec.key]
    sql = f"SELECT {keys}, {quoted(WRITE_TS)} FROM {quoted(spec.name)} WHERE {where}"
    stored = {tuple(r[:-1]): r[-1] for r in dbapi.execute(sql.encode(), values)}
    return [stored.get(tuple(op.values[k] for k in spec.key)) == op.ts for op in ops]


def _recovered(dbapi: psycopg.Connection[Any], exc: psycopg.Error) -> bool:
    """After a failed call: may the connection be used again? (An aborted transaction is rolled
    back; a connection-level failure never is: the connection is dropped.)"""
    if isinstance(exc, psycopg.OperationalError) or dbapi.broken or dbapi.closed:
        return False
    if dbapi.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        try:
            dbapi.execute("ROLLBACK")
        except psycopg.Error:
            return False
    return True


@contextmanager
def mapped(where: str) -> Iterator[None]:
    """psycopg errors into persistio's tree (the statement's parameters are never shown)."""
    try:
        yield
    except psycopg.errors.DivisionByZero as exc:
        if exc.sqlstate != LATE:
            raise
        raise BackendUnavailable(
            f"{TIER} backend {where}: the server ran the write after the deadline; rolled back",
            tier=TIER,
        ) from exc
    except (psycopg.OperationalError, psycopg.InterfaceError, sa.exc.TimeoutError) as exc:
        raise BackendUnavailable(f"{TIER} backend {where}: {_short(exc)}", tier=TIER) from exc
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise ValidationError(f"{TIER} backend {where}: {_short(exc)}") from exc
    except psycopg.Error as exc:
        raise PersistioError(f"{TIER} backend {where}: {_short(exc)}") from exc
    except sa.exc.OperationalError as exc:  # the pool could not connect
        raise BackendUnavailable(f"{TIER} backend {where}: {_short(exc)}", tier=TIER) from exc


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
