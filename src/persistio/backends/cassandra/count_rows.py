"""The rows of a Cassandra count partition, and the arithmetic of folding them (no I/O here).

Rows come from ``SELECT pos, contribution, ts, n, f, version, folded``: the rollup is the row at
``MAX_POS``; the others are pending (stage 1) or counted (stage 2, at ``MIN_POS``) contributions.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple

from cassandra.util import max_uuid_from_time, min_uuid_from_time

from persistio.backends.base import CountSpec
from persistio.backends.cassandra.folder import Cell

PENDING, COUNTED = 1, 2
MIN_POS = min_uuid_from_time(0)
MAX_POS = max_uuid_from_time(100_000_000_000)  # year 5138: after every real position

ROW_COLUMNS = "pos, contribution, ts, wid, n, f, version, folded"


class Row(NamedTuple):
    """One row of a count partition, as ``SELECT ROW_COLUMNS`` returns it."""

    pos: Any  # a timeuuid: MAX_POS for the rollup, MIN_POS for counted versions
    name: str  # the contribution's name ('' for the rollup)
    ts: int
    wid: str  # with ts, the version: of one timestamp, the larger write id wins
    n: int
    f: float
    version: int | None  # the rollup's
    folded: Any  # the rollup's watermark (a timeuuid), or None before its first fold

    @property
    def stamp(self) -> tuple[int, str]:
        return self.ts, self.wid


def ttl_of(spec: CountSpec, index: int, bucket: int, now: float) -> int | None:
    """Seconds left before the bucket is past retain: 0 = forever, None = already past."""
    expires = spec.expires_at(index, bucket)
    if expires is None:
        return 0
    left = expires - now
    return math.ceil(left) if left > 0 else None


def cell_values(cell: Cell) -> tuple[Any, ...]:
    return (*cell[1], cell[2], cell[3])


def held_keys(names: Iterable[str]) -> list[tuple[int, uuid.UUID, str]]:
    """Clustering prefixes of the rollup and of the counted versions of ``names``."""
    return [(PENDING, MAX_POS, ""), *((COUNTED, MIN_POS, name) for name in names)]


def split(rows: Iterable[Any]) -> tuple[Row | None, list[Row]]:
    """(the rollup row, the other rows) of one partition's answer."""
    rollup: Row | None = None
    others: list[Row] = []
    for r in rows:
        row = Row(r[0], r[1], r[2], r[3] or "", r[4] or 0, r[5] or 0.0, r[6], r[7])
        if row.pos == MAX_POS:
            rollup = row
        else:
            others.append(row)
    return rollup, others


def version_of(rollup: Row | None) -> int | None:
    return None if rollup is None else rollup.version


def watermark(rollup: Row | None) -> Any:
    return MIN_POS if rollup is None or rollup.folded is None else rollup.folded


def n_of(rollup: Row | None) -> int:
    return 0 if rollup is None else rollup.n


def f_of(rollup: Row | None) -> float:
    return 0.0 if rollup is None else rollup.f


def delta(pending: list[Row], held: dict[str, Row]) -> tuple[int, float, dict[str, Row]]:
    """What folding ``pending`` adds, and each contribution's winning version.

    Per contribution only its newest pending version counts, and only if it is newer than the
    version already counted, which it then replaces: a replay (same version) adds nothing.
    """
    newest: dict[str, Row] = {}
    for row in pending:
        seen = newest.get(row.name)
        if seen is None or seen.stamp < row.stamp:
            newest[row.name] = row
    dn, df = 0, 0.0
    winners: dict[str, Row] = {}
    for name, row in newest.items():
        old = held.get(name)
        if old is not None and old.stamp >= row.stamp:
            continue
        dn += row.n - (0 if old is None else old.n)
        df += row.f - (0.0 if old is None else old.f)
        winners[name] = row
    return dn, df, winners
