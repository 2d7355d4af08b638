"""Counts on Cassandra: contributions are plain inserts; a folder moves them into the rollup.

One table per count, one partition per (key, bucket size, bucket), three kinds of rows by
``stage`` (clustering ``stage, contribution, ts``):

- stage 0: the *rollup* ``(0, '', 0)``: the folded count (``n``, ``f``) and its ``version``;
- stage 1: *pending* contributions ``(1, name, write ts)``: what a save wrote, not folded yet;
- stage 2: *counted* contributions ``(2, name, ts)``: the version of each contribution that
  the rollup holds.

A save writes its pending row with an ordinary idempotent ``INSERT ... USING TIMESTAMP``: a
replay writes the same row. Folding (``Folder``, threads of this backend, fed by the writes and
the reads that meet pending rows) reads a partition's rollup and pending rows, looks up their
counted versions, and applies in ONE conditional batch on that one partition: the rollup moved
by the difference and ``version + 1`` ``IF version = <read>``, the new counted rows, and the
deletion of the pending rows it read. A single-partition batch is applied atomically and in
isolation, and the condition fails if another fold got there first, so a contribution is
folded once, and a replay of it after its fold is shadowed by the deletion (written later than
the replayed row's own timestamp) or, should it reappear, found already counted.

A read takes, per bucket, the rollup and the pending rows (one query), plus the counted
versions of those pending rows when there are any, checked against the same rollup version:
the count is exact while folds run, and costs a query or two per bucket.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

from cassandra import ConsistencyLevel
from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from ..errors import BackendUnavailable, PersistioError, ValidationError
from .base import Contribution, CountRanges, CountSpec, CountValues, bucket_of
from .folder import Cell, Folder

ROLLUP, PENDING, COUNTED = 0, 1, 2
# pending rows per conditional batch: a batch on one partition is one mutation, which Cassandra
# exempts from its batch size warning and limit (CASSANDRA-10876); this keeps it some 50 KiB
FOLD_ROWS = 500
IN_CHUNK = 100  # contributions looked up per query
BUCKETS_PER_QUERY = 64  # buckets of one key and size read by one query (bucket IN ...)
READ_CONCURRENCY = 64
READ_ROUNDS = 5  # a bucket read again while folds keep moving under it
FOLD_ROUNDS = 64  # batches per fold before the partition goes back in the queue
Row = tuple[int, str, int, int, float, int | None]  # stage, contribution, ts, n, f, version
Statement = Literal["pending", "opens", "fold", "held", "cas", "delete", "counted"]


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
    ) -> None:
        self._connect = connect
        self._mapped = mapped
        self._keyspace = keyspace
        self._consistency = consistency
        self._serial = ConsistencyLevel.LOCAL_SERIAL if local_dc else ConsistencyLevel.SERIAL
        self._names = names  # quotes a key field's name
        self._cql_type = cql_type
        self._micros = micros  # a datetime key value as CQL holds it
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
            "contribution text, ts bigint, n bigint, f double, version bigint, "
            f"PRIMARY KEY (({partition}), stage, contribution, ts))"
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
        clustering = [("stage", "tinyint"), ("contribution", "text"), ("ts", "bigint")]
        wanted |= {(n, "clustering", i, t) for i, (n, t) in enumerate(clustering)}
        wanted |= {(n, "regular", -1, t) for n, t in (("n", "bigint"), ("f", "double"))}
        wanted.add(("version", "regular", -1, "bigint"))
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
        columns = ", ".join([*keys, "granularity", "bucket", "stage", "contribution", "ts"])
        columns += ", n, f"
        marks = ", ".join("?" * (len(keys) + 2))
        rows = f"SELECT stage, contribution, ts, n, f, version FROM {table} WHERE {cell}"
        buckets = " AND ".join(f"{k} = ?" for k in [*keys, "granularity"]) + " AND bucket IN ?"
        cql = {
            "pending": f"INSERT INTO {table} ({columns}) VALUES ({marks}, 1, ?, ?, ?, ?) "
            "USING TIMESTAMP ? AND TTL ?",
            "opens": "SELECT bucket, stage, contribution, ts, n, f, version FROM "
            f"{table} WHERE {buckets} AND stage IN (0, 1)",
            "fold": f"{rows} AND stage IN (0, 1) LIMIT ?",
            "held": f"{rows} AND stage IN (0, 2) AND contribution IN ?",
            "cas": f"UPDATE {table} USING TTL ? SET n = ?, f = ?, version = ? WHERE {cell} "
            "AND stage = 0 AND contribution = '' AND ts = 0 IF version = ?",
            "delete": f"DELETE FROM {table} WHERE {cell} AND stage = ? AND contribution = ? "
            "AND ts = ?",
            "counted": f"INSERT INTO {table} ({columns}) VALUES ({marks}, 2, ?, ?, ?, ?) "
            "USING TTL ?",
        }[kind]
        prepared = self._connect().prepare(cql)
        prepared.consistency_level = ConsistencyLevel.name_to_value[
            spec.consistency or self._consistency
        ]
        # every statement is idempotent: inserts carry their own timestamp or are a fold's,
        # which is conditional as a whole
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
            ttl = _ttl(spec, index, bucket, now)
            if ttl is None:
                continue  # a late replay of an expired bucket never resurrects it
            values = (*key, size, bucket, op.contribution, op.ts, op.n, op.f, op.ts, ttl)
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
        todo = cells
        with self._mapped(f"read from {spec.name}"):
            for _ in range(READ_ROUNDS):
                todo = self._read_round(todo, values)
                if not todo:
                    break
            else:
                raise BackendUnavailable(
                    f"amorphous backend: {spec.name} kept being folded under a read; try again",
                    tier="amorphous",
                )
        out: CountValues = []
        for size, first, stop in ranges:
            found: dict[int, tuple[int, float]] = {}
            for bucket in range(first, stop, size * 1_000_000):
                n, f = values.get((spec, key, size, bucket), (0, 0.0))
                if n or f:
                    found[bucket] = (n, f)
            out.append(found)
        return out

    def _read_round(self, cells: list[Cell], values: dict[Cell, tuple[int, float]]) -> list[Cell]:
        """Read ``cells`` into ``values``; return those a fold moved under the read."""
        unsettled: dict[Cell, tuple[Row | None, list[Row]]] = {}
        for cell, rows in self._open(cells).items():
            rollup, pending = _split(rows)
            if pending:
                unsettled[cell] = (rollup, pending)
            elif rollup is not None:
                values[cell] = (rollup[3], rollup[4])
        if not unsettled:
            return []
        self.folder.mark(unsettled)  # read repair: what a crash left unfolded gets folded
        asks: list[tuple[Cell, list[str]]] = []
        for cell, (_, pending) in unsettled.items():
            names = sorted({r[1] for r in pending})
            asks += [(cell, names[i : i + IN_CHUNK]) for i in range(0, len(names), IN_CHUNK)]
        answers = self._run(
            [(self._statement("held", c[0]), (*_cell_values(c), ["", *n])) for c, n in asks]
        )
        held: dict[Cell, dict[str, Row]] = {}
        moved: set[Cell] = set()
        for (cell, _), rows in zip(asks, answers, strict=True):
            rollup, counted = _split(rows)
            if _version(rollup) != _version(unsettled[cell][0]):
                moved.add(cell)  # a fold committed between the two queries: read it again
            held.setdefault(cell, {}).update((r[1], r) for r in counted)
        for cell, (rollup, pending) in unsettled.items():
            if cell not in moved:
                dn, df, _ = _delta(pending, held.get(cell, {}))
                values[cell] = (_n(rollup) + dn, _f(rollup) + df)
        return [c for c in cells if c in moved]

    def _open(self, cells: list[Cell]) -> dict[Cell, list[Any]]:
        """Each cell's rollup and pending rows: one query per run of buckets of one key and
        size (``bucket IN``), so a month of buckets costs the client a few requests."""
        runs: dict[tuple[CountSpec, tuple[Any, ...], int], list[int]] = {}
        for spec, key, size, bucket in cells:
            runs.setdefault((spec, key, size), []).append(bucket)
        asks = [
            (run, buckets[i : i + BUCKETS_PER_QUERY])
            for run, buckets in runs.items()
            for i in range(0, len(buckets), BUCKETS_PER_QUERY)
        ]
        answers = self._run(
            [(self._statement("opens", r[0]), (*r[1], r[2], chunk)) for r, chunk in asks]
        )
        found: dict[Cell, list[Any]] = {cell: [] for cell in cells}
        for ((spec, key, size), _), rows in zip(asks, answers, strict=True):
            for row in rows:
                found[(spec, key, size, row[0])].append(row[1:])
        return found

    def _run(self, calls: list[tuple[Any, Sequence[Any]]]) -> list[list[Row]]:
        if not calls:
            return []
        session = self._connect()
        results = execute_concurrent(
            session, calls, concurrency=READ_CONCURRENCY, raise_on_first_error=True
        )
        return [[tuple(r) for r in result] for _, result in results]

    # -- folding ------------------------------------------------------------------------------

    def fold(self, cell: Cell) -> bool:
        """Fold ``cell``'s pending rows into its rollup; False if some are left to fold."""
        spec, _, size, bucket = cell
        index = spec.granularities.index(size)
        session = self._connect()
        values = _cell_values(cell)
        with self._mapped(f"fold {spec.name}"):
            for _ in range(FOLD_ROUNDS):
                ttl = _ttl(spec, index, bucket, time.time())
                if ttl is None:
                    return True  # expired: its rows go with their TTL
                fold = self._statement("fold", spec)
                rollup, pending = _split(session.execute(fold, (*values, FOLD_ROWS + 1)))
                if not pending:
                    return True
                held = self._held(session, cell, sorted({r[1] for r in pending}), rollup)
                if held is None:  # another fold committed since the read: read again
                    self.folder.conflicts += 1
                    continue
                batch = self._fold_batch(cell, ttl, rollup, pending, held)
                if not session.execute(batch).was_applied:
                    self.folder.conflicts += 1  # another fold got there first: read again
                    continue
                self.folder.folded += len(pending)
                if len(pending) < FOLD_ROWS:
                    return True
        return False

    def _held(
        self, session: Any, cell: Cell, names: list[str], rollup: Row | None
    ) -> dict[str, Row] | None:
        """The counted versions of ``names``; None if the rollup moved since it was read."""
        stmt = self._statement("held", cell[0])
        values = _cell_values(cell)
        held: dict[str, Row] = {}
        for i in range(0, len(names), IN_CHUNK):
            check, counted = _split(
                session.execute(stmt, (*values, ["", *names[i : i + IN_CHUNK]]))
            )
            if _version(check) != _version(rollup):
                return None
            held.update((r[1], r) for r in counted)
        return held

    def _fold_batch(
        self, cell: Cell, ttl: int, rollup: Row | None, pending: list[Row], held: dict[str, Row]
    ) -> Any:
        spec = cell[0]
        values = _cell_values(cell)
        dn, df, winners = _delta(pending, held)
        version = _version(rollup)
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.serial_consistency_level = self._serial
        batch.consistency_level = self._statement("cas", spec).consistency_level
        cas = (ttl, _n(rollup) + dn, _f(rollup) + df, (version or 0) + 1, *values, version)
        batch.add(self._statement("cas", spec), cas)
        for name, (ts, n, f) in winners.items():
            old = held.get(name)
            if old is not None:
                batch.add(self._statement("delete", spec), (*values, COUNTED, name, old[2]))
            batch.add(self._statement("counted", spec), (*values, name, ts, n, f, ttl))
        for row in pending:
            batch.add(self._statement("delete", spec), (*values, PENDING, row[1], row[2]))
        return batch


def _ttl(spec: CountSpec, index: int, bucket: int, now: float) -> int | None:
    """Seconds left before the bucket is past retain: 0 = forever, None = already past."""
    expires = spec.expires_at(index, bucket)
    if expires is None:
        return 0
    left = expires - now
    return math.ceil(left) if left > 0 else None


def _cell_values(cell: Cell) -> tuple[Any, ...]:
    return (*cell[1], cell[2], cell[3])


def _split(rows: Iterable[Any]) -> tuple[Row | None, list[Row]]:
    """(the rollup row, the other rows) of one partition's answer."""
    rollup: Row | None = None
    others: list[Row] = []
    for r in rows:
        row: Row = (r[0], r[1], r[2], r[3] or 0, r[4] or 0.0, r[5])
        if row[0] == ROLLUP:
            rollup = row
        else:
            others.append(row)
    return rollup, others


def _version(rollup: Row | None) -> int | None:
    return None if rollup is None else rollup[5]


def _n(rollup: Row | None) -> int:
    return 0 if rollup is None else rollup[3]


def _f(rollup: Row | None) -> float:
    return 0.0 if rollup is None else rollup[4]


def _delta(
    pending: list[Row], held: dict[str, Row]
) -> tuple[int, float, dict[str, tuple[int, int, float]]]:
    """What folding ``pending`` adds, and each contribution's winning version (ts, n, f).

    Per contribution only its newest pending version counts, and only if it is newer than the
    version already counted, which it then replaces: a replay (same version) adds nothing.
    """
    newest: dict[str, Row] = {}
    for row in pending:
        held_row = newest.get(row[1])
        if held_row is None or held_row[2] < row[2]:
            newest[row[1]] = row
    dn, df = 0, 0.0
    winners: dict[str, tuple[int, int, float]] = {}
    for name, row in newest.items():
        old = held.get(name)
        if old is not None and old[2] >= row[2]:
            continue
        dn += row[3] - (0 if old is None else old[3])
        df += row[4] - (0.0 if old is None else old[4])
        winners[name] = (row[2], row[3], row[4])
    return dn, df, winners
