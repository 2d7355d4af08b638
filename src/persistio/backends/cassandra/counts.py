"""Counts on Cassandra: contributions are plain inserts; a folder moves them into the rollup.

One table per count, one partition per (key, bucket size, bucket); clustering ``stage, pos,
contribution, ts``:

- ``(1, pos, name, ts)``: a *pending* contribution, as a save wrote it; ``pos`` is ``now()``,
  a timeuuid stamped by the coordinator, so pending rows sort by arrival;
- ``(1, MAX, '', 0)``: the *rollup*, last of stage 1: the folded count (``n``, ``f``), its
  ``version`` and ``folded``, the position up to which pending rows are folded (the watermark);
- ``(2, MIN, name, ts)``: a *counted* contribution: the version of it the rollup holds.

A save only inserts its pending row (a replay inserts another one: harmless, see below). A fold
reads the rollup and the oldest pending rows above the watermark that are at least
``FOLD_AFTER`` old by the coordinator's clock, looks up their counted versions, and applies in ONE
conditional batch on that partition: the rollup moved by the difference, ``version + 1`` and the
new watermark ``IF version = <read>``, the new counted versions, and a range deletion of the
pending rows folded. A single-partition batch is applied atomically and in isolation; the
condition fails if another fold (thread or process) got there first. A contribution whose
version is already counted (a replay) moves nothing, so it counts once however often it arrives.

Reads and folds only ever slice *above* the watermark, which Cassandra seeks to directly: the
rows and range tombstones that folds leave below it are never scanned. That is why a fold waits
``FOLD_AFTER``: a pending row must not become visible below the watermark after the fold moved
past it. A write reported done was acknowledged by its replicas within the client's request
timeout of being stamped; one that timed out is retried, as a new row, and should the first
attempt land late below the watermark, it is a duplicate of the retry. So a fold waits longer
than the request timeout plus the clock skew between Cassandra nodes: ``FOLD_AFTER`` or the
request timeout + 5 s, whichever is longer (writers with longer timeouts need a longer wait).

A read takes the buckets' rollups (one query per run of buckets), then per bucket the rollup and
the pending rows above its watermark in one query, and, where there are pending rows, their
counted versions checked against the same rollup version: exact while folds run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

from cassandra import ConsistencyLevel
from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from persistio.backends.base import Contribution, CountRanges, CountSpec, CountValues, bucket_of
from persistio.backends.cassandra.count_rows import (
    MAX_POS,
    MIN_POS,
    PENDING,
    ROW_COLUMNS,
    Row,
    cell_values,
    delta,
    f_of,
    held_keys,
    n_of,
    split,
    ttl_of,
    version_of,
    watermark,
)
from persistio.backends.cassandra.folder import Cell, Folder
from persistio.errors import BackendUnavailable, PersistioError, ValidationError

FOLD_AFTER = 10  # seconds, at least: see the module docstring
FOLD_ROWS = 500  # pending rows per conditional batch (one mutation: no batch size limit)
IN_CHUNK = 100  # contributions looked up per query
BUCKETS_PER_QUERY = 64  # rollups of one key and size read by one query (bucket IN ...)
READ_CONCURRENCY = 64
READ_ROUNDS = 5  # a bucket read again while folds keep moving under it
FOLD_ROUNDS = 64  # batches per fold before the partition goes back in the queue

Statement = Literal[
    "pending", "rollups", "open", "aged", "rollup", "held", "cas", "drop", "counted", "uncounted"
]


class CassandraCounts:
    """The counts of one ``CassandraDocuments``: schema, writes, reads and the folder."""

    def __init__(
        self,
        connect: Callable[[], Any],
        mapped: Callable[[str], AbstractContextManager[None]],
        keyspace: str,
        consistency: str,
        local_dc: bool,
        names: Callable[[str], str],
        cql_type: Callable[[str], str],
        micros: Callable[[Any], int],
        request_timeout: float,
    ) -> None:
        self._connect = connect
        self._mapped = mapped
        self._keyspace = keyspace
        self._consistency = consistency
        self._serial = ConsistencyLevel.LOCAL_SERIAL if local_dc else ConsistencyLevel.SERIAL
        self._names = names  # quotes a key field's name
        self._cql_type = cql_type
        self._micros = micros  # a datetime key value as CQL holds it
        self.fold_after = max(FOLD_AFTER, math.ceil(request_timeout) + 5)
        self._lock = threading.Lock()
        self._prepared: dict[tuple[Statement, CountSpec], Any] = {}
        self.folder = Folder(self.fold)

    # -- schema -------------------------------------------------------------------------------

    def setup(self, session: Any, specs: Sequence[CountSpec], timeout: float) -> None:
        for spec in specs:
            result = session.execute(self.ddl(spec), timeout=timeout)
            if not result.response_future.is_schema_agreed:
                raise BackendUnavailable(
                    f"amorphous backend: schema did not agree on {spec.name}", tier="amorphous"
                )
            self.check(session, spec)

    def ddl(self, spec: CountSpec) -> str:
        keys = [f"{self._names(c.name)} {self._cql_type(c.kind)}" for c in spec.key]
        partition = ", ".join([*(self._names(c.name) for c in spec.key), "granularity", "bucket"])
        return (
            f'CREATE TABLE IF NOT EXISTS "{self._keyspace}"."{spec.name}" ('
            f"{''.join(k + ', ' for k in keys)}granularity int, bucket bigint, stage tinyint, "
            "pos timeuuid, contribution text, ts bigint, wid text, n bigint, f double, "
            f"version bigint, folded timeuuid, PRIMARY KEY (({partition}), stage, pos, "
            "contribution, ts))"
        )

    def check(self, session: Any, spec: CountSpec) -> None:
        """Say now, not on the first write, that a table of this name has other columns."""
        rows = session.execute(
            "SELECT column_name, kind, position, type FROM system_schema.columns "
            "WHERE keyspace_name = %s AND table_name = %s",
            (self._keyspace, spec.name),
        )
        found = {(r.column_name, r.kind, r.position, r.type) for r in rows}
        keys = [(c.name, self._cql_type(c.kind)) for c in spec.key]
        parts = [*keys, ("granularity", "int"), ("bucket", "bigint")]
        wanted = {(n, "partition_key", i, t) for i, (n, t) in enumerate(parts)}
        clustering = [("stage", "tinyint"), ("pos", "timeuuid"), ("contribution", "text")]
        clustering.append(("ts", "bigint"))
        wanted |= {(n, "clustering", i, t) for i, (n, t) in enumerate(clustering)}
        regular = [("wid", "text"), ("n", "bigint"), ("f", "double"), ("version", "bigint")]
        wanted |= {(n, "regular", -1, t) for n, t in [*regular, ("folded", "timeuuid")]}
        if found != wanted:
            raise PersistioError(
                f"amorphous table {self._keyspace}.{spec.name} exists with columns "
                f"{sorted(found)}, but the count needs {sorted(wanted)}: drop the table or "
                "rename the count"
            )

    def _statement(self, kind: Statement, spec: CountSpec) -> Any:
        found = self._prepared.get((kind, spec))
        if found is not None:
            return found
        table = f'"{self._keyspace}"."{spec.name}"'
        keys = [self._names(c.name) for c in spec.key]
        cell = " AND ".join(f"{k} = ?" for k in [*keys, "granularity", "bucket"])
        runs = " AND ".join(f"{k} = ?" for k in [*keys, "granularity"]) + " AND bucket IN ?"
        columns = ", ".join([*keys, "granularity", "bucket", "stage", "pos", "contribution", "ts"])
        marks = ", ".join("?" * (len(keys) + 2))
        rows = f"SELECT {ROW_COLUMNS} FROM"
        rollup = f"stage = 1 AND pos = {MAX_POS}"
        cql = {
            "pending": f"INSERT INTO {table} ({columns}, wid, n, f) VALUES ({marks}, 1, now(), ?, "
            "?, ?, ?, ?) USING TTL ?",
            "rollups": f"SELECT bucket, version, folded FROM {table} WHERE {runs} AND {rollup}",
            "open": f"{rows} {table} WHERE {cell} AND stage = 1 AND pos > ?",
            "aged": f"{rows} {table} WHERE {cell} AND stage = 1 AND pos > ? AND pos < "
            f"maxTimeuuid(currentTimestamp() - {self.fold_after}s) LIMIT ?",
            "rollup": f"{rows} {table} WHERE {cell} AND {rollup}",
            "held": f"{rows} {table} WHERE {cell} AND (stage, pos, contribution) IN ?",
            "cas": f"UPDATE {table} USING TTL ? SET n = ?, f = ?, version = ?, folded = ? "
            f"WHERE {cell} AND {rollup} AND contribution = '' AND ts = 0 IF version = ?",
            "drop": f"DELETE FROM {table} WHERE {cell} AND stage = ? AND pos > ? AND pos <= ?",
            "counted": f"INSERT INTO {table} ({columns}, wid, n, f) VALUES ({marks}, 2, "
            f"{MIN_POS}, ?, ?, ?, ?, ?) USING TTL ?",
            "uncounted": f"DELETE FROM {table} WHERE {cell} AND stage = 2 AND pos = {MIN_POS} "
            "AND contribution = ? AND ts = ?",
        }[kind]
        prepared = self._connect().prepare(cql)
        prepared.consistency_level = ConsistencyLevel.name_to_value[
            spec.consistency or self._consistency
        ]
        # a retried insert adds a second pending row of the same version: counted once
        prepared.is_idempotent = kind != "cas"
        with self._lock:
            return self._prepared.setdefault((kind, spec), prepared)

    # -- writes -------------------------------------------------------------------------------

    def key(self, spec: CountSpec, values: Sequence[Any]) -> tuple[Any, ...]:
        """Key values as bound: datetimes as microseconds (see ``cassandra``'s column types)."""
        found = tuple(
            self._micros(v) if c.kind == "datetime" else v
            for c, v in zip(spec.key, values, strict=True)
        )
        if len(found) == 1 and found[0] in ("", b""):
            raise ValidationError(f"{spec.name}: Cassandra cannot store an empty key value")
        return found

    def bind(self, op: Contribution, now: float) -> list[tuple[Any, Cell]]:
        """One pending-row insert per bucket size (none for a bucket already past retain)."""
        spec = op.table
        key = self.key(spec, op.key)
        stmt = self._statement("pending", spec)
        out: list[tuple[Any, Cell]] = []
        for index, size in enumerate(spec.granularities):
            bucket = bucket_of(op.at_us, size)
            ttl = ttl_of(spec, index, bucket, now)
            if ttl is None:
                continue  # a late replay of an expired bucket never resurrects it
            values = (*key, size, bucket, op.contribution, op.ts, op.wid, op.n, op.f, ttl)
            try:
                bound = stmt.bind(values)
            except (TypeError, ValueError, OverflowError) as exc:  # e.g. an int past bigint
                raise ValidationError(f"{spec.name}: a key value does not fit: {exc}") from exc
            out.append((bound, (spec, key, size, bucket)))
        return out

    # -- reads --------------------------------------------------------------------------------

    def read(self, spec: CountSpec, given: tuple[Any, ...], ranges: CountRanges) -> CountValues:
        try:
            key = self.key(spec, given)
        except ValidationError:
            return [{} for _ in ranges]  # a key Cassandra could never have stored
        cells = [
            (spec, key, size, bucket)
            for size, first, stop in ranges
            for bucket in range(first, stop, size * 1_000_000)
        ]
        values: dict[Cell, tuple[int, float]] = {}
        with self._mapped(f"read from {spec.name}"):
            marks = self._watermarks(cells)
            todo = cells
            for _ in range(READ_ROUNDS):
                todo = self._read_round(todo, marks, values)
                if not todo:
                    break
            else:
                raise BackendUnavailable(
                    f"amorphous backend: {spec.name} kept being folded under a read; try again",
                    tier="amorphous",
                )
        return [
            {
                b: values[(spec, key, size, b)]
                for b in range(first, stop, size * 1_000_000)
                if any(values.get((spec, key, size, b), (0, 0.0)))
            }
            for size, first, stop in ranges
        ]

    def _watermarks(self, cells: list[Cell]) -> dict[Cell, Any]:
        """Each cell's watermark, from its rollup: one query per run of up to 64 buckets."""
        runs: dict[tuple[CountSpec, tuple[Any, ...], int], list[int]] = {}
        for spec, key, size, bucket in cells:
            runs.setdefault((spec, key, size), []).append(bucket)
        asks = [
            (run, buckets[i : i + BUCKETS_PER_QUERY])
            for run, buckets in runs.items()
            for i in range(0, len(buckets), BUCKETS_PER_QUERY)
        ]
        answers = self._run(
            [(self._statement("rollups", r[0]), (*r[1], r[2], chunk)) for r, chunk in asks]
        )
        found: dict[Cell, Any] = {}
        for ((spec, key, size), _), rows in zip(asks, answers, strict=True):
            for bucket, _version, folded in rows:
                found[(spec, key, size, bucket)] = folded or MIN_POS
        return found

    def _read_round(
        self, cells: list[Cell], marks: dict[Cell, Any], values: dict[Cell, tuple[int, float]]
    ) -> list[Cell]:
        """Read ``cells`` into ``values``; return those a fold moved under the read."""
        opened = self._run(
            [
                (self._statement("open", c[0]), (*cell_values(c), marks.get(c, MIN_POS)))
                for c in cells
            ]
        )
        unsettled: dict[Cell, tuple[Row | None, list[Row]]] = {}
        for cell, rows in zip(cells, opened, strict=True):
            rollup, pending = split(rows)
            if pending:
                unsettled[cell] = (rollup, pending)
            elif rollup is not None:
                values[cell] = (rollup.n, rollup.f)
        if not unsettled:
            return []
        self.folder.mark(unsettled)  # read repair: what a crash left unfolded gets folded
        asks: list[tuple[Cell, list[str]]] = []
        for cell, (_, pending) in unsettled.items():
            names = sorted({r.name for r in pending})
            asks += [(cell, names[i : i + IN_CHUNK]) for i in range(0, len(names), IN_CHUNK)]
        answers = self._run(
            [(self._statement("held", c[0]), (*cell_values(c), held_keys(n))) for c, n in asks]
        )
        held: dict[Cell, dict[str, Row]] = {}
        moved: set[Cell] = set()
        for (cell, _), rows in zip(asks, answers, strict=True):
            rollup, counted = split(rows)
            if version_of(rollup) != version_of(unsettled[cell][0]):
                moved.add(cell)  # a fold committed between the two queries: read it again
                marks[cell] = watermark(rollup)
            held.setdefault(cell, {}).update((r.name, r) for r in counted)
        for cell, (rollup, pending) in unsettled.items():
            if cell not in moved:
                dn, df, _ = delta(pending, held.get(cell, {}))
                values[cell] = (n_of(rollup) + dn, f_of(rollup) + df)
        return [c for c in cells if c in moved]

    def _run(self, calls: list[tuple[Any, Sequence[Any]]]) -> list[list[Any]]:
        if not calls:
            return []
        session = self._connect()
        results = execute_concurrent(
            session, calls, concurrency=READ_CONCURRENCY, raise_on_first_error=True
        )
        return [[tuple(r) for r in result] for _, result in results]

    # -- folding ------------------------------------------------------------------------------

    def fold(self, cell: Cell) -> float | None:
        """Fold ``cell``'s pending rows old enough into its rollup.

        None when nothing is left; 0 when more is ready now; else the seconds until the rows
        that are left are old enough (``fold_after``)."""
        spec, _, size, bucket = cell
        index = spec.granularities.index(size)
        session = self._connect()
        values = cell_values(cell)
        with self._mapped(f"fold {spec.name}"):
            for _ in range(FOLD_ROUNDS):
                ttl = ttl_of(spec, index, bucket, time.time())
                if ttl is None:
                    return None  # expired: its rows go with their TTL
                rollup, _ = split(session.execute(self._statement("rollup", spec), values))
                mark = watermark(rollup)
                aged = self._statement("aged", spec)
                _, pending = split(session.execute(aged, (*values, mark, FOLD_ROWS)))
                if not pending:
                    left = session.execute(self._statement("open", spec), (*values, mark))
                    return self.fold_after if split(left)[1] else None
                held = self._held(session, cell, sorted({r.name for r in pending}))
                batch = self._fold_batch(cell, ttl, rollup, mark, pending, held)
                if not session.execute(batch).was_applied:
                    self.folder.conflicts += 1  # another fold got there first: read again
                    continue
                self.folder.folded += len(pending)
                if len(pending) < FOLD_ROWS:
                    left = session.execute(
                        self._statement("open", spec), (*values, pending[-1].pos)
                    )
                    return self.fold_after if split(left)[1] else None
        return 0.0

    def _held(self, session: Any, cell: Cell, names: list[str]) -> dict[str, Row]:
        """The counted versions of ``names`` (a fold's condition covers their consistency)."""
        stmt = self._statement("held", cell[0])
        held: dict[str, Row] = {}
        for i in range(0, len(names), IN_CHUNK):
            found = session.execute(stmt, (*cell_values(cell), held_keys(names[i : i + IN_CHUNK])))
            held.update((r.name, r) for r in split(found)[1])
        return held

    def _fold_batch(
        self,
        cell: Cell,
        ttl: int,
        rollup: Row | None,
        mark: Any,
        pending: list[Row],
        held: dict[str, Row],
    ) -> Any:
        spec = cell[0]
        values = cell_values(cell)
        dn, df, winners = delta(pending, held)
        version = version_of(rollup)
        last = pending[-1].pos  # pending rows come in position order: everything up to here
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.serial_consistency_level = self._serial
        batch.consistency_level = self._statement("cas", spec).consistency_level
        moved = (n_of(rollup) + dn, f_of(rollup) + df, (version or 0) + 1, last)
        batch.add(self._statement("cas", spec), (ttl, *moved, *values, version))
        for name, row in winners.items():
            old = held.get(name)
            if old is not None:  # the version it replaces
                batch.add(self._statement("uncounted", spec), (*values, name, old.ts))
            counted = (*values, name, row.ts, row.wid, row.n, row.f, ttl)
            batch.add(self._statement("counted", spec), counted)
        batch.add(self._statement("drop", spec), (*values, PENDING, mark, last))
        return batch
