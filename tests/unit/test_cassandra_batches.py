"""How Cassandra rows are grouped into requests: per replica, within the server's warning limits."""

from __future__ import annotations

from typing import Any

from cassandra import ConsistencyLevel
from cassandra.query import BatchStatement, SimpleStatement

from persistio.backends.cassandra.requests import (
    BATCH_PARTITIONS,
    BATCH_ROWS,
    batched,
)


class OneReplicaPerKey:
    """Cluster metadata stand-in: a key's replica is the key's first byte modulo ``nodes``."""

    def __init__(self, nodes: int) -> None:
        self.nodes = nodes

    def get_replicas(self, keyspace: str, key: bytes) -> list[str]:
        return [f"node{key[0] % self.nodes}"]


def _rows(partitions: list[int]) -> list[tuple[Any, int]]:
    """Bound-statement stand-ins, one per partition number given, each with its own text."""
    rows = []
    for n, partition in enumerate(partitions):
        stmt = SimpleStatement(
            f"INSERT INTO ks.t (p, n) VALUES ({partition}, {n})",
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        )
        stmt.routing_key = bytes([partition % 256, partition // 256])
        rows.append((stmt, 40))
    return rows


def _batches(statements: list[Any], rows: list[tuple[Any, int]]) -> list[list[Any]]:
    """The rows each statement sent carries."""
    by_text = {s.query_string: s for s, _ in rows}
    out: list[list[Any]] = []
    for stmt in statements:
        if isinstance(stmt, BatchStatement):
            out.append([by_text[text] for _, text, _ in stmt._statements_and_parameters])
        else:
            out.append([stmt])
    return out


def test_a_batch_spans_at_most_the_warning_threshold_of_partitions() -> None:
    # Given 300 rows over 150 partitions, all owned by one node (one replica for every key)
    rows = _rows([n % 150 for n in range(300)])
    # When they are grouped
    statements = batched(rows, OneReplicaPerKey(1), "ks")
    # Then every row is sent once, and no batch covers more than BATCH_PARTITIONS partitions
    groups = _batches(statements, rows)
    assert sorted(id(r) for g in groups for r in g) == sorted(id(s) for s, _ in rows)
    assert all(len({s.routing_key for s in g}) <= BATCH_PARTITIONS for g in groups)
    assert all(len(g) <= BATCH_ROWS for g in groups)
    # And rows of one partition still share a batch: fewer requests than rows
    assert len(statements) < 300 // 2 + 1


def test_rows_of_one_partition_are_not_held_to_the_partition_limit() -> None:
    # Given 128 rows of one partition
    rows = _rows([7] * 128)
    # When they are grouped
    groups = _batches(batched(rows, OneReplicaPerKey(3), "ks"), rows)
    # Then batches fill up to the byte limit, far past BATCH_PARTITIONS rows
    assert sum(len(g) for g in groups) == 128
    assert all(len(g) > BATCH_PARTITIONS for g in groups[:-1])
    assert len(groups) <= 4


def test_a_batch_holds_rows_of_one_replica_only() -> None:
    rows = _rows(list(range(60)))
    metadata = OneReplicaPerKey(3)
    statements = batched(rows, metadata, "ks")
    for group in _batches(statements, rows):
        owners = {metadata.get_replicas("ks", s.routing_key)[0] for s in group}
        assert len(owners) == 1
