"""Acid tier: PostgreSQL (psycopg 3) or SQLite, through SQLAlchemy 2 Core.

A table per intent, named after it, one typed column per field, the intent's key as primary key,
and a hidden ``_pio_ts`` column. Every write is an upsert that only replaces a row holding an older
write timestamp, so replays and redeliveries can never let an older write win.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .base import AcidRow, TableSpec
from .sql_errors import mapped_errors
from .sql_types import WRITE_TS, sa_type

OUTBOX = "_persistio_outbox"


def make_engine(url: str, *, pool_size: int = 5, connect_timeout: float = 5.0) -> sa.Engine:
    """An engine for a SQLite file or a PostgreSQL server, with timeouts that bound a hang."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # acid: committed means on disk
            cursor.close()

        return engine
    return sa.create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=connect_timeout,
        connect_args={"connect_timeout": max(1, int(connect_timeout))},
    )


class SQLTables:
    """SQLAlchemy ``Table`` objects built from specs (no reflection needed to read or write)."""

    def __init__(self) -> None:
        self.metadata = sa.MetaData()
        self._lock = threading.Lock()
        self._tables: dict[str, sa.Table] = {}
        self._upserts: dict[tuple[str, str], Any] = {}

    def table(self, spec: TableSpec, extra: Sequence[sa.Column[Any]] = ()) -> sa.Table:
        with self._lock:
            found = self._tables.get(spec.name)
            if found is None:
                key = (*spec.key, *spec.order)
                columns = [
                    sa.Column(
                        c.name,
                        sa_type(c.kind),
                        primary_key=c.name in key,
                        nullable=c.nullable and c.name not in key,
                    )
                    for c in spec.columns
                ]
                extras = [sa.Column(c.name, c.type, nullable=c.nullable) for c in extra]
                found = sa.Table(
                    spec.name,
                    self.metadata,
                    *columns,
                    *extras,
                    sa.Column(WRITE_TS, sa.BigInteger, nullable=False),
                )
                self._tables[spec.name] = found
            return found


    def upsert(self, conn: sa.Connection, table: sa.Table) -> Any:
        """The table's upsert statement, built once per dialect (building it is not cheap)."""
        slot = (table.name, conn.dialect.name)
        stmt = self._upserts.get(slot)
        if stmt is None:
            stmt = self._upserts[slot] = upsert_statement(conn, table)
        return stmt


def add_missing_columns(conn: sa.Connection, table: sa.Table) -> None:
    """``setup()`` evolves tables: a field added to a model becomes a new nullable column."""
    existing = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    preparer = conn.dialect.identifier_preparer
    for column in table.columns:
        if column.name not in existing:
            ddl = column.type.compile(dialect=conn.dialect)
            conn.execute(
                sa.text(
                    f"ALTER TABLE {preparer.quote(table.name)} "
                    f"ADD COLUMN {preparer.quote(column.name)} {ddl}"
                )
            )


def upsert_statement(conn: sa.Connection, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE stored _pio_ts < new _pio_ts."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    key = [c.name for c in table.primary_key.columns]
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key}
    return stmt.on_conflict_do_update(
        index_elements=key,
        set_=updates,
        where=table.c[WRITE_TS] < stmt.excluded[WRITE_TS],
    )


def latest_per_key(table: sa.Table, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key, the newest: one INSERT may not touch the same row twice."""
    key = [c.name for c in table.primary_key.columns]
    newest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[name] for name in key)
        held = newest.get(k)
        if held is None or held[WRITE_TS] < row[WRITE_TS]:
            newest[k] = row
    return list(newest.values())


class SQLAcid:
    """The acid backend over one SQLAlchemy engine."""

    def __init__(self, url: str, *, pool_size: int = 5, connect_timeout: float = 5.0) -> None:
        self.engine = make_engine(url, pool_size=pool_size, connect_timeout=connect_timeout)
        self.url_text = self.engine.url.render_as_string(hide_password=True)
        self._tables = SQLTables()
        self._outbox = sa.Table(
            OUTBOX,
            self._tables.metadata,
            sa.Column("key", sa.Text, primary_key=True),  # write id : intent
            sa.Column("task", sa.LargeBinary, nullable=False),
            sa.Column("created_at", sa.Double, nullable=False),
        )

    def setup(self, tables: Sequence[TableSpec]) -> None:
        with mapped_errors("acid", "setup"), self.engine.begin() as conn:
            self._outbox.create(conn, checkfirst=True)
            for spec in tables:
                table = self._tables.table(spec)
                table.create(conn, checkfirst=True)
                add_missing_columns(conn, table)

    def upsert(self, table: TableSpec, rows: Sequence[AcidRow]) -> None:
        with mapped_errors("acid", f"upsert into {table.name}"), self.engine.begin() as conn:
            self._upsert(conn, table, rows)

    def _upsert(self, conn: sa.Connection, spec: TableSpec, rows: Sequence[AcidRow]) -> None:
        table = self._tables.table(spec)
        values = latest_per_key(table, [{**r.values, WRITE_TS: r.ts} for r in rows])
        conn.execute(self._tables.upsert(conn, table), values)

    def get(self, table: TableSpec, key: tuple[Any, ...]) -> dict[str, Any] | None:
        t = self._tables.table(table)
        where = sa.and_(*(t.c[name] == value for name, value in zip(table.key, key, strict=True)))
        with mapped_errors("acid", f"read from {table.name}"), self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(where)).mappings().first()
        if row is None:
            return None
        return {k: v for k, v in row.items() if k != WRITE_TS}

    @contextmanager
    def transaction(self) -> Iterator[SQLTransaction]:
        with mapped_errors("acid", "transaction"), self.engine.begin() as conn:
            yield SQLTransaction(self, conn)

    def take_outbox(self, limit: int, older_than_seconds: float) -> list[tuple[str, bytes]]:
        """Outbox rows left by a process that committed and then failed to dispatch."""
        box = self._outbox
        query = (
            sa.select(box.c.key, box.c.task)
            .where(box.c.created_at <= time.time() - older_than_seconds)
            .order_by(box.c.created_at)
            .limit(limit)
        )
        with mapped_errors("acid", "outbox read"), self.engine.connect() as conn:
            return [(r.key, r.task) for r in conn.execute(query)]

    def finish_outbox(self, keys: Sequence[str]) -> None:
        with mapped_errors("acid", "outbox delete"), self.engine.begin() as conn:
            conn.execute(sa.delete(self._outbox).where(self._outbox.c.key.in_(list(keys))))

    def add_outbox(self, conn: sa.Connection, items: Sequence[tuple[str, bytes]]) -> None:
        now = time.time()
        rows = [{"key": k, "task": t, "created_at": now} for k, t in items]
        conn.execute(sa.insert(self._outbox), rows)

    def ping(self) -> None:
        with mapped_errors("acid", "ping"), self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


class SQLTransaction:
    """Writes that commit together: acid upserts and the outbox rows of their other intents."""

    def __init__(self, backend: SQLAcid, conn: sa.Connection) -> None:
        self._backend = backend
        self._conn = conn

    def upsert(self, table: TableSpec, rows: Sequence[AcidRow]) -> None:
        self._backend._upsert(self._conn, table, rows)

    def add_outbox(self, items: Sequence[tuple[str, bytes]]) -> None:
        self._backend.add_outbox(self._conn, items)
