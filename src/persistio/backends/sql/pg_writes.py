"""PostgreSQL's write path: every row of a batch in one round trip, never committed late.

One ``INSERT ... SELECT * FROM unnest(%b::type[], ...) ON CONFLICT (key) DO UPDATE ... WHERE
stored _pio_ts < new _pio_ts`` per table (prepared, binary arrays: one statement for any number of
rows); several tables as data-modifying CTEs of one statement, which PostgreSQL runs atomically:
a batch is one statement, one transaction and one round trip, whatever tables it touches.

"A save that raised committed nothing" is kept without a second round trip for a client-side
check before COMMIT: the statement itself refuses to write once the save's deadline has passed on
the server's clock (it divides by zero, which aborts the transaction), so a write that reaches a
paused server and runs after the pause fails instead of landing behind the caller's back. The
deadline is translated to the server's clock with the offset measured when the connection was
opened. The calling thread is bounded by the same deadline through the watchdog, which cuts the
connection's socket if the reply has not come by then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from persistio.backends.base import TableSpec, Upsert
from persistio.backends.sql.types import WRITE_ID, WRITE_TS

ARRAY_TYPES = {
    "int": "int8",
    "str": "text",
    "float": "float8",
    "bool": "bool",
    "datetime": "timestamptz",
    "date": "date",
    "uuid": "uuid",
    "decimal": "numeric",
    "bytes": "bytea",
    "json": "jsonb",
}
# SQLSTATE of the deadline guard's division by zero: the write came too late and was rolled back
LATE = "22012"


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# A statement's shape: per table, one row (plain parameters) or many (arrays for unnest).
Shape = tuple[tuple[TableSpec, bool], ...]


class Statements:
    """The upsert statement of each table (and of each set of tables), built once per shape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict[tuple[Shape, bool], str] = {}

    def upsert(self, spec: TableSpec, guarded: bool, single: bool = False) -> str:
        return self.upserts(((spec, single),), guarded)

    def upserts(self, shape: Shape, guarded: bool) -> str:
        """One statement for every (table, single row?) of ``shape``: one row count per table."""
        found = self._built.get((shape, guarded))
        if found is None:
            if len(shape) == 1:
                found = _upsert_sql(*shape[0], guarded)
            else:
                parts = [
                    f"t{i} AS ({_upsert_sql(spec, single, guarded)} RETURNING 1)"
                    for i, (spec, single) in enumerate(shape)
                ]
                counts = ", ".join(f"(SELECT count(*) FROM t{i})" for i in range(len(shape)))
                found = f"WITH {', '.join(parts)} SELECT {counts}"
            with self._lock:
                self._built[(shape, guarded)] = found
        return found


def _upsert_sql(spec: TableSpec, single: bool, guarded: bool) -> str:
    """One row's values are plain parameters: dumping a one-element array per column costs
    several times more client CPU than the value itself."""
    table = quoted(spec.name)
    names = [c.name for c in spec.columns]
    updates = ", ".join(f"{quoted(n)} = excluded.{quoted(n)}" for n in names if n not in spec.key)
    ts, wid = quoted(WRITE_TS), quoted(WRITE_ID)
    stamps = f"{ts} = excluded.{ts}, {wid} = excluded.{wid}"
    updates = f"{updates}, {stamps}" if updates else stamps
    # clock_timestamp() is volatile, so the guard runs per row at execution, never when planning
    guard = " WHERE 1 / (clock_timestamp() <= to_timestamp(%b::float8))::int = 1" if guarded else ""
    if single:
        values = ", ".join(f"%b::{ARRAY_TYPES[c.kind]}" for c in spec.columns)
        rows = f"SELECT {values}, %b::int8, %b::text"
    else:
        arrays = ", ".join(f"%b::{ARRAY_TYPES[c.kind]}[]" for c in spec.columns)
        rows = f"SELECT * FROM unnest({arrays}, %b::int8[], %b::text[])"
    # last write wins; of two equal timestamps, the larger write id (rows from before the write
    # id column hold none, and lose such a tie)
    newer = f"({table}.{ts}, coalesce({table}.{wid}, '')) < (excluded.{ts}, excluded.{wid})"
    return (
        f"INSERT INTO {table} ({', '.join(map(quoted, names))}, {ts}, {wid}) {rows}{guard} "
        f"ON CONFLICT ({', '.join(map(quoted, spec.key))}) DO UPDATE SET {updates} "
        f"WHERE {newer}"
    )


def newest_per_key(ops: Sequence[Upsert]) -> tuple[list[Upsert], list[bool]]:
    """One row per key, the newest (one INSERT may not touch a row twice); which ops survived."""
    spec = ops[0].table
    if len(ops) == 1:
        return list(ops), [True]
    newest: dict[tuple[Any, ...], int] = {}
    for i, op in enumerate(ops):
        key = tuple(op.values[k] for k in spec.key)
        held = newest.get(key)
        if held is None or (ops[held].ts, ops[held].wid) < (op.ts, op.wid):
            newest[key] = i
    kept = sorted(newest.values())
    survived = [False] * len(ops)
    for i in kept:
        survived[i] = True
    return [ops[i] for i in kept], survived


def parameters(spec: TableSpec, ops: Sequence[Upsert], server_deadline: float | None) -> list[Any]:
    """Column arrays in the statement's order, the write timestamps and ids, then the deadline
    if any (for one row: its values, its timestamp and id, the deadline)."""
    params: list[Any] = []
    if len(ops) == 1:
        op = ops[0]
        for column in spec.columns:
            value = op.values[column.name]
            if value is not None and column.kind == "json":
                value = Jsonb(value)
            elif column.kind == "datetime" and _naive(value):
                value = value.replace(tzinfo=UTC)
            params.append(value)
        params += (op.ts, op.wid)
        if server_deadline is not None:
            params.append(server_deadline)
        return params
    for column in spec.columns:
        values = [op.values[column.name] for op in ops]
        if column.kind == "json":
            values = [None if v is None else Jsonb(v) for v in values]
        elif column.kind == "datetime":
            # a naive datetime is taken as UTC, as in every other tier
            values = [v.replace(tzinfo=UTC) if _naive(v) else v for v in values]
        params.append(values)
    params.append([op.ts for op in ops])
    params.append([op.wid for op in ops])
    if server_deadline is not None:
        params.append(server_deadline)
    return params


def _naive(value: Any) -> bool:
    return isinstance(value, datetime) and value.tzinfo is None


def clock_offset(dbapi: Any) -> float:
    """Server clock minus ours (seconds), measured over one round trip."""
    before = time.time()
    row = dbapi.execute("SELECT extract(epoch from clock_timestamp())::float8").fetchone()
    after = time.time()
    return float(row[0]) - (before + after) / 2
