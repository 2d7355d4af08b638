"""Amorphous tier on Apache Cassandra: one query-shaped table per intent, via cassandra-driver.

``<keyspace>."<intent>"`` has the ``partition`` fields as typed partition key, the ``order``
fields as clustering columns (``CLUSTERING ORDER BY ... DESC``: newest first) and the object as
msgpack in ``object blob``. Every write is ``INSERT ... USING TIMESTAMP <write ts> AND TTL <rest
of retain>``, so the newest write wins (a replay never overwrites newer data) and ``retain`` is an
absolute expiry, exactly as in ``SQLiteDocuments``.

Column types: int bigint, str text, bool boolean, date date, uuid uuid, decimal decimal, bytes
blob, float double, and datetime **bigint microseconds since the epoch (UTC; a naive datetime is
taken as UTC, as the SQL backends do)**. A CQL ``timestamp`` keeps milliseconds only: two
objects a few microseconds apart would become one row, and a key read back would not equal the
saved one. Microseconds sort like instants and are exact. A table holds only key columns and the
blob, so ``setup`` never needs ``ALTER TABLE ... ADD`` (a primary key cannot change in Cassandra:
a table found with other key columns is reported, never altered).
"""

from __future__ import annotations

import base64
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import cassandra
import cassandra.protocol
from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from persistio.backends.base import (
    INHERITED,
    Contribution,
    CountRanges,
    CountSpec,
    CountValues,
    Document,
    Op,
    Options,
    TableSpec,
    refuse,
)
from persistio.backends.cassandra.counts import CassandraCounts
from persistio.backends.cassandra.folder import Cell
from persistio.backends.cassandra.health import replication_warnings
from persistio.backends.cassandra.requests import Requests, batched
from persistio.backends.stamps import stamped, unstamped
from persistio.config.urls import masked
from persistio.errors import (
    BackendUnavailable,
    ConfigError,
    InDoubt,
    PersistioError,
    ValidationError,
)

TIER = "amorphous"
NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")  # keyspace and table names (intent names)
DC_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # it goes into a CQL string literal
HOST = re.compile(r"[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]")
BLOB = "object"
DEFAULT_PORT = 9042
DEFAULT_DC = "datacenter1"  # what a stock single node reports in system.local
MAX_TTL = 630_720_000  # 20 years: Cassandra refuses a larger TTL
DDL_TIMEOUT = 60.0  # schema changes wait for every node to agree
OPTIONS = ("replication", "replication_factor", "consistency", "dc", "protocol_version")
QUORUM_FROM = 3  # replicas from which writes default to LOCAL_QUORUM (see default_consistency)

_CQL_TYPES = {
    "int": "bigint",
    "str": "text",
    "bool": "boolean",
    "datetime": "bigint",
    "date": "date",
    "uuid": "uuid",
    "decimal": "decimal",
    "bytes": "blob",
    "float": "double",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# sent, and maybe applied by some replicas: a timeout is never "not written"
_MAYBE_WRITTEN: tuple[type[BaseException], ...] = (
    cassandra.OperationTimedOut,
    cassandra.WriteTimeout,
    cassandra.WriteFailure,
)

# Driver errors meaning "the cluster cannot serve us now": callers buffer by on_outage.
# cassandra.RequestExecutionException covers Unavailable, Read/WriteTimeout, Read/WriteFailure;
# the protocol's one covers Overloaded and IsBootstrapping replies.
_OUTAGES: tuple[type[BaseException], ...] = (
    NoHostAvailable,
    cassandra.OperationTimedOut,
    cassandra.RequestExecutionException,
    cassandra.UnresolvableContactPoints,
    cassandra.protocol.RequestExecutionException,
    cassandra.protocol.ServerError,
    ConnectionException,
)


@dataclass(frozen=True)
class Endpoint:
    """What a ``cassandra://`` URL says, parsed and validated; the password is kept apart."""

    hosts: tuple[tuple[str, int], ...]
    keyspace: str
    replication_factor: int = 1
    consistency: str = "LOCAL_ONE"
    dc: str | None = None
    # picked, not negotiated: a negotiation starts above what servers speak and logs a warning
    # for each downgrade, on every connect. Cassandra 4.x and 5.x speak v5; 3.x and ScyllaDB
    # need ?protocol_version=4
    protocol_version: int = 5
    username: str | None = None


def parse_url(url: str, setting: str) -> tuple[Endpoint, str | None]:
    """``cassandra://[user:pw@]h1[:port][,h2[:port]]/keyspace?opts`` -> (Endpoint, password).

    A host without a port takes the last host's port (so ``h1,h2:9043`` is both on 9043), else
    9042. Any problem raises ConfigError naming ``setting``, with the password masked.
    """

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{setting}: {masked(url)}: {why}")

    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise bad(f"not a valid URL ({exc})") from exc
    if parts.scheme.lower() != "cassandra" or parts.fragment:
        raise bad("use cassandra://host[:port][,host[:port]]/keyspace?option=value")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, has_pw, password = userinfo.partition(":")
    keyspace = parts.path.removeprefix("/")
    if not NAME.fullmatch(keyspace):
        raise bad("the path must be a keyspace name matching [a-z][a-z0-9_]{0,47}")
    unknown = sorted(set(query) - set(OPTIONS))
    if unknown or any(len(v) > 1 for v in query.values()):
        raise bad(f"unknown or repeated option(s) in {sorted(query)}; known: {OPTIONS}")
    opts = {k: v[0] for k, v in query.items()}
    given = {opts[k] for k in ("replication", "replication_factor") if k in opts}
    if len(given) > 1:
        raise bad("replication and replication_factor disagree: give one of them")
    rf, proto = next(iter(given), "1"), opts.get("protocol_version")
    if not re.fullmatch(r"[1-9][0-9]?", rf):
        raise bad("replication must be an integer from 1 to 99")
    consistency = opts.get("consistency", default_consistency(int(rf))).upper()
    if consistency not in ConsistencyLevel.name_to_value:
        raise bad(f"consistency={consistency}: use one of {sorted(ConsistencyLevel.name_to_value)}")
    if "dc" in opts and not DC_NAME.fullmatch(opts["dc"]):
        raise bad("dc must be a data center name ([A-Za-z0-9_.-])")
    if proto is not None and proto not in ("3", "4", "5", "6"):
        raise bad("protocol_version must be 3, 4, 5 or 6")
    endpoint = Endpoint(
        hosts=_hosts(hostlist, bad),
        keyspace=keyspace,
        replication_factor=int(rf),
        consistency=consistency,
        dc=opts.get("dc"),
        protocol_version=5 if proto is None else int(proto),
        username=unquote(user) if userinfo else None,
    )
    return endpoint, unquote(password) if has_pw else None


def default_consistency(replication: int) -> str:
    """LOCAL_QUORUM from 3 replicas: a write is on 2 of 3 before it is acknowledged, and a read
    at the same level sees it, while any one node may be down. Below 3 a quorum is every
    replica (one node down would fail every write), so LOCAL_ONE: with 1 replica it is the
    same thing; with 2, one node may be down, but a read may miss a write that reached only
    the other one (ask for LOCAL_QUORUM to trade that availability for read-your-writes)."""
    return "LOCAL_QUORUM" if replication >= QUORUM_FROM else "LOCAL_ONE"


def _hosts(hostlist: str, bad: Callable[[str], ConfigError]) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int | None]] = []
    for item in hostlist.split(","):
        host, port = item, None
        if ":" in item and not item.endswith("]"):  # "[::1]" is a host without a port
            host, _, text = item.rpartition(":")
            if not re.fullmatch(r"[0-9]{1,5}", text) or not 0 < int(text) < 65536:
                raise bad(f"bad port in {item!r}")
            port = int(text)
        if not HOST.fullmatch(host):
            raise bad(f"bad host {host!r}" if host else "a host is missing")
        hosts.append((host.strip("[]"), port))
    fallback = hosts[-1][1] or DEFAULT_PORT
    return tuple((h, p or fallback) for h, p in hosts)


def _quote(name: str) -> str:
    # Field names are Python identifiers; quoting keeps their case and escapes anything else.
    if not name.isidentifier() or name == BLOB:
        raise PersistioError(f"{name!r} cannot be a key column of an amorphous Cassandra table")
    return '"' + name.replace('"', '""') + '"'


def _micros(value: datetime) -> int:
    # Integer arithmetic: a float would round microseconds away for far-off dates.
    delta = (value if value.tzinfo else value.replace(tzinfo=UTC)) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:500] if text else ''}"


class CassandraDocuments:
    """Amorphous backend on Cassandra: query-shaped tables, newest write wins, TTL = retain.

    Thread-safe. Nothing connects until first use, so building a store does no I/O. Writes are
    the driver's asynchronous requests (``write_async``), so a save's Cassandra rows are in flight
    while it writes to the other stores.

    Args:
        url: ``cassandra://[user:password@]host1[:port][,host2[:port]]/keyspace`` with optional
            ``replication`` (or ``replication_factor``; default 1: the keyspace is created with
            it, and ``status()`` warns while it is 1), ``consistency`` (default LOCAL_QUORUM
            from replication 3, else LOCAL_ONE: see ``default_consistency``; per intent
            overridable), ``dc`` (local data center; when given, the keyspace is created with
            NetworkTopologyStrategy {dc: replication}, else SimpleStrategy and the local data
            center is ``datacenter1``) and ``protocol_version`` (default 5: Cassandra 4 and
            5; use 4 for Cassandra 3.x and ScyllaDB).
        options: Connect and request timeouts.
        setting: Names the setting in a ``ConfigError`` for a malformed URL.
    """

    tiers: ClassVar[frozenset[str]] = frozenset({"amorphous"})
    bounded: ClassVar[bool] = True  # every request has a timeout
    concurrent: ClassVar[bool] = True

    def __init__(self, url: str, options: Options, setting: str) -> None:
        self.endpoint, self._password = parse_url(url, setting)
        self._where = masked(url)
        self._options = options
        self._lock = threading.Lock()
        self._cluster: Any = None
        self._session: Any = None
        self._prepared: dict[tuple[Any, ...], Any] = {}
        self._counts = self._new_counts()

    def _new_counts(self) -> CassandraCounts:
        ep = self.endpoint
        return CassandraCounts(
            self._connect,
            self._mapped,
            ep.keyspace,
            ep.consistency,
            ep.dc is not None,
            _quote,
            _cql_type,
            _micros,
            self._options.request_timeout,
        )

    def __repr__(self) -> str:
        return f"CassandraDocuments({self._where!r})"

    # ------------------------------------------------------------ connection ----

    def _connect(self) -> Any:
        with self._lock:
            if self._session is not None:
                return self._session
            ep = self.endpoint
            auth = None
            if ep.username is not None:
                auth = PlainTextAuthProvider(username=ep.username, password=self._password or "")
            profile = ExecutionProfile(
                # token aware: each request goes straight to a replica of its partition
                load_balancing_policy=TokenAwarePolicy(
                    DCAwareRoundRobinPolicy(local_dc=ep.dc or DEFAULT_DC)
                ),
                consistency_level=ConsistencyLevel.name_to_value[ep.consistency],
                request_timeout=self._options.request_timeout,
            )
            cluster = Cluster(
                list(ep.hosts),
                execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                auth_provider=auth,
                connect_timeout=self._options.connect_timeout,
                control_connection_timeout=self._options.connect_timeout,
                protocol_version=ep.protocol_version,
            )
            try:
                self._session = cluster.connect()
            except BaseException:
                cluster.shutdown()  # else its reconnection threads outlive the failure
                raise
            self._cluster = cluster
            return self._session

    @contextmanager
    def _mapped(self, where: str) -> Iterator[None]:
        """The one place driver errors become persistio's (BackendUnavailable on an outage)."""
        try:
            yield
        except _MAYBE_WRITTEN as exc:
            raise InDoubt(
                f"{TIER} backend {self._where} {where}: no answer in time (it may have been "
                f"written): {_short(exc)}",
                tier=TIER,
            ) from exc
        except _OUTAGES as exc:
            raise BackendUnavailable(
                f"{TIER} backend {self._where} {where}: unavailable: {_short(exc)}", tier=TIER
            ) from exc
        except (cassandra.RequestValidationException, cassandra.AuthenticationFailed) as exc:
            raise PersistioError(
                f"{TIER} backend {self._where} {where}: refused: {_short(exc)}"
            ) from exc

    def _statement(self, op: Literal["insert", "get", "query", "page"], spec: TableSpec) -> Any:
        key = (op, spec)
        found = self._prepared.get(key)
        if found is not None:
            return found
        table = f"{_quote_name(self.endpoint.keyspace)}.{_quote_name(spec.name)}"
        names = [_quote(n) for n in (*spec.key, *spec.order)]
        if op == "insert":
            cql = (
                f"INSERT INTO {table} ({', '.join(names)}, {BLOB}) "
                f"VALUES ({', '.join('?' * (len(names) + 1))}) USING TIMESTAMP ? AND TTL ?"
            )
        else:
            used = names if op == "get" else names[: len(spec.key)]
            where = " AND ".join(f"{n} = ?" for n in used)
            order = ", ".join(f"{_quote(n)} DESC" for n in spec.order)
            # a point read also fetches the write timestamp (USING TIMESTAMP set it)
            stamp = f", WRITETIME({BLOB})" if op == "get" else ""
            cql = f"SELECT {BLOB}{stamp} FROM {table} WHERE {where}"
            if op == "query":
                cql += f" ORDER BY {order} LIMIT ?" if order else " LIMIT ?"
            elif op == "page" and order:
                cql += f" ORDER BY {order}"
        prepared = self._connect().prepare(cql)
        # USING TIMESTAMP makes a retried INSERT harmless, so the driver may retry it
        prepared.is_idempotent = True
        level = spec.consistency or self.endpoint.consistency
        prepared.consistency_level = ConsistencyLevel.name_to_value[level]
        with self._lock:
            return self._prepared.setdefault(key, prepared)

    def _bind(self, stmt: Any, spec: TableSpec, key: Sequence[Any], *rest: Any) -> Any:
        """Bind ``key`` (the first len(key) key columns) and ``rest``; ValidationError if bad."""
        kinds = [c.kind for c in _key_columns(spec)][: len(key)]
        values = [_micros(v) if k == "datetime" else v for k, v in zip(kinds, key, strict=True)]
        if len(spec.key) == 1 and values[0] in ("", b""):
            raise ValidationError(f"{spec.name}: Cassandra cannot store an empty partition key")
        try:
            return stmt.bind((*values, *rest))
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. an int past bigint
            raise ValidationError(f"{spec.name}: a key value does not fit: {exc}") from exc

    # ------------------------------------------------------------- contract ----

    def setup(self, tables: Sequence[TableSpec]) -> None:
        """Create the keyspace and one table per spec if missing; check existing ones' keys."""
        ep = self.endpoint
        if ep.dc is None:
            replication = (
                f"'class': 'SimpleStrategy', 'replication_factor': {ep.replication_factor}"
            )
        else:
            replication = f"'class': 'NetworkTopologyStrategy', '{ep.dc}': {ep.replication_factor}"
        keyspace = _quote_name(ep.keyspace)
        ddl = [f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{replication}}}"]
        for spec in tables:
            _check_ttl(spec)
            typed = [f"{_quote(c.name)} {_cql_type(c.kind)}" for c in _key_columns(spec)]
            pk = f"({', '.join(_quote(n) for n in spec.key)})"
            if spec.order:
                pk += ", " + ", ".join(_quote(n) for n in spec.order)
            cql = (
                f"CREATE TABLE IF NOT EXISTS {keyspace}.{_quote_name(spec.name)} "
                f"({', '.join(typed)}, {BLOB} blob, PRIMARY KEY ({pk}))"
            )
            if spec.order:
                order = ", ".join(f"{_quote(n)} DESC" for n in spec.order)
                cql += f" WITH CLUSTERING ORDER BY ({order})"
            ddl.append(cql)
        with self._mapped("setup"):
            session = self._connect()
            for cql in ddl:
                result = session.execute(
                    cql, timeout=max(DDL_TIMEOUT, self._options.request_timeout)
                )
                if not result.response_future.is_schema_agreed:
                    raise BackendUnavailable(
                        f"{TIER} backend {self._where}: schema did not agree", tier=TIER
                    )
            for spec in tables:
                self._check_table(session, spec)

    def _check_table(self, session: Any, spec: TableSpec) -> None:
        # CREATE IF NOT EXISTS keeps a table made for another declaration: say so now, not
        # on the first write.
        rows = session.execute(
            "SELECT column_name, kind, position, type, clustering_order FROM "
            "system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
            (self.endpoint.keyspace, spec.name),
        )
        found = {(r.column_name, r.kind, r.position, r.type, r.clustering_order) for r in rows}
        kinds = {c.name: c.kind for c in _key_columns(spec)}
        wanted = {(BLOB, "regular", -1, "blob", "none")}
        wanted |= {
            (n, "partition_key", i, _cql_type(kinds[n]), "none") for i, n in enumerate(spec.key)
        }
        wanted |= {
            (n, "clustering", i, _cql_type(kinds[n]), "desc") for i, n in enumerate(spec.order)
        }
        if found != wanted:
            raise PersistioError(
                f"{TIER} table {self.endpoint.keyspace}.{spec.name} exists with columns "
                f"{sorted(found)}, but the intent needs {sorted(wanted)}; a primary key cannot "
                "change in Cassandra: drop the table or rename the intent"
            )

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]:
        """Insert each row at its write timestamp, with TTL = what is left of ``retain``."""
        pending = self.write_async(ops, deadline)
        return pending.result(self._remaining(deadline))

    def write_async(self, ops: Sequence[Op], deadline: float | None = None) -> Requests:
        """Send the inserts as asynchronous requests (at most IN_FLIGHT at a time), rows bound
        for the same replica grouped in small unlogged batches (see ``cassandra_requests``)."""
        where = "write to " + ", ".join(sorted({op.table.name for op in ops}))  # type: ignore[union-attr]
        with self._mapped(where):
            session = self._connect()
            now = time.time()
            bound = []
            cells: list[Cell] = []
            for op in ops:
                if type(op) is not Document:
                    if type(op) is not Contribution:
                        raise refuse(self, op)
                    # a pending row's bytes beyond the overhead batched() adds per row: its
                    # name, position, numbers, and key values repeated per partition
                    size = 64 + len(op.contribution)
                    for stmt, cell in self._counts.bind(op, now):
                        bound.append((stmt, size))
                        cells.append(cell)
                    continue
                spec = op.table
                _check_ttl(spec)
                ttl = 0  # 0 = no TTL
                if spec.ttl_seconds is not None:
                    remaining = spec.ttl_seconds - (now - op.ts / 1e6)
                    if remaining <= 0:
                        continue  # a late replay already past its expiry: never resurrect it
                    # rounded up: at most a second late, never expiring before its time
                    ttl = math.ceil(remaining)
                stmt = self._statement("insert", spec)
                bound.append(
                    (self._bind(stmt, spec, op.key, stamped(op), op.ts, ttl), len(op.payload))
                )
            statements = batched(bound, self._cluster.metadata, self.endpoint.keyspace)
            timeout = self._remaining(deadline)
            # written contributions are folded into their rollups off the caller's path
            folder = self._counts.folder
            done = (lambda: folder.mark(cells)) if cells else None
            return Requests(self.mapped, session, statements, len(ops), timeout, where, done)

    # --------------------------------------------------------------- counts ----

    def setup_counts(self, counts: Sequence[CountSpec]) -> None:
        """Create the keyspace and one table per count if missing; check existing ones."""
        self.setup([])
        with self._mapped("setup"):
            timeout = max(DDL_TIMEOUT, self._options.request_timeout)
            self._counts.setup(self._connect(), counts, timeout)

    def read_counts(
        self, count: CountSpec, key: tuple[Any, ...], ranges: CountRanges
    ) -> CountValues:
        """A query per bucket (two while it holds unfolded contributions), run concurrently."""
        return self._counts.read(count, key, ranges)

    def count_stats(self) -> dict[str, Any]:
        return self._counts.folder.stats()

    def _remaining(self, deadline: float | None) -> float:
        if deadline is None:
            return self._options.request_timeout
        return max(0.001, min(self._options.request_timeout, deadline - time.monotonic()))

    def mapped(self, where: str) -> AbstractContextManager[None]:
        """Driver errors of ``where`` as persistio's (for requests answered later)."""
        return self._mapped(where)

    def get(self, table: TableSpec, key: tuple[Any, ...]) -> bytes | None:
        """The stored payload for the full key (partition + order values), or None."""
        stamped = self.get_stamped(table, key)
        return None if stamped is None else stamped[0]

    def get_stamped(self, table: TableSpec, key: tuple[Any, ...]) -> tuple[bytes, int] | None:
        """The stored payload for the full key and its write timestamp, or None."""
        with self._mapped(f"read from {table.name}"):
            stmt = self._statement("get", table)
            if len(key) != len(table.key) + len(table.order):
                raise ValidationError(f"{table.name}: expected the partition and order values")
            try:
                bound = self._bind(stmt, table, key)
            except ValidationError:
                return None  # a key Cassandra could never have stored
            row = self._connect().execute(bound).one()
        return None if row is None else (unstamped(bytes(row[0])), int(row[1]))

    def get_many_stamped(
        self, table: TableSpec, keys: Sequence[tuple[Any, ...]]
    ) -> list[tuple[bytes, int] | None]:
        """Point reads of every key sent at once (the driver's asynchronous requests), so the
        whole batch costs about one round trip; aligned with ``keys``."""
        with self._mapped(f"read from {table.name}"):
            stmt = self._statement("get", table)
            session = self._connect()
            futures: list[Any] = []
            for key in keys:
                if len(key) != len(table.key) + len(table.order):
                    raise ValidationError(f"{table.name}: expected the partition and order values")
                try:
                    bound = self._bind(stmt, table, key)
                except ValidationError:
                    futures.append(None)  # a key Cassandra could never have stored
                    continue
                futures.append(session.execute_async(bound, timeout=self._remaining(None)))
            out: list[tuple[bytes, int] | None] = []
            for future in futures:
                row = None if future is None else future.result().one()
                out.append(None if row is None else (unstamped(bytes(row[0])), int(row[1])))
        return out

    def query(
        self,
        table: TableSpec,
        partition: tuple[Any, ...],
        limit: int,
        *,
        since: Any = None,
        until: Any = None,
        oldest_first: bool = False,
    ) -> list[bytes]:
        """Up to ``limit`` payloads of one partition, newest first by the order columns (or
        oldest first); ``since`` (included) and ``until`` (excluded) bound the first one."""
        with self._mapped(f"read from {table.name}"):
            if len(partition) != len(table.key):
                raise ValidationError(f"{table.name}: expected {len(table.key)} partition values")
            if since is None and until is None and not oldest_first:
                stmt = self._statement("query", table)
                bounds: list[Any] = []
            else:
                shape = (since is not None, until is not None, oldest_first)
                stmt = self._range_statement(table, shape)
                kind = _key_columns(table)[len(table.key)].kind
                bounds = [
                    _micros(v) if kind == "datetime" else v for v in (since, until) if v is not None
                ]
            try:
                bound = self._bind(stmt, table, partition, *bounds, limit)
            except ValidationError:
                return []
            return [unstamped(bytes(r[0])) for r in self._connect().execute(bound)]

    def page(
        self, table: TableSpec, partition: tuple[Any, ...], size: int, after: str | None
    ) -> tuple[list[bytes], str | None]:
        """One page of a partition, newest first, and the driver's paging state to resume
        after it (None once the partition is read to its end)."""
        state = None if after is None else base64.urlsafe_b64decode(after)
        with self._mapped(f"read from {table.name}"):
            stmt = self._statement("page", table)
            if len(partition) != len(table.key):
                raise ValidationError(f"{table.name}: expected {len(table.key)} partition values")
            try:
                bound = self._bind(stmt, table, partition)
            except ValidationError:
                return [], None
            bound.fetch_size = size
            result = self._connect().execute(bound, paging_state=state)
            rows = [unstamped(bytes(r[0])) for r in result.current_rows]
            resume = result.paging_state
        return rows, None if resume is None else base64.urlsafe_b64encode(resume).decode()

    def _range_statement(self, spec: TableSpec, shape: tuple[bool, bool, bool]) -> Any:
        """A partition read bounded on the first clustering column, either way round."""
        key = ("range", spec, shape)
        found = self._prepared.get(key)
        if found is not None:
            return found
        since, until, oldest_first = shape
        table = f"{_quote_name(self.endpoint.keyspace)}.{_quote_name(spec.name)}"
        where = [f"{_quote(n)} = ?" for n in spec.key]
        first = _quote(spec.order[0]) if spec.order else ""
        if since:
            where.append(f"{first} >= ?")
        if until:
            where.append(f"{first} < ?")
        way = "ASC" if oldest_first else "DESC"
        order = ", ".join(f"{_quote(n)} {way}" for n in spec.order)
        cql = f"SELECT {BLOB} FROM {table} WHERE {' AND '.join(where)}"
        cql += f" ORDER BY {order} LIMIT ?" if order else " LIMIT ?"
        prepared = self._connect().prepare(cql)
        level = spec.consistency or self.endpoint.consistency
        prepared.consistency_level = ConsistencyLevel.name_to_value[level]
        with self._lock:
            return self._prepared.setdefault(key, prepared)

    def ping(self) -> None:
        with self._mapped("ping"):
            self._connect().execute("SELECT release_version FROM system.local")

    def warnings(self) -> list[str]:
        """The keyspace's replication: 1 (a node's loss loses data), not what the URL asks
        for, or more than the cluster has nodes (see ``cassandra_health``)."""
        with self._mapped("status"):
            session = self._connect()
            return replication_warnings(session, self._cluster, self.endpoint, self._where)

    def after_fork(self) -> None:
        """In a child process: the driver is not fork-safe. The parent's cluster is set aside
        (never shut down from here: that would close the parent's connections) and the child
        connects again on first use."""
        import cassandra.cluster as driver

        cluster, self._cluster, self._session = self._cluster, None, None
        if cluster is not None:
            INHERITED.append(cluster)
            driver._clusters_for_shutdown.discard(cluster)
        self._lock = threading.Lock()
        self._prepared = {}
        self._counts = self._new_counts()  # its folder's threads stayed in the parent

    def close(self) -> None:
        """Shut the cluster down; a later call connects again (like an Engine's dispose)."""
        self._counts.folder.stop()
        with self._lock:
            cluster, self._cluster, self._session = self._cluster, None, None
            self._prepared.clear()
            self._counts = self._new_counts()
        if cluster is not None:
            cluster.shutdown()


def _quote_name(name: str) -> str:
    # Keyspace and table names are [A-Za-z0-9_] even when quoted; both were validated already.
    if not NAME.fullmatch(name):
        raise PersistioError(f"{name!r} cannot be a Cassandra keyspace or table name")
    return f'"{name}"'


def _check_ttl(spec: TableSpec) -> None:
    if spec.ttl_seconds is not None and not 0 < spec.ttl_seconds <= MAX_TTL:
        raise PersistioError(f"{spec.name}: retain must be 1 s to 20 years (Cassandra's max TTL)")


def _cql_type(kind: str) -> str:
    try:
        return _CQL_TYPES[kind]
    except KeyError:
        raise PersistioError(f"a {kind} field cannot be a Cassandra key column") from None


def _key_columns(spec: TableSpec) -> list[Any]:
    by_name = {c.name: c for c in spec.columns}
    return [by_name[n] for n in (*spec.key, *spec.order)]


def from_url(url: str, options: Options, setting: str) -> CassandraDocuments:
    """The factory named in ``persistio.tiers.registry.REGISTRY`` for ``cassandra://``."""
    return CassandraDocuments(url, options, setting)
