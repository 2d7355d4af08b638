"""Where the benchmark's data lives, and how big a run is.

Isolation on shared servers: Redis DBs 10 (persistio arm), 11 (raw arm) and 12 (the lock that
keeps two benchmark runs from flushing each other's data); PostgreSQL databases
``<namespace>_single``, ``<namespace>_raw`` and ``<namespace>_pio``; the Cassandra keyspace
``<namespace>``. The namespace is ``bench`` unless told otherwise (the smoke test uses its own).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

REDIS_DB_PIO = 10
REDIS_DB_RAW = 11
REDIS_DB_LOCK = 12
NAMESPACE = re.compile(r"bench[a-z0-9_]{0,30}")
# The test servers run with synchronous_commit=off (and fsync=off) in postgresql.conf; every
# benchmark session asks for synchronous commits itself too (also when the run's ALTER SYSTEM
# was refused). The space-free form: a URL renderer that writes a space as '+' (SQLAlchemy's
# URL.render_as_string does) would turn "-c synchronous_commit=on" into "+synchronous_commit".
SYNC_COMMIT = quote("--synchronous_commit=on")


class SettingsError(Exception):
    """The servers' URLs are missing or malformed."""


@dataclass(frozen=True)
class Endpoints:
    """The three servers, and the names of this benchmark's own databases on them."""

    redis: str  # redis://host:port, no database
    postgres: str  # postgresql://user@host:port (libpq form), no database
    cassandra: str  # host[,host]:port
    admin_database: str = "postgres"  # where CREATE/DROP DATABASE run (the URL's own database)
    namespace: str = "bench"

    @classmethod
    def from_env(cls, namespace: str = "bench") -> Endpoints:
        """From PERSISTIO_{VOLATILE,ACID,AMORPHOUS}_URL, as `scripts/services env` exports them."""
        env = os.environ
        redis_url = env.get("PERSISTIO_VOLATILE_URL") or env.get("PERSISTIO_TRANSITORY_URL")
        pg_url, cassandra_url = env.get("PERSISTIO_ACID_URL"), env.get("PERSISTIO_AMORPHOUS_URL")
        if not (redis_url and pg_url and cassandra_url):
            raise SettingsError(
                "set PERSISTIO_VOLATILE_URL, PERSISTIO_ACID_URL and PERSISTIO_AMORPHOUS_URL, "
                'e.g. eval "$(bash scripts/services env)"'
            )
        if not NAMESPACE.fullmatch(namespace):
            raise SettingsError(f"namespace {namespace!r}: use bench[a-z0-9_]{{0,30}}")
        return cls(
            redis=_without_path(redis_url, "redis"),
            postgres=_without_path(pg_url, "postgresql").replace(
                "postgresql+psycopg://", "postgresql://", 1
            ),
            cassandra=urlsplit(cassandra_url).netloc,
            admin_database=urlsplit(pg_url).path.strip("/") or "postgres",
            namespace=namespace,
        )

    def redis_url(self, db: int) -> str:
        return f"{self.redis}/{db}"

    def database(self, arm: str) -> str:
        """The PostgreSQL database of one arm: ``single``, ``raw`` or ``pio``."""
        return f"{self.namespace}_{arm}"

    def pg_conninfo(self, database: str, *, sync_commit: bool = True) -> str:
        """A libpq URL; every session commits synchronously unless told otherwise."""
        options = f"?options={SYNC_COMMIT}" if sync_commit else ""
        return f"{self.postgres}/{database}{options}"

    def pg_sqlalchemy_url(self, database: str) -> str:
        """The same, in the form persistio (SQLAlchemy) takes."""
        conninfo = self.pg_conninfo(database)
        return conninfo.replace("postgresql://", "postgresql+psycopg://", 1)

    @property
    def keyspace(self) -> str:
        return self.namespace

    @property
    def cassandra_hosts(self) -> tuple[list[str], int]:
        hosts, _, port = self.cassandra.rpartition(":")
        if not hosts:
            return self.cassandra.split(","), 9042
        return hosts.split(","), int(port)

    def cassandra_url(self) -> str:
        # protocol_version=5 pins what the server speaks; negotiating down logs a warning
        return f"cassandra://{self.cassandra}/{self.keyspace}?protocol_version=5"


def _without_path(url: str, scheme: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme.startswith(scheme) or not parts.netloc:
        raise SettingsError(f"{url!r} is not a {scheme} URL")
    if "," in parts.netloc:
        raise SettingsError(f"{url!r}: the benchmark takes one server, not a failover list")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Size:
    """How much work one invocation does.

    A phase stops at ``seconds`` or at ``max_saves`` (all processes together), whichever comes
    first: the cap bounds the deferred backlog (Cassandra writes) at batch 100, so a full run
    fits the time budget on a 2-core machine. ``requests`` (per process) replaces both when set:
    the smoke test's tiny, count-bound mode.
    """

    rounds: int
    seconds: float
    max_saves: int
    requests: int | None = None
    latency_load: float = 0.6  # open-loop rate, as a fraction of the slowest arm's throughput
    ceiling_requests: int = 200_000  # per redis-benchmark test
    ceiling_seconds: int = 5  # per pgbench run


QUICK = Size(rounds=1, seconds=1.0, max_saves=3_000, ceiling_requests=50_000, ceiling_seconds=2)
FULL = Size(rounds=3, seconds=2.0, max_saves=6_000)
