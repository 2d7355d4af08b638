"""The Cassandra the tests use: writes read back, and TTLs expire."""

from __future__ import annotations

import secrets
import time

import pytest
from cassandra.cluster import Session

pytestmark = pytest.mark.services


def test_write_read_and_ttl(raw_cassandra: Session, cassandra_keyspace: str) -> None:
    table = f"{cassandra_keyspace}.activity_{secrets.token_hex(4)}"
    raw_cassandra.execute(
        f"CREATE TABLE {table} (user_id int, at int, body text, PRIMARY KEY (user_id, at))"
    )
    insert = raw_cassandra.prepare(
        f"INSERT INTO {table} (user_id, at, body) VALUES (?, ?, ?) USING TTL ?"
    )
    select = raw_cassandra.prepare(f"SELECT body, TTL(body) FROM {table} WHERE user_id = ?")

    # Given a row kept for an hour and one kept for a second
    raw_cassandra.execute(insert, (1, 1, "kept", 3600))
    raw_cassandra.execute(insert, (2, 1, "fleeting", 1))
    written = time.monotonic()
    fleeting = raw_cassandra.execute(select, (2,)).one()
    assert fleeting is not None or time.monotonic() - written >= 1

    # Then the first reads back with its TTL set
    body, ttl = raw_cassandra.execute(select, (1,)).one()
    assert body == "kept"
    assert 3500 < ttl <= 3600

    # And the second disappears after its second
    deadline = time.monotonic() + 10
    while raw_cassandra.execute(select, (2,)).one() is not None:
        assert time.monotonic() < deadline, "a row with TTL 1 still reads back after 10s"
        time.sleep(0.2)
    assert raw_cassandra.execute(select, (1,)).one() is not None
