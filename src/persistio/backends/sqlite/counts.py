"""Counts, embedded: one SQLite table per count, folded when written (SQLite has one writer).

A count's table holds two kinds of rows per bucket (``stage``): the *rollup* (stage 0, one per
key, bucket size and bucket: the count) and the *contributions* it holds (stage 2, one per
contribution name: the weight and write timestamp of the version that is counted). Each
contribution is folded in the transaction that writes it: its version replaces the held one
only when newer (write timestamp, then write id), and the rollup moves by the difference, so a
replayed or duplicated write changes nothing. The stage column comes before the bucket in the
primary key, so a read walks the rollup rows of its range only: its cost is the number of
buckets, not of events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from persistio.backends.base import Contribution, CountRanges, CountSpec, CountValues, bucket_of
from persistio.backends.sql.errors import mapped_errors
from persistio.backends.sql.types import sa_type

ROLLUP, COUNTED = 0, 2
IN_CHUNK = 400  # held contributions looked up per SELECT (SQLite binds at most 32766 values)

Cell = tuple[Any, ...]  # key values, granularity, bucket: one rollup row
Version = tuple[int, str, int, float, float | None]  # ts, write id, n, f, expires


class SQLiteCounts:
    """The count tables of one SQLite file; writes run inside the caller's transaction."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, tuple[CountSpec, sa.Table]] = {}

    def table(self, spec: CountSpec) -> sa.Table:
        with self._lock:
            cached = self._tables.get(spec.name)
            if cached is not None and cached[0] == spec:
                return cached[1]
            keys = [
                sa.Column(c.name, sa_type(c.kind), primary_key=True, autoincrement=False)
                for c in spec.key
            ]
            table = sa.Table(
                spec.name,
                sa.MetaData(),
                *keys,
                sa.Column("granularity", sa.BigInteger, primary_key=True, autoincrement=False),
                sa.Column("stage", sa.SmallInteger, primary_key=True, autoincrement=False),
                sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),
                sa.Column("contribution", sa.Text, primary_key=True),
                sa.Column("ts", sa.BigInteger, nullable=False),
                sa.Column("wid", sa.Text, nullable=False),
                sa.Column("n", sa.BigInteger, nullable=False),
                sa.Column("f", sa.Double, nullable=False),
                sa.Column("expires", sa.Double, nullable=True),
            )
            self._tables[spec.name] = (spec, table)
            return table

    def setup(self, conn: sa.Connection, specs: Sequence[CountSpec]) -> None:
        for spec in specs:
            self.table(spec).create(conn, checkfirst=True)

    def write(self, conn: sa.Connection, ops: Sequence[Contribution]) -> None:
        """Fold ``ops`` into their rollups; ``conn`` is in a transaction the caller commits."""
        newest: dict[CountSpec, dict[tuple[Cell, str], Version]] = {}
        now = time.time()
        for op in ops:
            spec = op.table
            versions = newest.setdefault(spec, {})
            for index, granularity in enumerate(spec.granularities):
                bucket = bucket_of(op.at_us, granularity)
                expires = spec.expires_at(index, bucket)
                if expires is not None and expires <= now:
                    continue  # a late replay of an expired bucket never resurrects it
                slot = ((*op.key, granularity, bucket), op.contribution)
                held = versions.get(slot)
                if held is None or held[:2] < (op.ts, op.wid):
                    versions[slot] = (op.ts, op.wid, op.n, op.f, expires)
        for spec, versions in newest.items():
            if versions:
                self._fold(conn, spec, versions)

    def _fold(
        self, conn: sa.Connection, spec: CountSpec, versions: dict[tuple[Cell, str], Version]
    ) -> None:
        t = self.table(spec)
        cell_names = [*(c.name for c in spec.key), "granularity", "bucket"]
        cells: dict[Cell, float | None] = {cell: v[4] for (cell, _), v in versions.items()}
        # the first statement writes, so the transaction holds SQLite's write lock from here:
        # nothing can change a held contribution between the lookup below and the fold
        conn.execute(
            sa.insert(t).prefix_with("OR IGNORE"),
            [
                {**dict(zip(cell_names, cell, strict=True)), **_rollup(), "expires": expires}
                for cell, expires in cells.items()
            ],
        )
        held = self._held(conn, t, cell_names, list(versions))
        rows: list[dict[str, Any]] = []
        deltas: dict[Cell, tuple[int, float]] = {}
        for (cell, name), (ts, wid, n, f, expires) in versions.items():
            old = held.get((cell, name))
            if old is not None and old[:2] >= (ts, wid):
                continue  # this version, or a newer one, is already counted
            old_n, old_f = (0, 0.0) if old is None else (old[2], old[3])
            dn, df = deltas.get(cell, (0, 0.0))
            deltas[cell] = (dn + n - old_n, df + f - old_f)
            rows.append(
                {
                    **dict(zip(cell_names, cell, strict=True)),
                    "stage": COUNTED,
                    "contribution": name,
                    "ts": ts,
                    "wid": wid,
                    "n": n,
                    "f": f,
                    "expires": expires,
                }
            )
        if not rows:
            return
        conn.execute(sa.insert(t).prefix_with("OR REPLACE"), rows)
        moved = [
            {**{f"c_{k}": v for k, v in zip(cell_names, cell, strict=True)}, "dn": n, "df": f}
            for cell, (n, f) in deltas.items()
            if n or f
        ]
        if moved:
            where = [t.c[name] == sa.bindparam(f"c_{name}") for name in cell_names]
            bump = (
                sa.update(t)
                .where(*where, t.c.stage == ROLLUP, t.c.contribution == "")
                .values(n=t.c.n + sa.bindparam("dn"), f=t.c.f + sa.bindparam("df"))
            )
            conn.execute(bump, moved)

    def _held(
        self,
        conn: sa.Connection,
        t: sa.Table,
        cell_names: list[str],
        slots: list[tuple[Cell, str]],
    ) -> dict[tuple[Cell, str], tuple[int, str, int, float]]:
        """The counted versions of ``slots``: (ts, write id, n, f) by (cell, contribution).

        One query per cell, on the primary key's prefix (a row-value IN over several columns
        would make SQLite scan the table)."""
        names: dict[Cell, list[str]] = {}
        for cell, name in slots:
            names.setdefault(cell, []).append(name)
        found: dict[tuple[Cell, str], tuple[int, str, int, float]] = {}
        for cell, wanted in names.items():
            where = [t.c[c] == v for c, v in zip(cell_names, cell, strict=True)]
            for start in range(0, len(wanted), IN_CHUNK):
                query = sa.select(t.c.contribution, t.c.ts, t.c.wid, t.c.n, t.c.f).where(
                    *where,
                    t.c.stage == COUNTED,
                    t.c.contribution.in_(wanted[start : start + IN_CHUNK]),
                )
                for name, ts, wid, n, f in conn.execute(query):
                    found[(cell, name)] = (ts, wid, n, f)
        return found

    def read(
        self, engine: sa.Engine, spec: CountSpec, key: tuple[Any, ...], ranges: CountRanges
    ) -> CountValues:
        t = self.table(spec)
        match = [t.c[c.name] == v for c, v in zip(spec.key, key, strict=True)]
        live = sa.or_(t.c.expires.is_(None), t.c.expires > time.time())
        out: CountValues = []
        with mapped_errors("amorphous", f"read from {spec.name}"), engine.connect() as conn:
            for granularity, first, stop in ranges:
                query = sa.select(t.c.bucket, t.c.n, t.c.f).where(
                    *match,
                    t.c.granularity == granularity,
                    t.c.stage == ROLLUP,
                    t.c.bucket >= first,
                    t.c.bucket < stop,
                    live,
                )
                out.append({row[0]: (row[1], row[2]) for row in conn.execute(query)})
        return out


def _rollup() -> dict[str, Any]:
    return {"stage": ROLLUP, "contribution": "", "ts": 0, "wid": "", "n": 0, "f": 0.0}
