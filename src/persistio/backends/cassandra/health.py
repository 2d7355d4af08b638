"""What ``status()`` warns about in a Cassandra keyspace: its replication, read from the schema.

persistio creates the keyspace with the URL's ``replication`` and never alters an existing one
(that is a data migration: ``ALTER KEYSPACE`` and then ``nodetool repair``), so what the cluster
really holds may differ from what the URL asks for; this says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

IGNORED = ("class",)  # replication options that are not a replica count


def replication_of(options: Mapping[str, str]) -> dict[str, int]:
    """Replicas per data center (``{"*": n}`` for SimpleStrategy) from a keyspace's options."""
    found: dict[str, int] = {}
    for key, value in options.items():
        if key in IGNORED or not str(value).isdigit():
            continue
        found["*" if key == "replication_factor" else key] = int(value)
    return found


def keyspace_warnings(
    where: str, keyspace: str, wanted: int, replication: Mapping[str, str] | None, nodes: int
) -> list[str]:
    """Warnings for ``keyspace`` as the schema has it (None: not created yet, so the URL's)."""
    found = replication_of(replication) if replication is not None else {"*": wanted}
    out: list[str] = []
    lowest = min(found.values(), default=0)
    if lowest <= 1:
        out.append(
            f"amorphous backend {where}: keyspace {keyspace} has replication {lowest}: one "
            "node's loss makes its data unavailable, or loses it (use ?replication=3 on a "
            "cluster of 3 nodes or more)"
        )
    if replication is not None and max(found.values(), default=0) != wanted:
        out.append(
            f"amorphous backend {where}: keyspace {keyspace} exists with replication "
            f"{_text(found)}, while the URL asks for {wanted}; persistio never alters a "
            "keyspace: ALTER KEYSPACE, then nodetool repair"
        )
    if nodes and max(found.values(), default=0) > nodes:
        out.append(
            f"amorphous backend {where}: keyspace {keyspace} has replication {_text(found)} "
            f"but the cluster has {nodes} node(s): writes that need a quorum fail"
        )
    return out


def _text(found: Mapping[str, int]) -> str:
    if set(found) == {"*"}:
        return str(found["*"])
    return ", ".join(f"{dc}: {n}" for dc, n in sorted(found.items()))


def cluster_nodes(cluster: Any) -> int:
    """How many nodes the driver's metadata knows (up or down)."""
    return len(cluster.metadata.all_hosts()) if cluster is not None else 0


def replication_warnings(session: Any, cluster: Any, endpoint: Any, where: str) -> list[str]:
    """``keyspace_warnings`` for the endpoint's keyspace, read from ``system_schema``."""
    row = session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
        (endpoint.keyspace,),
    ).one()
    replication = None if row is None else dict(row[0])
    return keyspace_warnings(
        where, endpoint.keyspace, endpoint.replication_factor, replication, cluster_nodes(cluster)
    )


__all__ = ["cluster_nodes", "keyspace_warnings", "replication_of", "replication_warnings"]
