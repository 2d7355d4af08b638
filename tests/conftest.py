"""Fixtures for the real servers: PostgreSQL, Redis and Cassandra.

Each server comes from its environment variable (``make test`` sets them all from
``scripts/services env``; ``make test-cluster`` from ``scripts/services env --cluster``):

- Redis: ``PERSISTIO_VOLATILE_URL`` (or ``PERSISTIO_TRANSITORY_URL``), ``redis://host:port/db``,
  or a Redis Cluster, ``redis+cluster://host:port,host:port/`` (see ``tests/redis_clients.py``)
- PostgreSQL: ``PERSISTIO_ACID_URL``, ``postgresql+psycopg://user@host:port/db`` (the role must
  be allowed to create databases: the tests make their own)
- Cassandra: ``PERSISTIO_AMORPHOUS_URL``, ``cassandra://host[:port][,host[:port]...]/keyspace``,
  with ``?replication=N`` on a cluster (the session's keyspace is made with it)

``pytest --cluster`` (what ``make test-cluster`` runs) also collects the tests marked
``cluster``, which need those cluster URLs (they are deselected otherwise), and leaves out the
embedded half of the contract suite, which the cluster cannot change.

When a variable is unset and a Docker engine answers, testcontainers starts that server for the
session. Otherwise every test that needs it is skipped, naming the server; with ``CI=true`` it
fails instead, because CI must never pass by skipping. Tests that use these fixtures get the
``services`` marker, so ``pytest -m "not services"`` runs without any server.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests import redis_clients

if TYPE_CHECKING:
    import psycopg
    import redis
    from cassandra.cluster import Session

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

CASSANDRA_TEST_KEYSPACE = "persistio_test"


@dataclass(frozen=True)
class Server:
    """One kind of server the tests need, and where its URL comes from."""

    name: str
    env: tuple[str, ...]
    default_port: int


REDIS = Server("Redis", ("PERSISTIO_VOLATILE_URL", "PERSISTIO_TRANSITORY_URL"), 6379)
POSTGRES = Server("PostgreSQL", ("PERSISTIO_ACID_URL",), 5432)
CASSANDRA = Server("Cassandra", ("PERSISTIO_AMORPHOUS_URL",), 9042)

SERVICE_FIXTURES = frozenset(
    {
        "redis_url",
        "postgres_url",
        "cassandra_url",
        "raw_redis",
        "raw_pg",
        "pg_database_url",
        "pg_conninfo",
        "raw_cassandra",
        "cassandra_keyspace",
        "real_store_urls",
    }
)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault tests' figures (tests/faults, tests/cluster), one line per test."""
    from tests.faults.metrics import METRICS_FILE, SUMMARIES

    if SUMMARIES:
        terminalreporter.section(f"fault metrics (also in {METRICS_FILE})")
        for line in SUMMARIES:
            terminalreporter.write_line(line)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        action="store_true",
        help="the servers are clusters (make test-cluster): run the tests marked cluster",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_cluster = bool(config.getoption("--cluster"))
    kept: list[pytest.Item] = []
    left: list[pytest.Item] = []
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
        is_cluster_test = item.get_closest_marker("cluster") is not None
        embedded = "[embedded" in item.nodeid
        if (is_cluster_test and not on_cluster) or (on_cluster and embedded):
            left.append(item)
        else:
            kept.append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


# ------------------------------------------------------------------ URLs ----


def cassandra_contact(url: str) -> tuple[list[tuple[str, int]], str]:
    """``cassandra://h1[:port][,h2[:port]]/keyspace`` -> (host, port) pairs and the keyspace.

    A host without a port takes the last host's port, else 9042 (as the library reads it)."""
    parts = urlsplit(url)
    pairs: list[tuple[str, int | None]] = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, sep, port = item.rpartition(":")
        pairs.append((host, int(port)) if sep and port.isdigit() else (item, None))
    fallback = pairs[-1][1] or CASSANDRA.default_port
    return [(h, p or fallback) for h, p in pairs], parts.path.strip("/")


def cassandra_replication(url: str) -> int:
    """The ``replication`` (or ``replication_factor``) a Cassandra URL asks for; 1 if none."""
    query = dict(parse_qsl(urlsplit(url).query))
    return int(query.get("replication") or query.get("replication_factor") or 1)


def keyspace_url(cassandra_url: str, keyspace: str) -> str:
    """The same Cassandra URL (hosts and options) on another keyspace."""
    return urlsplit(cassandra_url)._replace(path=f"/{keyspace}").geturl()


def psycopg_conninfo(url: str) -> str:
    """``postgresql+psycopg://...`` (SQLAlchemy's form) -> ``postgresql://...`` (libpq's)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def with_database(url: str, database: str) -> str:
    """The same PostgreSQL URL, pointing at another database."""
    parts = urlsplit(url)
    return parts._replace(path=f"/{database}").geturl()


def _endpoint(server: Server, url: str) -> tuple[str, int]:
    if server is CASSANDRA:
        hosts, _ = cassandra_contact(url)
        return hosts[0]
    if server is REDIS and redis_clients.is_cluster(url):
        return redis_clients.cluster_nodes(url)[0]
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or server.default_port


def _missing(server: Server, why: str, hint: str = "") -> NoReturn:
    hint = hint or (
        f"set {' or '.join(server.env)}, or run `make test` (it starts the servers with "
        "scripts/services), or run a Docker engine"
    )
    if IN_CI:
        pytest.fail(f"{server.name} is missing (CI=true): {why}; {hint}", pytrace=False)
    pytest.skip(f"{server.name} is missing: {why}; {hint}")


# ---------------------------------------------------------- docker/testcontainers ----


@functools.cache
def _docker_answers() -> bool:
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _container_class(name: str, cls: str) -> Any:
    # testcontainers >= 4.10 moved the modules to testcontainers.community.*
    for module in (f"testcontainers.community.{name}", f"testcontainers.{name}"):
        with contextlib.suppress(ImportError):
            return getattr(importlib.import_module(module), cls)
    raise ImportError(f"testcontainers has no {cls}")


def _start_container(server: Server, stack: contextlib.ExitStack) -> str:
    if server is REDIS:
        redis_c = stack.enter_context(_container_class("redis", "RedisContainer")("redis:7"))
        return f"redis://{redis_c.get_container_host_ip()}:{redis_c.get_exposed_port(6379)}/0"
    if server is POSTGRES:
        pg_c = stack.enter_context(
            _container_class("postgres", "PostgresContainer")("postgres:16", driver="psycopg")
        )
        return str(pg_c.get_connection_url())
    cs_c = stack.enter_context(_container_class("cassandra", "CassandraContainer")("cassandra:5.0"))
    host, port = cs_c.get_contact_points()[0]
    url = f"cassandra://{host}:{port}/{CASSANDRA_TEST_KEYSPACE}"
    with cassandra_session(url) as session:
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {CASSANDRA_TEST_KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
    return url


@pytest.fixture(scope="session")
def _containers() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def _server_url(server: Server, request: pytest.FixtureRequest) -> str:
    url = next((os.environ[v] for v in server.env if os.environ.get(v)), None)
    if url is None:
        if not _docker_answers():
            _missing(server, f"{server.env[0]} is not set and no Docker engine answers")
        url = _start_container(server, request.getfixturevalue("_containers"))
    host, port = _endpoint(server, url)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        _missing(
            server,
            f"nothing answers on {host}:{port} ({exc})",
            "start it (scripts/services start) or fix the URL",
        )
    return url


# --------------------------------------------------------------- fixtures ----


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    return _server_url(REDIS, request)


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    return _server_url(POSTGRES, request)


@pytest.fixture(scope="session")
def cassandra_url(request: pytest.FixtureRequest) -> str:
    return _server_url(CASSANDRA, request)


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis (a ``RedisCluster`` on a cluster: the same commands)."""
    client = redis_clients.client(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A database of its own for this test session, dropped at the end; its URL."""
    import psycopg
    from psycopg import sql

    name = f"persistio_test_{secrets.token_hex(4)}"
    admin = psycopg_conninfo(postgres_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(postgres_url, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_conninfo(pg_database_url: str) -> str:
    """The session's own database as a libpq URL, for ``psycopg.connect``."""
    return psycopg_conninfo(pg_database_url)


@pytest.fixture
def raw_pg(pg_conninfo: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A psycopg connection (not autocommit) to the session's own database."""
    import psycopg

    conn = psycopg.connect(pg_conninfo)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


@contextlib.contextmanager
def cassandra_session(url: str, request_timeout: float = 10.0) -> Iterator[Session]:
    """A fresh driver session on ``url``'s hosts (no keyspace set), shut down on exit."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    hosts, _ = cassandra_contact(url)
    # Explicit protocol (Cassandra >= 4.0) and policy: the driver logs warnings otherwise.
    profile = ExecutionProfile(
        load_balancing_policy=RoundRobinPolicy(), request_timeout=request_timeout
    )
    cluster = Cluster(
        hosts,
        protocol_version=5,
        connect_timeout=10,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


@pytest.fixture(scope="session")
def raw_cassandra(cassandra_url: str) -> Iterator[Session]:
    """A cassandra-driver Session with no keyspace set (use ``cassandra_keyspace``)."""
    with cassandra_session(cassandra_url) as session:
        yield session


@pytest.fixture(scope="session")
def cassandra_keyspace(raw_cassandra: Session, cassandra_url: str) -> Iterator[str]:
    """A keyspace of its own for this test session (with the URL's replication, 1 by
    default), dropped at the end; its name."""
    name = f"persistio_t_{secrets.token_hex(4)}"
    replicas = cassandra_replication(cassandra_url)
    raw_cassandra.execute(
        f"CREATE KEYSPACE {name} WITH replication = "
        f"{{'class': 'SimpleStrategy', 'replication_factor': {replicas}}}"
    )
    try:
        yield name
    finally:
        _drop_keyspace(raw_cassandra, cassandra_url, name)


def _drop_keyspace(session: Session, url: str, name: str) -> None:
    """DROP KEYSPACE, again on a fresh session if the long-lived one lost its connection (a
    cluster test kills and restarts nodes). Dropping a keyspace of a few hundred tables flushes
    and snapshots each: on a busy 2-core machine that outlasts the driver's default 10 s."""
    from cassandra import OperationTimedOut
    from cassandra.cluster import NoHostAvailable

    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=180)
    except (OperationTimedOut, NoHostAvailable):
        with cassandra_session(url, request_timeout=180) as fresh:
            fresh.execute(f"DROP KEYSPACE IF EXISTS {name}")


@pytest.fixture(scope="session")
def real_store_urls(
    redis_url: str, pg_database_url: str, cassandra_url: str, cassandra_keyspace: str
) -> Callable[[int], dict[str, str]]:
    """``urls(redis_db)``: keyword URLs for a ``Persistio`` on every real server.

    Each suite passes a Redis database number of its own, flushed on every call, so suites that
    run in one session never see each other's streams (a cluster, with database 0 only, is
    flushed whole); PostgreSQL and Cassandra get the session's own database and keyspace.
    """
    amorphous = keyspace_url(cassandra_url, cassandra_keyspace)

    def urls(redis_db: int) -> dict[str, str]:
        url = redis_clients.with_db(redis_url, redis_db)
        redis_clients.flush(url)
        return {
            "transitory": url,
            "volatile": url,
            "acid": pg_database_url,
            "amorphous": amorphous,
        }

    return urls
