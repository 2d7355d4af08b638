"""The engine modules' former flat paths (``persistio.backends.redis_store``, ...), kept importable.

Plugins written before the engines had folders import from those paths; each old name is served
by the module now at the new path (the same module object, so classes compare equal). Nothing
else in persistio imports through them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

MOVED = {
    "cassandra_count_rows": "cassandra.count_rows",
    "cassandra_counts": "cassandra.counts",
    "cassandra_health": "cassandra.health",
    "cassandra_requests": "cassandra.requests",
    "folder": "cassandra.folder",
    "pg_backend": "sql.postgres",
    "pg_writes": "sql.pg_writes",
    "redis_cache": "redis.cache",
    "redis_client": "redis.client",
    "redis_cluster": "redis.cluster",
    "redis_cluster_writes": "redis.cluster_writes",
    "redis_scripts": "redis.scripts",
    "redis_store": "redis.server",
    "redis_streams": "redis.streams",
    "redis_writes": "redis.writes",
    "sql_errors": "sql.errors",
    "sql_index": "sql.index",
    "sql_tombstones": "sql.tombstones",
    "sql_types": "sql.types",
    "sqlite_counts": "sqlite.counts",
    "sqlite_documents": "sqlite.documents",
    "sqlite_queue": "sqlite.queue",
}
PREFIX = "persistio.backends."


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target
        self.own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the target ran already, under its own name; the import system has just set the alias's
        # spec on it, and the module keeps its own
        module.__spec__ = self.own_spec


class MovedEngines(importlib.abc.MetaPathFinder):
    """Finds ``persistio.backends.<old name>`` and answers with the module at its new path."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(PREFIX):
            return None
        new = MOVED.get(fullname[len(PREFIX) :])
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(PREFIX + new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, MovedEngines) for finder in sys.meta_path):
        sys.meta_path.append(MovedEngines())
