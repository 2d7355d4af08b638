"""The harness's own server work: databases, keyspace, truncation, durability, the run lock.

Nothing here is timed. It runs in the parent process only, between phases.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import psycopg
import redis
from psycopg import sql

from .drivers import cassandra_connect
from .settings import REDIS_DB_LOCK, REDIS_DB_PIO, REDIS_DB_RAW, Endpoints

LOCK_KEY = "bench:lock"
LOCK_TTL_MS = 300_000  # refreshed before every run; a crashed run frees it within 5 minutes
DDL_TIMEOUT = 120.0
# Redis's usual production setting, and the services script's: what every run leaves behind.
APPENDFSYNC_RESTORED = "everysec"
APPENDFSYNC = {"strict": "always", "relaxed": "everysec"}
# What a production PostgreSQL runs with, whatever the test server's postgresql.conf says.
PG_DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}
PG_REPORTED = (
    "server_version",
    *PG_DURABLE,
    "wal_level",
    "wal_sync_method",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "shared_preload_libraries",
)
AUTO_CONF = "postgresql.auto.conf"

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class LockBusy(Exception):
    """Another benchmark run holds the servers' benchmark databases."""


class Admin:
    """Connections for setup, reset and checks; one per server, opened once."""

    def __init__(self, endpoints: Endpoints, say: Callable[[str], None] = print) -> None:
        self.endpoints = endpoints
        self.say = say
        self.pg_calls: dict[str, int] = {}  # statements run in each database (pg_count)
        self.can_checkpoint = True  # until refused
        self._pg_restore: list[tuple[str, str | None]] = []  # (setting, ALTER SYSTEM value)
        self.redis = {
            db: redis.Redis.from_url(endpoints.redis_url(db))
            for db in (REDIS_DB_PIO, REDIS_DB_RAW, REDIS_DB_LOCK)
        }
        self._pg: dict[str, psycopg.Connection[tuple[Any, ...]]] = {}
        self._cluster: Any = None
        self._session: Any = None
        self._token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    # -- PostgreSQL -------------------------------------------------------------------------

    def pg(self, database: str) -> psycopg.Connection[tuple[Any, ...]]:
        conn = self._pg.get(database)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.endpoints.pg_conninfo(database), autocommit=True)
            self._pg[database] = conn
        return conn

    def create_databases(self, names: list[str]) -> None:
        admin = self.pg(self.endpoints.admin_database)
        for name in names:
            found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_databases(self, names: list[str]) -> None:
        for name in names:
            conn = self._pg.pop(name, None)
            if conn is not None:
                conn.close()
        admin = self.pg(self.endpoints.admin_database)
        for name in names:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def pg_count(self, database: str, table: str) -> int:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        self.pg_calls[database] = self.pg_calls.get(database, 0) + 1
        row = self.pg(database).execute(query).fetchone()
        return int(row[0]) if row else 0

    def checkpoint(self) -> bool:
        """``CHECKPOINT`` (role pg_checkpoint), so every measured run starts as soon after one
        as the others: WAL volume depends on it (full-page images). False when not allowed."""
        if not self.can_checkpoint:
            return False
        try:
            self._plain_pg().execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            self.can_checkpoint = False
            self.say("cannot CHECKPOINT before each run (no pg_checkpoint role): WAL is noisier")
        return self.can_checkpoint

    def pg_settings(self) -> dict[str, str]:
        """The settings a reader needs to judge the numbers, as the server runs them now."""
        rows = self._plain_pg().execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(PG_REPORTED),)
        )
        return {name: str(value) for name, value in rows.fetchall()}

    def pg_durability_on(self) -> dict[str, Any]:
        """Run PostgreSQL as a production user does: fsync, full_page_writes and
        synchronous_commit on (the test servers run with them off), with ``ALTER SYSTEM`` and a
        reload; ``pg_restore_durability`` puts back what was there. Returns what was found,
        what was changed, and why not if it could not be (then the run goes on as it is)."""
        admin = self._plain_pg()  # a session's own options must not hide the server's value
        rows = admin.execute(
            "SELECT name, setting, sourcefile FROM pg_settings WHERE name = ANY(%s)",
            (list(PG_DURABLE),),
        ).fetchall()
        found = {name: str(setting) for name, setting, _ in rows}
        changed: list[str] = []
        try:
            for name, setting, sourcefile in rows:
                if setting == PG_DURABLE[name]:
                    continue
                # set by an earlier ALTER SYSTEM: put that value back; else RESET it
                earlier = str(setting) if str(sourcefile or "").endswith(AUTO_CONF) else None
                admin.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(name), sql.Literal(PG_DURABLE[name])
                    )
                )
                self._pg_restore.append((name, earlier))
                changed.append(name)
            if changed:
                admin.execute("SELECT pg_reload_conf()")
                self._wait_settings(PG_DURABLE)
        except (psycopg.Error, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.say(f"WARNING: PostgreSQL durability not switched on ({error}); see README")
            # undo what was set, so a later reload by anyone does not apply it
            with contextlib.suppress(psycopg.Error):
                self.pg_restore_durability(wait_seconds=0)
            return {"found": found, "changed": [], "error": error}
        return {"found": found, "changed": changed, "error": None}

    def _plain_pg(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A session on the admin database without the benchmark's session options."""
        key = f"{self.endpoints.admin_database} (plain)"
        conn = self._pg.get(key)
        if conn is None or conn.closed:
            conninfo = self.endpoints.pg_conninfo(self.endpoints.admin_database, sync_commit=False)
            conn = psycopg.connect(conninfo, autocommit=True)
            self._pg[key] = conn
        return conn

    def pg_restore_durability(self, wait_seconds: float = 60.0) -> None:
        """Put back what ``pg_durability_on`` changed; retried while the server is away."""
        if not self._pg_restore:
            return
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                conn = self._plain_pg()
                for name, earlier in reversed(self._pg_restore):
                    if earlier is None:
                        conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
                    else:
                        conn.execute(
                            sql.SQL("ALTER SYSTEM SET {} = {}").format(
                                sql.Identifier(name), sql.Literal(earlier)
                            )
                        )
                conn.execute("SELECT pg_reload_conf()")
                self._pg_restore.clear()
                return
            except psycopg.OperationalError:
                self._pg.pop(f"{self.endpoints.admin_database} (plain)", None)
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)

    def _wait_settings(self, wanted: dict[str, str], wait_seconds: float = 10.0) -> None:
        """A reload is asynchronous: wait until a new session sees the values."""
        conninfo = self.endpoints.pg_conninfo(self.endpoints.admin_database, sync_commit=False)
        deadline = time.monotonic() + wait_seconds
        while True:
            with psycopg.connect(conninfo) as conn:
                rows = conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(wanted),)
                ).fetchall()
            if all(wanted[name] == str(value) for name, value in rows):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"PostgreSQL still runs {dict(rows)} after a reload")
            time.sleep(0.1)

    # -- Cassandra --------------------------------------------------------------------------

    def cql(self, statement: str) -> Any:
        if self._session is None:
            self._cluster, self._session = cassandra_connect(self.endpoints)
        return self._session.execute(statement, timeout=DDL_TIMEOUT)

    def create_keyspace(self) -> None:
        self.cql(
            f"CREATE KEYSPACE IF NOT EXISTS {self.endpoints.keyspace} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )

    def drop_keyspace(self) -> None:
        self.cql(f"DROP KEYSPACE IF EXISTS {self.endpoints.keyspace}")

    def truncate(self, table: str) -> None:
        self.cql(f"TRUNCATE {self.endpoints.keyspace}.{table}")

    def cql_count(self, table: str) -> int:
        return int(self.cql(f"SELECT count(*) FROM {self.endpoints.keyspace}.{table}").one()[0])

    # -- Redis ------------------------------------------------------------------------------

    def scan_count(self, db: int, pattern: str) -> int:
        return sum(1 for _ in self.redis[db].scan_iter(match=pattern, count=5000))

    def xlen(self, db: int, *keys: str) -> int:
        pipe = self.redis[db].pipeline(transaction=False)
        for key in keys:
            pipe.xlen(key)
        return sum(int(n) for n in pipe.execute())

    def set_durability(self, durability: str) -> None:
        """Redis: fsync the AOF before every reply (strict) or once a second (relaxed).

        Server-wide, so other users of this Redis see it too: the harness restores everysec in
        a ``finally`` (see ``restore_durability``) and keeps strict runs together.
        """
        self.redis[REDIS_DB_LOCK].config_set("appendfsync", APPENDFSYNC[durability])

    def restore_durability(self, wait_seconds: float = 60.0) -> None:
        """Retried: this must not be skipped because Redis is restarting right now."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                self.redis[REDIS_DB_LOCK].config_set("appendfsync", APPENDFSYNC_RESTORED)
                return
            except redis.ConnectionError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)

    def appendfsync(self) -> str:
        return str(self.redis[REDIS_DB_LOCK].config_get("appendfsync")["appendfsync"])

    @property
    def lock_redis(self) -> redis.Redis:
        """A client on the lock's database, for server-wide commands (INFO, CONFIG)."""
        return self.redis[REDIS_DB_LOCK]

    # -- the run lock -----------------------------------------------------------------------

    def acquire_lock(self, wait_seconds: float) -> None:
        """Flushing Redis DBs 10-11 is only safe while no other benchmark run uses them."""
        client = self.redis[REDIS_DB_LOCK]
        deadline = time.monotonic() + wait_seconds
        while not client.set(LOCK_KEY, self._token, nx=True, px=LOCK_TTL_MS):
            if time.monotonic() >= deadline:
                holder = client.get(LOCK_KEY)
                raise LockBusy(
                    f"another benchmark run holds {LOCK_KEY} in Redis DB {REDIS_DB_LOCK} "
                    f"({holder!r}); wait for it, or delete the key if that run is dead"
                )
            time.sleep(0.5)

    def refresh_lock(self) -> None:
        client = self.redis[REDIS_DB_LOCK]
        if not client.eval(_REFRESH, 1, LOCK_KEY, self._token, LOCK_TTL_MS):
            raise LockBusy(f"lost {LOCK_KEY}: another run may be using the benchmark databases")

    def release_lock(self) -> None:
        self.redis[REDIS_DB_LOCK].eval(_RELEASE, 1, LOCK_KEY, self._token)

    def close(self) -> None:
        for conn in self._pg.values():
            conn.close()
        self._pg.clear()
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = self._session = None
        for client in self.redis.values():
            client.close()
