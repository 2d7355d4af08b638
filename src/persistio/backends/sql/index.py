"""Secondary indexes of acid tables (``Acid(..., index=[...])``) and the lookups they serve.

Each index is a plain B-tree index, ``<table>__<fields>`` (a hash when that name is longer than
PostgreSQL's 63 characters), created by ``setup()`` when missing. ``find()`` reads rows by equal
values of some fields, in primary key order; the index makes it a range scan, not a table scan.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from persistio.backends.base import TableSpec

MAX_NAME = 63  # PostgreSQL's identifier length


def index_name(table: str, fields: tuple[str, ...]) -> str:
    name = f"{table}__{'_'.join(fields)}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return f"{table[:40]}__{digest}"


def create_indexes(conn: sa.Connection, table: sa.Table, spec: TableSpec) -> None:
    """Create each declared index that is missing (never drops one)."""
    for fields in spec.indexes:
        sa.Index(index_name(spec.name, fields), *(table.c[f] for f in fields)).create(
            conn, checkfirst=True
        )


def find_query(table: sa.Table, spec: TableSpec, fields: dict[str, Any], limit: int) -> Any:
    where = [table.c[name] == value for name, value in fields.items()]
    order = [table.c[k] for k in spec.key]
    return sa.select(table).where(*where).order_by(*order).limit(limit)


__all__ = ["create_indexes", "find_query", "index_name"]
