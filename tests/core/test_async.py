"""Given AsyncPersistio, the same API is awaitable and async consumers run on the caller's loop."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import persistio as pio
from tests.models import HOUR, Account, Checkin, Hit


def test_async_api_mirrors_the_sync_one(tmp_path: Path) -> None:
    async def main() -> None:
        async with pio.AsyncPersistio(data_dir=tmp_path) as aio:
            await aio.setup()
            loop = asyncio.get_running_loop()
            seen: list[tuple[Checkin, bool]] = []

            @aio.consumer("notify_friends")
            async def notify(c: Checkin) -> None:
                seen.append((c, asyncio.get_running_loop() is loop))

            c = Checkin(uuid.uuid4(), 11, 4, datetime.now(UTC))
            receipt = await aio.save(c)
            assert "checkins" in receipt.done
            assert await aio.get(Checkin, "checkins", id=c.id) == c
            await aio.save_many([Checkin(uuid.uuid4(), 11, 4, datetime.now(UTC))])
            await aio.drain(timeout=10)
            assert seen[0] == (c, True)
            assert len(await aio.query(Checkin, "activity", user_id=11)) == 2

            async with aio.transaction() as tx:
                tx.save(Account(5, "eve", 3))
            assert await aio.get(Account, "accounts", id=5) == Account(5, "eve", 3)
            # a delayed save in a transaction: the row now, its stream entry when due
            async with aio.transaction() as tx:
                tx.save(Account(6, "fay", 4), delay=timedelta(hours=1))
            assert await aio.get(Account, "accounts", id=6) == Account(6, "fay", 4)
            assert (await aio.status())["streams"]["account_events"]["delayed"] == 1
            assert (await aio.status())["backends"]["acid"]["healthy"]

    asyncio.run(main())


def test_async_count_reads(tmp_path: Path) -> None:
    async def main() -> None:
        async with pio.AsyncPersistio(data_dir=tmp_path) as aio:
            at = datetime(2026, 5, 1, 9, 15, tzinfo=UTC)
            await aio.save_many([Hit(1, "home", at), Hit(2, "home", at, weight=2)])
            await aio.drain(timeout=10)
            since = datetime(2026, 5, 1, 9, tzinfo=UTC)
            assert (
                await aio.count(Hit, "hit_events", since=since, until=since + HOUR, page="home")
                == 3
            )
            series = await aio.counts(
                Hit,
                "hit_events",
                since=since,
                until=since + 2 * HOUR,
                granularity=HOUR,
                page="home",
            )
            assert series == [(since, 3), (since + HOUR, 0)]

    asyncio.run(main())
