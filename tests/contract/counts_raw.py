"""What a count's table really holds, read with the engine's own client (sqlite3, CQL)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

ROLLUP, PENDING, COUNTED = 0, 1, 2


@dataclass(frozen=True)
class Held:
    rollups: dict[tuple[int, int], int | float]  # (bucket seconds, bucket start µs) -> count
    stages: Counter[int]  # rows per stage


def held(request: pytest.FixtureRequest, kind: str, tmp_path: Path, name: str, page: str) -> Held:
    """The rows of count table ``name`` whose ``page`` key is ``page``."""
    rows: list[tuple[int, int, int, int, float]]
    if kind == "embedded":
        with sqlite3.connect(tmp_path / "amorphous.db") as conn:
            rows = conn.execute(
                f'SELECT granularity, bucket, stage, n, f FROM "{name}" WHERE page = ?', (page,)
            ).fetchall()
    else:
        session = request.getfixturevalue("raw_cassandra")
        keyspace = request.getfixturevalue("cassandra_keyspace")
        found = session.execute(
            f'SELECT granularity, bucket, stage, n, f FROM {keyspace}."{name}" '
            "WHERE page = %s ALLOW FILTERING",
            (page,),
        )
        rows = [tuple(r) for r in found]
    rollups = {(g, b): (n if not f else n + f) for g, b, stage, n, f in rows if stage == ROLLUP}
    return Held(rollups, Counter(r[2] for r in rows))
