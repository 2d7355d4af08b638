"""What a count's table really holds, read with the engine's own client (sqlite3, CQL)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Held:
    rollups: dict[tuple[int, int], int | float]  # (bucket seconds, bucket start µs) -> count
    pending: int  # contributions written and not folded yet (Cassandra)
    rows: int


def held(request: pytest.FixtureRequest, kind: str, tmp_path: Path, name: str, page: str) -> Held:
    """The rows of count table ``name`` whose ``page`` key is ``page``."""
    if kind == "embedded":  # stage 0: the rollup; stage 2: a counted contribution
        with sqlite3.connect(tmp_path / "amorphous.db") as conn:
            found = conn.execute(
                f'SELECT granularity, bucket, stage = 0, 0, n, f FROM "{name}" WHERE page = ?',
                (page,),
            ).fetchall()
    else:  # stage 1: pending rows, then the rollup (pos = the largest timeuuid); 2: counted
        session = request.getfixturevalue("raw_cassandra")
        keyspace = request.getfixturevalue("cassandra_keyspace")
        found = [
            (g, b, stage == 1 and version is not None, stage == 1 and version is None, n, f)
            for g, b, stage, version, n, f in session.execute(
                f'SELECT granularity, bucket, stage, version, n, f FROM {keyspace}."{name}" '
                "WHERE page = %s ALLOW FILTERING",
                (page,),
            )
        ]
    rollups = {(g, b): (n if not f else n + f) for g, b, rollup, _, n, f in found if rollup}
    return Held(rollups, sum(1 for r in found if r[3]), len(found))
