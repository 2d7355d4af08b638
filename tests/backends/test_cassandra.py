"""The Cassandra amorphous backend, checked against what Cassandra really holds.

Every assertion about stored data reads it back with the raw driver (``raw_cassandra``): column
types and clustering order from ``system_schema``, ``WRITETIME``/``TTL`` of the blob, the rows.
Tables are created once per module (Cassandra DDL is slow) in the session's own keyspace.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from cassandra.cluster import Session

from persistio.backends.base import Document, Options, TableSpec
from persistio.backends.cassandra.backend import CassandraDocuments, from_url, parse_url
from persistio.errors import BackendUnavailable, ConfigError, PersistioError, ValidationError
from persistio.model.codec import INT64_MAX, INT64_MIN, Column

OPTIONS = Options(data_dir=Path("unused"), connect_timeout=5.0, request_timeout=10.0)


class Row(NamedTuple):
    key: tuple[Any, ...]  # partition values, then order values
    payload: bytes
    ts: int


def write(store: CassandraDocuments, spec: TableSpec, rows: list[Row]) -> list[bool]:
    return store.write([Document(spec, r.key, r.payload, r.ts) for r in rows])


HOUR = 3600


def _spec(name: str, key: dict[str, str], order: dict[str, str], **kw: Any) -> TableSpec:
    columns = tuple(Column(n, k, False) for n, k in {**key, **order}.items())  # type: ignore[arg-type]
    return TableSpec(name, columns, tuple(key), tuple(order), **kw)


ACTIVITY = _spec("be_activity", {"userId": "int"}, {"at": "datetime"}, ttl_seconds=HOUR)
TYPED = _spec(
    "typed",
    {"s": "str", "i": "int"},
    # "by" is a CQL keyword: only a quoted identifier can name such a field
    {"b": "bool", "d": "date", "u": "uuid", "dec": "decimal", "by": "bytes", "dt": "datetime"},
)
NOTES = _spec("be_notes", {"name": "str"}, {"seq": "int"})
FLEETING = _spec("be_fleeting", {"k": "int"}, {}, ttl_seconds=2)
TABLES = (ACTIVITY, TYPED, NOTES, FLEETING)


def _now_us() -> int:
    return time.time_ns() // 1000


def _us(value: datetime) -> int:
    delta = value.replace(tzinfo=value.tzinfo or UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _url_for(cassandra_url: str, keyspace: str, query: str = "") -> str:
    netloc = urlsplit(cassandra_url).netloc
    return f"cassandra://{netloc}/{keyspace}" + (f"?{query}" if query else "")


@pytest.fixture(scope="module")
def store(cassandra_url: str, cassandra_keyspace: str) -> Iterator[CassandraDocuments]:
    backend = from_url(_url_for(cassandra_url, cassandra_keyspace), OPTIONS, "amorphous")
    backend.setup(TABLES)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def raw(raw_cassandra: Session, cassandra_keyspace: str) -> Session:
    raw_cassandra.set_keyspace(cassandra_keyspace)
    return raw_cassandra


def test_setup_creates_typed_tables_clustered_newest_first(
    store: CassandraDocuments, raw: Session, cassandra_keyspace: str
) -> None:
    # Given setup() ran for the module's tables (fixture); When system_schema is read
    rows = raw.execute(
        "SELECT column_name, kind, position, type, clustering_order FROM system_schema.columns "
        "WHERE keyspace_name = %s AND table_name = 'typed'",
        (cassandra_keyspace,),
    )
    found = {r.column_name: (r.kind, r.position, r.type, r.clustering_order) for r in rows}
    # Then partition and clustering columns are typed, clustered DESC, with the blob beside them
    assert found == {
        "s": ("partition_key", 0, "text", "none"),
        "i": ("partition_key", 1, "bigint", "none"),
        "b": ("clustering", 0, "boolean", "desc"),
        "d": ("clustering", 1, "date", "desc"),
        "u": ("clustering", 2, "uuid", "desc"),
        "dec": ("clustering", 3, "decimal", "desc"),
        "by": ("clustering", 4, "blob", "desc"),
        "dt": ("clustering", 5, "bigint", "desc"),  # microseconds: a timestamp keeps only ms
        "object": ("regular", -1, "blob", "none"),
    }
    # And the field's case is kept (quoted identifiers)
    cols = raw.execute(
        "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s "
        "AND table_name = 'be_activity'",
        (cassandra_keyspace,),
    )
    assert {r.column_name for r in cols} == {"userId", "at", "object"}


def test_setup_is_idempotent_and_refuses_a_changed_key(store: CassandraDocuments) -> None:
    # Given the tables exist; When setup runs again, Then nothing fails
    store.setup(TABLES)
    # When an intent of the same name now declares another partition type
    changed = _spec("be_notes", {"name": "int"}, {"seq": "int"})
    # Then setup says so instead of leaving writes to fail later
    with pytest.raises(PersistioError, match=r"be_notes exists with columns"):
        store.setup([changed])


def test_setup_creates_the_keyspace_with_the_url_replication(
    cassandra_url: str, raw_cassandra: Session
) -> None:
    # Given a keyspace that does not exist and a URL naming the data center
    name = f"persistio_t_ks_{secrets.token_hex(3)}"
    backend = from_url(
        _url_for(cassandra_url, name, "replication_factor=1&dc=datacenter1&consistency=ONE"),
        OPTIONS,
        "amorphous",
    )
    try:
        # When setup runs with no tables
        backend.setup([])
        # Then the keyspace exists with NetworkTopologyStrategy in that data center
        row = raw_cassandra.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (name,)
        ).one()
        assert row is not None
        assert row.replication["class"].endswith("NetworkTopologyStrategy")
        assert row.replication["datacenter1"] == "1"
    finally:
        backend.close()
        raw_cassandra.execute(f"DROP KEYSPACE IF EXISTS {name}")


def test_write_sets_writetime_and_remaining_ttl(store: CassandraDocuments, raw: Session) -> None:
    # Given a row written 100 s ago (a deferred task) under retain = 1 hour
    ts = _now_us() - 100_000_000
    at = datetime.fromtimestamp(ts / 1e6, UTC)
    # When it is written now
    write(store, ACTIVITY, [Row((7, at), b"payload", ts)])
    # Then Cassandra holds it at its write timestamp, expiring 1 hour after it was saved
    row = raw.execute(
        'SELECT "userId", at, object, WRITETIME(object) AS wt, TTL(object) AS ttl FROM be_activity '
        'WHERE "userId" = 7'
    ).one()
    assert row is not None
    assert (row.userId, row.at, row.object, row.wt) == (7, _us(at), b"payload", ts)
    assert HOUR - 100 - 5 <= row.ttl <= HOUR - 100 + 1


def test_an_older_write_never_overwrites_a_newer_one(
    store: CassandraDocuments, raw: Session
) -> None:
    # Given the newest version of a row
    ts = _now_us()
    at = datetime(2024, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC)
    write(store, ACTIVITY, [Row((8, at), b"new", ts)])
    # When an older version is replayed (alone, and in a batch after the newest)
    write(store, ACTIVITY, [Row((8, at), b"old", ts - 1)])
    write(store, ACTIVITY, [Row((8, at), b"new", ts), Row((8, at), b"older", ts - 5)])
    # Then the newest stays, at its own write time
    row = raw.execute(
        'SELECT object, WRITETIME(object) AS wt FROM be_activity WHERE "userId" = 8'
    ).one()
    assert row is not None
    assert (row.object, row.wt) == (b"new", ts)
    assert store.get(ACTIVITY, (8, at)) == b"new"


def test_query_is_newest_first_and_limited_and_get_reads_one(store: CassandraDocuments) -> None:
    # Given ten rows of one partition written out of order, µs apart, and one of another user
    base = datetime(2025, 1, 1, tzinfo=UTC)
    ats = [base + timedelta(microseconds=i) for i in (3, 0, 9, 1, 7, 2, 8, 4, 6, 5)]
    ts = _now_us()
    write(store, ACTIVITY, [Row((9, at), f"{at.microsecond}".encode(), ts) for at in ats])
    write(store, ACTIVITY, [Row((10, base), b"other", ts)])
    # When the partition is queried
    # Then it comes newest first (µs keep rows apart), limited, and only that partition
    assert store.query(ACTIVITY, (9,), 4) == [b"9", b"8", b"7", b"6"]
    assert len(store.query(ACTIVITY, (9,), 100)) == 10
    assert store.query(ACTIVITY, (11,), 5) == []
    # And get reads one row by its full key, or None
    assert store.get(ACTIVITY, (9, base + timedelta(microseconds=3))) == b"3"
    assert store.get(ACTIVITY, (9, base + timedelta(microseconds=10))) is None


def test_retain_expires_the_row(store: CassandraDocuments, raw: Session) -> None:
    # Given a row under retain = 2 s, written 1 s after it was saved
    write(store, FLEETING, [Row((1,), b"soon gone", _now_us() - 1_000_000)])
    ttl = raw.execute("SELECT TTL(object) AS ttl FROM be_fleeting WHERE k = 1").one()
    assert ttl is not None
    assert 1 <= ttl.ttl <= 2  # what is left of retain, rounded up
    # When its absolute expiry passes; Then it is gone
    deadline = time.monotonic() + 5
    while store.get(FLEETING, (1,)) is not None:
        assert time.monotonic() < deadline, "a row past its retain still reads back"
        time.sleep(0.2)
    assert raw.execute("SELECT object FROM be_fleeting WHERE k = 1").one() is None


def test_a_late_write_already_past_retain_is_skipped(
    store: CassandraDocuments, raw: Session
) -> None:
    # Given a write saved 10 s ago under retain = 2 s (a replay from the spool), and a fresh one
    now = _now_us()
    rows = [Row((2,), b"expired", now - 10_000_000), Row((3,), b"fresh", now)]
    # When both are written
    write(store, FLEETING, rows)
    # Then only the fresh one exists: the late one is never resurrected
    assert raw.execute("SELECT object FROM be_fleeting WHERE k = 2").one() is None
    assert store.get(FLEETING, (3,)) == b"fresh"


ODD_TEXT = ["it's", 'say "hi"', "a; DROP TABLE typed; --", "ünïcødé ☃ 🎉", "", "\x00nul"]


@pytest.mark.parametrize("text", ODD_TEXT)
def test_values_round_trip_as_data(store: CassandraDocuments, raw: Session, text: str) -> None:
    # Given a key of every kind, with awkward text and the extremes of each range
    u = uuid.uuid4()
    dt = datetime(1969, 7, 20, 20, 17, 40, 123_457, tzinfo=timezone(timedelta(hours=-5)))
    for i in (INT64_MIN, INT64_MAX):
        key = (text or "x", i, False, date(1, 1, 1), u, Decimal("-1.10"), b"\x00'\"", dt)
        if text:
            key = (text, i, True, date(9999, 12, 31), u, Decimal("1E+30"), text.encode(), dt)
        payload = f"{text}|{i}".encode()
        # When it is written
        write(store, TYPED, [Row(key, payload, _now_us())])
        # Then Cassandra holds exactly those values, and get/query find the row by them
        row = raw.execute(
            'SELECT b, d, u, dec, "by", dt, object FROM typed WHERE s = %s AND i = %s', key[:2]
        ).one()
        assert row is not None
        assert (row.b, row.d.date(), row.u, row.dec, row.by) == key[2:7]
        assert str(row.dec) == str(key[5])  # the scale is kept, not just the value
        assert (row.dt, row.object) == (_us(dt), payload)
        assert store.get(TYPED, key) == payload
        assert store.query(TYPED, key[:2], 5) == [payload]


def test_empty_text_in_clustering_and_naive_datetimes(store: CassandraDocuments) -> None:
    # Given an empty text and an empty blob in clustering columns, and a naive datetime (= UTC)
    naive = datetime(2024, 2, 29, 23, 59, 59, 999_999)
    key = ("empty", 1, True, date(2024, 1, 1), uuid.UUID(int=0), Decimal(0), b"", naive)
    # When written; Then the same instant, aware, finds it: naive datetimes are taken as UTC
    write(store, TYPED, [Row(key, b"e", _now_us())])
    assert store.get(TYPED, (*key[:7], naive.replace(tzinfo=UTC))) == b"e"


def test_an_empty_single_partition_key_is_refused(store: CassandraDocuments) -> None:
    # Given Cassandra cannot store an empty (single-column) partition key
    # When one is written, Then nothing is written and the error says why
    with pytest.raises(ValidationError, match="empty partition key"):
        write(store, NOTES, [Row(("", 1), b"x", _now_us())])
    # And reading one finds nothing instead of failing
    assert store.get(NOTES, ("", 1)) is None
    assert store.query(NOTES, ("",), 10) == []


def test_an_int_past_bigint_is_a_validation_error(store: CassandraDocuments) -> None:
    # When a key does not fit a bigint; Then ValidationError, before anything is sent
    with pytest.raises(ValidationError, match="does not fit"):
        write(store, NOTES, [Row(("big", INT64_MAX + 1), b"x", _now_us())])


def test_a_batch_is_written_concurrently(store: CassandraDocuments, raw: Session) -> None:
    # Given 500 rows of one partition; When written as one batch
    ts = _now_us()
    write(store, NOTES, [Row(("batch", n), b"%d" % n, ts) for n in range(500)])
    # Then all of them are there, newest (highest seq) first
    count = raw.execute("SELECT COUNT(*) AS n FROM be_notes WHERE name = 'batch'").one()
    assert count is not None
    assert count.n == 500
    assert store.query(NOTES, ("batch",), 2) == [b"499", b"498"]


def test_an_unmet_consistency_level_is_an_outage(
    store: CassandraDocuments, cassandra_url: str, cassandra_keyspace: str
) -> None:
    # Given a single node, and an intent asking for consistency TWO
    spec = TableSpec(NOTES.name, NOTES.columns, NOTES.key, NOTES.order, consistency="TWO")
    # When it writes; Then Cassandra's Unavailable surfaces as BackendUnavailable
    with pytest.raises(BackendUnavailable) as caught:
        write(store, spec, [Row(("two", 1), b"x", _now_us())])
    assert caught.value.tier == "amorphous"
    # And the URL's default consistency applies to every table that sets none
    url = _url_for(cassandra_url, cassandra_keyspace, "consistency=three")
    backend = from_url(url, OPTIONS, "amorphous")
    try:
        with pytest.raises(BackendUnavailable):
            backend.get(NOTES, ("x", 1))
        assert store.get(NOTES, ("x", 1)) is None  # the default LOCAL_QUORUM works with RF=1
    finally:
        backend.close()


def test_close_then_use_connects_again(store: CassandraDocuments) -> None:
    # Given a closed store; When it is used again; Then it reconnects
    store.close()
    store.ping()
    assert store.query(ACTIVITY, (9,), 1) == [b"9"]


def test_an_unreachable_server_is_backend_unavailable() -> None:
    # Given a URL with a password on a port nothing listens on, and a short timeout
    opts = Options(data_dir=Path("unused"), connect_timeout=0.5, request_timeout=0.5)
    started = time.monotonic()
    backend = from_url("cassandra://app:s3cret@127.0.0.1:1/app", opts, "amorphous")
    # Then building it did no I/O, and its repr hides the password
    assert "s3cret" not in repr(backend)
    try:
        # When it is used; Then BackendUnavailable, fast, tier named, password never shown
        calls: list[Callable[[], object]] = [
            backend.ping,
            lambda: backend.setup([NOTES]),
            lambda: backend.get(NOTES, ("a", 1)),
        ]
        for call in calls:
            with pytest.raises(BackendUnavailable) as caught:
                call()
            assert caught.value.tier == "amorphous"
            assert "s3cret" not in str(caught.value)
            assert "127.0.0.1:1" in str(caught.value)
        assert time.monotonic() - started < 10
    finally:
        backend.close()


@pytest.mark.parametrize(
    "url",
    [
        "cassandra://127.0.0.1:9042",  # no keyspace
        "cassandra://127.0.0.1:9042/",
        "cassandra://127.0.0.1:9042/Bad-Name",
        'cassandra://127.0.0.1:9042/ks"; DROP KEYSPACE x',
        "cassandra://127.0.0.1:9042/" + "k" * 49,
        "cassandra:///ks",  # no host
        "cassandra://127.0.0.1:99999/ks",
        "cassandra://127.0.0.1:port/ks",
        "cassandra://a,,b/ks",
        "cassandra://127.0.0.1/ks?replicas=3",  # unknown option
        "cassandra://127.0.0.1/ks?replication=3&replication_factor=2",  # they disagree
        "cassandra://127.0.0.1/ks?replication=x",
        "cassandra://127.0.0.1/ks?replication_factor=0",
        "cassandra://127.0.0.1/ks?replication_factor=1&replication_factor=2",
        "cassandra://127.0.0.1/ks?consistency=SOME",
        "cassandra://127.0.0.1/ks?dc=x'y",
        "cassandra://127.0.0.1/ks?protocol_version=9",
        "cassandra://127.0.0.1/ks#frag",
        "cassandra://u:s3cret@127.0.0.1/BAD",
    ],
)
def test_a_malformed_url_is_a_config_error_naming_the_setting(url: str) -> None:
    # When a bad URL is given; Then ConfigError names the setting and never shows a password
    with pytest.raises(ConfigError, match=r"^PERSISTIO_AMORPHOUS_URL: ") as caught:
        from_url(url, OPTIONS, "PERSISTIO_AMORPHOUS_URL")
    assert "s3cret" not in str(caught.value)


def test_url_hosts_ports_options_and_credentials_parse() -> None:
    # When a full URL is parsed
    endpoint, password = parse_url(
        "cassandra://app:p%40ss@h1,h2:9043,[::1]:9044,h3/ks_1?consistency=one&protocol_version=5",
        "amorphous",
    )
    # Then each host has its port (a host without one takes the last host's, else 9042)
    assert endpoint.hosts == (("h1", 9042), ("h2", 9043), ("::1", 9044), ("h3", 9042))
    assert (endpoint.keyspace, endpoint.consistency, endpoint.protocol_version) == (
        "ks_1",
        "ONE",
        5,
    )
    assert (endpoint.username, password, endpoint.replication_factor, endpoint.dc) == (
        "app",
        "p@ss",
        1,
        None,
    )
    # And "h1,h2:9043" (the form scripts/services prints) puts both hosts on 9043
    assert parse_url("cassandra://h1,h2:9043/ks", "x")[0].hosts == (("h1", 9043), ("h2", 9043))


@pytest.mark.parametrize(
    ("query", "replication", "consistency"),
    [
        ("", 1, "LOCAL_ONE"),
        ("?replication=2", 2, "LOCAL_ONE"),
        ("?replication=3", 3, "LOCAL_QUORUM"),
        ("?replication_factor=5", 5, "LOCAL_QUORUM"),
        ("?replication=3&replication_factor=3", 3, "LOCAL_QUORUM"),
        ("?replication=3&consistency=all", 3, "ALL"),
    ],
)
def test_replication_sets_the_default_consistency(
    query: str, replication: int, consistency: str
) -> None:
    # Given a URL with (or without) replication; Then writes default to LOCAL_QUORUM from 3
    # replicas (2 of 3 acknowledge, one node may be down), else LOCAL_ONE (a quorum of 1 or 2
    # would be every replica), unless the URL asks for another level
    endpoint, _ = parse_url(f"cassandra://h1,h2,h3/ks{query}", "x")
    assert (endpoint.replication_factor, endpoint.consistency) == (replication, consistency)


def test_connecting_picks_protocol_v5_and_logs_no_downgrade(
    cassandra_url: str, cassandra_keyspace: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a URL without protocol_version
    url = _url_for(cassandra_url, cassandra_keyspace)
    assert parse_url(url, "amorphous")[0].protocol_version == 5
    caplog.set_level(logging.DEBUG, "cassandra")
    # When a backend connects and answers
    backend = from_url(url, OPTIONS, "amorphous")
    try:
        backend.ping()
    finally:
        backend.close()
    # Then the driver negotiated nothing: no "Downgrading core protocol version" warning
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("cassandra")]
    assert [m for m in messages if "Downgrading" in m] == []
    assert any("protocol version: 5" in m for m in messages), messages
