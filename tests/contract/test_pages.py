"""Given an amorphous partition of any size, pages() reads it whole, newest first, resumably."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import persistio as pio
from tests.models import Checkin, FeedItem, Oddity, Profile

from .conftest import store_urls
from .test_save_and_read import make_profile

ROWS = 1_234  # past any single page, and not a multiple of the page size


def oddity(name: str, n: int) -> Oddity:
    return Oddity(name, n, text=str(n), blob=b"", extra={})


@pytest.fixture
def partition(store: pio.Persistio) -> str:
    """A partition of ROWS rows, saved through the deferred path."""
    name = f"p'{{;%{uuid.uuid4().hex[:8]}"
    store.save_many([oddity(name, n) for n in range(ROWS)])
    store.drain(timeout=60)
    return name


def test_pages_read_a_whole_partition_newest_first(store: pio.Persistio, partition: str) -> None:
    # When the partition is read in pages of 100
    pages = list(store.pages(Oddity, "odd_docs", page_size=100, name=partition))

    # Then every row comes once, newest (largest order value) first, 100 per page but the last
    assert [len(p) for p in pages] == [100] * 12 + [34]
    assert [o.n for p in pages for o in p] == list(range(ROWS - 1, -1, -1))
    assert all(isinstance(p, pio.Page) and p.cursor for p in pages[:-1])
    # and nothing follows the last page
    if pages[-1].cursor is not None:
        assert list(store.pages(Oddity, "odd_docs", cursor=pages[-1].cursor, name=partition)) == []
    # and the first page is what query() returns
    assert pages[0] == store.query(Oddity, "odd_docs", limit=100, name=partition)


def test_a_cursor_resumes_after_its_page_in_another_store(
    store: pio.Persistio, make_store: Any, partition: str
) -> None:
    # Given the cursor of the third page, handed to a client as text
    pages = store.pages(Oddity, "odd_docs", page_size=250, name=partition)
    third = [next(pages) for _ in range(3)][-1]
    assert isinstance(third.cursor, str)

    # When another store (another process) resumes with it
    other: pio.Persistio = make_store()
    rest = list(other.pages(Oddity, "odd_docs", page_size=500, cursor=third.cursor, name=partition))

    # Then it reads exactly the rows after that page
    assert [o.n for p in rest for o in p] == list(range(ROWS - 751, -1, -1))


def test_pages_order_datetimes_across_time_zones(store: pio.Persistio) -> None:
    # Given check-ins whose times carry different UTC offsets
    user = uuid.uuid4().int % 10**9
    base = datetime(2026, 3, 1, 12, tzinfo=UTC)
    zones = [timezone(timedelta(hours=h)) for h in (-7, 0, 5, 9)]
    saved = [
        Checkin(uuid.uuid4(), user, 1, (base + timedelta(minutes=7 * i)).astimezone(zones[i % 4]))
        for i in range(11)
    ]
    store.save_many(saved)
    store.drain(timeout=30)

    # When they are read three at a time
    found = [
        c for page in store.pages(Checkin, "activity", page_size=3, user_id=user) for c in page
    ]

    # Then they come newest first by instant, each once, equal to what was saved
    assert found == sorted(saved, key=lambda c: c.at, reverse=True)


def test_pages_refuse_bad_arguments(store: pio.Persistio, partition: str) -> None:
    first = next(store.pages(Oddity, "odd_docs", page_size=10, name=partition))
    assert first.cursor is not None
    bad: list[tuple[dict[str, Any], str]] = [
        ({"page_size": 0}, "page_size=0"),
        ({"page_size": True}, "page_size=True"),
        ({"cursor": "not a cursor"}, "not a cursor of this intent"),
        ({"cursor": first.cursor[:-4] + "AAAA"}, "not a cursor of this intent"),
    ]
    for options, message in bad:
        with pytest.raises(pio.ValidationError, match=message):
            store.pages(Oddity, "odd_docs", name=partition, **options)
    # a cursor of another intent
    user = uuid.uuid4().int % 10**9
    store.save(make_profile(user))
    store.drain(timeout=30)
    with pytest.raises(pio.ValidationError, match="not a cursor of this intent"):
        store.pages(Profile, "profile_feed", cursor=first.cursor, user_id=user)
    with pytest.raises(pio.ValidationError, match="reads amorphous intents"):
        store.pages(Oddity, "odd_rows", name=partition)
    with pytest.raises(pio.ValidationError, match="exactly the key fields"):
        store.pages(Oddity, "odd_docs", page_size=10)
    # and an empty partition has no page
    assert list(store.pages(Oddity, "odd_docs", name=f"{partition}-empty")) == []


def test_projected_reads_are_typed_and_checked(store: pio.Persistio) -> None:
    # Given a profile whose feed intent stores a FeedItem projection
    user = uuid.uuid4().int % 10**9
    profile = make_profile(user)
    store.save(profile)
    store.drain(timeout=30)
    item = FeedItem(user, profile.updated, f"{profile.name} updated their profile")

    # Then each read with as_type returns the projected type
    feed: list[FeedItem] = store.query(Profile, "profile_feed", as_type=FeedItem, user_id=user)
    assert feed == [item]
    key = {"user_id": user, "at": profile.updated}
    assert store.get(Profile, "profile_feed", as_type=FeedItem, **key) == item
    assert store.get_many(Profile, "profile_feed", [key], as_type=FeedItem) == [item]
    pages = list(store.pages(Profile, "profile_feed", as_type=FeedItem, user_id=user))
    assert pages == [[item]]
    # and the model itself is a valid as_type of an intent that stores it
    assert store.get(Profile, "profiles", as_type=Profile, user_id=user) == profile

    # When as_type names another type than the intent stores, it is refused
    with pytest.raises(pio.ValidationError, match=r"as_type=Profile.*stores FeedItem"):
        store.query(Profile, "profile_feed", as_type=Profile, user_id=user)


def test_async_pages(request: pytest.FixtureRequest, backend_kind: str, tmp_path: Path) -> None:
    urls: dict[str, Any] = store_urls(request, backend_kind)
    name = f"async-{uuid.uuid4().hex[:8]}"

    async def main() -> list[list[int]]:
        async with pio.AsyncPersistio(**urls, data_dir=tmp_path) as aio:
            await aio.setup()
            await aio.save_many([oddity(name, n) for n in range(25)])
            await aio.drain(timeout=30)
            return [
                [o.n for o in page]
                async for page in aio.pages(Oddity, "odd_docs", page_size=10, name=name)
            ]

    assert asyncio.run(main()) == [
        list(range(24, 14, -1)),
        list(range(14, 4, -1)),
        list(range(4, -1, -1)),
    ]
