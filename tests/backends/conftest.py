"""Fixtures shared by the Redis backend tests: one database of their own, flushed per test."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis

DB = 2  # the Redis backend tests' own database


@pytest.fixture
def db_url(redis_url: str) -> str:
    return urlsplit(redis_url)._replace(path=f"/{DB}").geturl()


@pytest.fixture
def raw(db_url: str) -> Iterator[redis.Redis]:
    """A raw client on the backend tests' database, flushed before the test."""
    client = redis.Redis.from_url(db_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()
