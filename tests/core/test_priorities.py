"""Given a backlog of 100k LOW tasks, a HIGH task is not delayed by more than one worker poll."""

from __future__ import annotations

from pathlib import Path

import persistio as pio
from tests.models import HighWork, LowWork


def test_low_backlog_never_delays_high_work(tmp_path: Path) -> None:
    with pio.Persistio(data_dir=tmp_path, worker_batch=256) as store:
        store.setup()
        # Given 100,000 deferred LOW tasks queued
        receipts = store.save_many(LowWork(i % 97, i) for i in range(100_000))
        assert receipts[-1].deferred == ("low_backlog",)
        assert store.status()["queues"]["low"]["pending"] == 100_000

        # And one LOW batch already taken by a worker poll
        assert store.step()

        # When a HIGH task arrives
        store.save(HighWork(1, "now"))
        assert store.get(HighWork, "urgent", id=1) is None

        # Then the very next poll runs it, ahead of the 99,744 LOW tasks still queued
        assert store.step()
        assert store.get(HighWork, "urgent", id=1) == HighWork(1, "now")
        queues = store.status()["queues"]
        assert queues["high"]["pending"] == 0
        assert queues["low"]["pending"] == 100_000 - 256
