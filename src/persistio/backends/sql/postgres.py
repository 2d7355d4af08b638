"""The PostgreSQL half of ``SQLAcid``: the one-round-trip write path and its error mapping.

Imported only when the acid URL is PostgreSQL (it needs psycopg). See ``pg_writes`` for the
statements and why a late write is refused by the server itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus

from persistio.backends.base import INHERITED, TableSpec, Upsert
from persistio.backends.sql.pg_writes import (
    LATE,
    Statements,
    clock_offset,
    newest_per_key,
    parameters,
    quoted,
)
from persistio.backends.sql.types import WRITE_ID, WRITE_TS
from persistio.backends.watchdog import Watchdog, in_daemon_thread
from persistio.errors import BackendUnavailable, Busy, InDoubt, PersistioError, ValidationError

T = TypeVar("T")

OFFSET = "persistio_clock_offset"  # in each pooled connection's info: server clock - ours
TIER = "acid"


# The deadline of the call running in this thread: a connection SQLAlchemy's pool opens for it
# (through Connector.for_pool) is waited for only until then.
CALL_DEADLINE: ContextVar[float | None] = ContextVar("persistio_pg_deadline", default=None)


SENT = "_persistio_sent"  # set on a driver error raised once the write was on the wire


class Connector:
    """Opens PostgreSQL connections off the calling thread, waited for until a deadline.

    libpq's connect_timeout counts whole seconds (2 at least), and a paused server accepts the
    TCP connection and then never answers: opening on a thread of its own is what keeps every
    caller within its deadline. Each connection gets TCP keepalives (a dead peer is noticed by
    the kernel) and a statement_timeout (a query the client has given up on stops on the server).
    """

    def __init__(self, conninfo: str, connect_timeout: float, request_timeout: float) -> None:
        self._conninfo = conninfo
        self._connect_timeout = max(2, int(connect_timeout))
        self.connect_seconds = connect_timeout
        self._statement_timeout_ms = max(1000, round(request_timeout * 2000))

    def open(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        """Open a connection (blocking: run it on the executor); closed again if its setup fails
        (a connection dropped open would be collected unclosed)."""
        conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=self._connect_timeout,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        try:
            conn.execute(f"SET statement_timeout = {self._statement_timeout_ms}")
            conn.autocommit = autocommit
        except BaseException:
            conn.close()
            raise
        return conn

    def within(
        self, deadline: float, *, autocommit: bool, late: Any = None
    ) -> psycopg.Connection[Any]:
        """A new connection by ``deadline``; one that comes later goes to ``late`` (or closes)."""
        return self.run_within(
            deadline, lambda: self.open(autocommit=autocommit), late or _close_late
        )

    @staticmethod
    def run_within(
        deadline: float, opener: Callable[[], T], late: Callable[[Future[T]], object]
    ) -> T:
        """``opener()`` on a connect thread of its own, waited for until ``deadline``; what it
        returns later goes to ``late``, which owns it from then on."""
        future = in_daemon_thread(opener, "persistio-connect")
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            future.add_done_callback(late)
            raise psycopg.OperationalError("no connection within the deadline") from None

    def for_pool(self) -> psycopg.Connection[Any]:
        """SQLAlchemy's ``creator``: bounded by the deadline of the call that needs it."""
        deadline = CALL_DEADLINE.get()
        if deadline is None:
            deadline = time.monotonic() + self.connect_seconds
        return self.within(deadline, autocommit=False)

    def close(self) -> None:
        """Nothing to stop: connect threads are daemons that end with their connect."""


def _close_late(future: Future[psycopg.Connection[Any]]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


class WritePool:
    """The write path's own connections (autocommit), separate from SQLAlchemy's pool.

    A write takes an idle connection on the calling thread; when none is idle, a new one is
    opened by the Connector, waited for only until the caller's deadline. A connection that
    failed is closed, never returned: nothing reconnects lazily on a caller's thread.
    """

    def __init__(self, connector: Connector, size: int) -> None:
        self._connector = connector
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)  # connections open or being opened
        self._size = size
        # after close(), a connection that comes back (a write or a connect that outlived the
        # store, e.g. on a server frozen until then) is closed, never kept
        self._closed = False

    def take(self, deadline: float) -> tuple[psycopg.Connection[Any], float]:
        """(connection, its server clock offset)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Busy(f"{TIER} backend: every connection stayed busy", tier=TIER)
        try:
            return self._connector.run_within(deadline, self._open, self._adopt)
        except psycopg.OperationalError as exc:
            if "within the deadline" not in str(exc):
                self._slots.release()  # refused outright; a late one is adopted instead
            raise BackendUnavailable(f"{TIER} backend: {exc}", tier=TIER) from exc
        except BaseException:
            self._slots.release()
            raise

    def _open(self) -> tuple[psycopg.Connection[Any], float]:
        """A connection and its clock offset, both on the connect thread: a server that froze
        right after accepting holds that thread, never the caller past its deadline."""
        conn = self._connector.open(autocommit=True)
        try:
            return conn, clock_offset(conn)
        except BaseException:
            conn.close()
            raise

    def _adopt(self, future: Future[tuple[psycopg.Connection[Any], float]]) -> None:
        """A connection opened after its caller gave up: kept for the next caller."""
        if future.cancelled() or future.exception() is not None:
            self._slots.release()
            return
        held = future.result()
        try:
            self.give(held)
        except Exception:
            self.discard(held[0])

    def give(self, held: tuple[psycopg.Connection[Any], float]) -> None:
        conn = held[0]
        healthy = not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if healthy and not self._closed and len(self._idle) < self._size:
                self._idle.append(held)
                return
        self.discard(conn)

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()
        self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def after_fork(self) -> None:
        """In a child: the parent's connections are kept aside, never used nor closed here."""
        INHERITED.extend(self._idle)
        self._idle = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._size)


class PostgresWrites:
    """Guarded upserts of one batch: one transaction, one round trip."""

    def __init__(self, connector: Connector, pool_size: int) -> None:
        self._pool = WritePool(connector, 2 * pool_size)
        self._statements = Statements()
        self.watchdog = Watchdog("persistio-acid-watchdog")

    def close(self) -> None:
        self._pool.close()

    def after_fork(self) -> None:
        self._pool.after_fork()

    def write(self, ops: Sequence[Upsert], deadline: float) -> list[bool]:
        names = ", ".join(sorted({op.table.name for op in ops}))
        where = f"upsert into {names}"
        sent = False
        with mapped(where):
            try:
                try:
                    return self._attempt(ops, deadline)
                except psycopg.OperationalError as exc:
                    sent = bool(getattr(exc, SENT, False))
                    # a pooled connection that died with a restarted server: once more on a
                    # fresh one, if there is still time (every write here is an idempotent upsert)
                    if time.monotonic() >= deadline:
                        raise
                    return self._attempt(ops, deadline)
            except (psycopg.OperationalError, psycopg.InterfaceError, BackendUnavailable) as exc:
                if not (sent or getattr(exc, SENT, False)):
                    raise
                raise InDoubt(
                    f"{TIER} backend {where}: sent, but no answer came (it may have committed): "
                    f"{_short(exc)}",
                    tier=TIER,
                ) from exc

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
                try:
                    written = self._execute(dbapi, ops, groups, server_deadline)
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    setattr(exc, SENT, True)  # the connection failed with the write on it
                    raise
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
    stamps = f"{quoted(WRITE_TS)}, {quoted(WRITE_ID)}"
    sql = f"SELECT {keys}, {stamps} FROM {quoted(spec.name)} WHERE {where}"
    stored = {tuple(r[:-2]): (r[-2], r[-1] or "") for r in dbapi.execute(sql.encode(), values)}
    return [stored.get(tuple(op.values[k] for k in spec.key)) == (op.ts, op.wid) for op in ops]


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
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
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
