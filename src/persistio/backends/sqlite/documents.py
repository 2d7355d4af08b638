"""Amorphous tier, embedded: a SQLite table per intent with typed partition and order columns.

The object is stored whole as a msgpack blob; ``retain`` becomes an absolute expiry (write time +
retain), as with Cassandra's TTL; writes resolve by write timestamp like ``USING TIMESTAMP``.
Counts live in the same file (``sqlite_counts``), folded in the transaction that writes them.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import msgspec
import sqlalchemy as sa

from persistio.backends.base import (
    NO_FOLDS,
    Contribution,
    CountRanges,
    CountSpec,
    CountValues,
    Document,
    Op,
    TableSpec,
    refuse,
)
from persistio.backends.sql.acid import (
    SQLTables,
    evolve,
    keyed_selects,
    latest_per_key,
    make_engine,
)
from persistio.backends.sql.errors import mapped_errors
from persistio.backends.sql.types import WRITE_ID, WRITE_TS
from persistio.backends.sqlite.counts import SQLiteCounts

BLOB = "_pio_object"
EXPIRES = "_pio_expires_at"
_EXTRA = (
    sa.Column(BLOB, sa.LargeBinary, nullable=False),
    sa.Column(EXPIRES, sa.Double, nullable=True),
)


_KIND_TYPES: dict[str, type] = {
    "int": int,
    "str": str,
    "float": float,
    "bool": bool,
    "datetime": datetime,
    "date": date,
    "uuid": UUID,
    "decimal": Decimal,
    "bytes": bytes,
}


def order_cursor(values: tuple[Any, ...]) -> str:
    """A keyset cursor: the last row's order values, msgpack in URL-safe base64."""
    return base64.urlsafe_b64encode(msgspec.msgpack.encode(values)).decode()


def order_values(cursor: str, kinds: Sequence[str]) -> list[Any]:
    """The order values of ``order_cursor``, typed by their columns' kinds."""
    raw = msgspec.msgpack.decode(base64.urlsafe_b64decode(cursor))
    if not isinstance(raw, list) or len(raw) != len(kinds):
        raise ValueError("not a cursor of this table")
    return [
        msgspec.convert(v, _KIND_TYPES[k], strict=False) for v, k in zip(raw, kinds, strict=True)
    ]


class SQLiteDocuments:
    """Query-shaped tables in one SQLite file."""

    tiers: ClassVar[frozenset[str]] = frozenset({"amorphous"})
    bounded: ClassVar[bool] = True  # a local file: SQLite's busy timeout bounds a wait
    concurrent: ClassVar[bool] = False

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._tables = SQLTables()
        self._counts = SQLiteCounts()
        self._setup_lock = threading.Lock()

    def _table(self, spec: TableSpec) -> sa.Table:
        return self._tables.table(spec, _EXTRA)

    def after_fork(self) -> None:
        self.engine.dispose(close=False)
        self._setup_lock = threading.Lock()

    def setup(self, tables: Sequence[TableSpec]) -> None:
        # one at a time: two threads checking "does it exist?" at once would both create it
        with self._setup_lock, mapped_errors("amorphous", "setup"), self.engine.begin() as conn:
            for spec in tables:
                table = self._table(spec)
                table.create(conn, checkfirst=True)
                evolve(conn, table, {c.name: c.kind for c in spec.columns})

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]:
        """Every row in one transaction, each at its write timestamp (the newest wins)."""
        by_table: dict[TableSpec, list[dict[str, Any]]] = {}
        counted: list[Contribution] = []
        for op in ops:
            if type(op) is not Document:
                if type(op) is Contribution:
                    counted.append(op)
                    continue
                raise refuse(self, op)
            spec = op.table
            expires = None if spec.ttl_seconds is None else op.ts / 1e6 + spec.ttl_seconds
            names = (*spec.key, *spec.order)
            by_table.setdefault(spec, []).append(
                {
                    **dict(zip(names, op.key, strict=True)),
                    BLOB: op.payload,
                    WRITE_TS: op.ts,
                    WRITE_ID: op.wid,
                    EXPIRES: expires,
                }
            )
        where = ", ".join(sorted({*(t.name for t in by_table), *(c.table.name for c in counted)}))
        with mapped_errors("amorphous", f"write to {where}"), self.engine.begin() as conn:
            if counted:
                self._counts.write(conn, counted)
            for spec, values in by_table.items():
                t = self._table(spec)
                conn.execute(self._tables.upsert(conn, t), latest_per_key(t, values))
        return [True] * len(ops)

    # -- counts ---------------------------------------------------------------------------------

    def setup_counts(self, counts: Sequence[CountSpec]) -> None:
        with self._setup_lock, mapped_errors("amorphous", "setup"), self.engine.begin() as conn:
            self._counts.setup(conn, counts)

    def read_counts(
        self, count: CountSpec, key: tuple[Any, ...], ranges: CountRanges
    ) -> CountValues:
        """One query per range: the rollup rows of its buckets (folded when written)."""
        return self._counts.read(self.engine, count, key, ranges)

    def count_stats(self) -> dict[str, Any]:
        return dict(NO_FOLDS)

    def get(self, table: TableSpec, key: tuple[Any, ...]) -> bytes | None:
        stamped = self.get_stamped(table, key)
        return None if stamped is None else stamped[0]

    def get_stamped(self, table: TableSpec, key: tuple[Any, ...]) -> tuple[bytes, int] | None:
        t = self._table(table)
        names = (*table.key, *table.order)
        where = [t.c[n] == v for n, v in zip(names, key, strict=True)]
        live = sa.or_(t.c[EXPIRES].is_(None), t.c[EXPIRES] > time.time())
        query = sa.select(t.c[BLOB], t.c[WRITE_TS]).where(*where, live).limit(1)
        with mapped_errors("amorphous", f"read from {t.name}"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (row[0], int(row[1]))

    def get_many_stamped(
        self, table: TableSpec, keys: Sequence[tuple[Any, ...]]
    ) -> list[tuple[bytes, int] | None]:
        t = self._table(table)
        names = (*table.key, *table.order)
        live = sa.or_(t.c[EXPIRES].is_(None), t.c[EXPIRES] > time.time())
        with mapped_errors("amorphous", f"read from {t.name}"), self.engine.connect() as conn:
            rows = [
                row
                for query in keyed_selects(t, names, keys, live)
                for row in conn.execute(query).mappings()
            ]
        found = {tuple(r[n] for n in names): (r[BLOB], int(r[WRITE_TS])) for r in rows}
        return [found.get(tuple(key)) for key in keys]

    def query(
        self,
        table: TableSpec,
        partition: tuple[Any, ...],
        limit: int,
        *,
        since: Any = None,
        until: Any = None,
        oldest_first: bool = False,
    ) -> list[bytes]:
        t = self._table(table)
        where = [t.c[n] == v for n, v in zip(table.key, partition, strict=True)]
        if table.order:
            first = t.c[table.order[0]]
            if since is not None:
                where.append(first >= since)
            if until is not None:
                where.append(first < until)
        order = [t.c[n].asc() if oldest_first else t.c[n].desc() for n in table.order]
        return self._select(t, where, limit, order)

    def page(
        self, table: TableSpec, partition: tuple[Any, ...], size: int, after: str | None
    ) -> tuple[list[bytes], str | None]:
        """One page of a partition, newest first (keyset: the rows ordered after the last
        one's order values), and the cursor that resumes after it; None at the end."""
        t = self._table(table)
        where = [t.c[n] == v for n, v in zip(table.key, partition, strict=True)]
        kinds = {c.name: c.kind for c in table.columns}
        columns = [t.c[n] for n in table.order]
        if after is not None:
            last = order_values(after, [kinds[n] for n in table.order])
            bound = [sa.literal(v, c.type) for v, c in zip(last, columns, strict=True)]
            where.append(sa.tuple_(*columns) < sa.tuple_(*bound))
        live = sa.or_(t.c[EXPIRES].is_(None), t.c[EXPIRES] > time.time())
        query = (
            sa.select(t.c[BLOB], *columns)
            .where(*where, live)
            .order_by(*(c.desc() for c in columns))
            .limit(size + 1)  # one more tells whether another page follows
        )
        with mapped_errors("amorphous", f"read from {t.name}"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if len(rows) <= size or not columns:
            return [r[0] for r in rows[:size]], None
        return [r[0] for r in rows[:size]], order_cursor(tuple(rows[size - 1][1:]))

    def _select(
        self, t: sa.Table, where: list[Any], limit: int, order: Sequence[Any] = ()
    ) -> list[bytes]:
        live = sa.or_(t.c[EXPIRES].is_(None), t.c[EXPIRES] > time.time())
        query = sa.select(t.c[BLOB]).where(*where, live).order_by(*order).limit(limit)
        with mapped_errors("amorphous", f"read from {t.name}"), self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def ping(self) -> None:
        with mapped_errors("amorphous", "ping"), self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()
