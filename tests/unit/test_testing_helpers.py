"""Given the helpers shipped for users' tests, they build, settle and clean up a store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

import persistio as pio
from persistio.testing import assert_settled, temporary_store
from tests.models import Checkin, Job


def test_temporary_store_settles_and_cleans_up() -> None:
    with temporary_store() as store:
        data_dir = Path(store.urls[pio.Tier.ACID].removeprefix("sqlite:///")).parent
        c = Checkin(uuid.uuid4(), 3, 4, datetime.now(UTC))
        store.save(c)
        status = assert_settled(store)
        assert store.query(Checkin, "activity", user_id=3) == [c]
        assert status["queues"]["normal"]["pending"] == 0
        assert data_dir.exists()
    assert not data_dir.exists()


def test_assert_settled_reports_dead_letters() -> None:
    with temporary_store() as store:
        store.consumer("jobs")(lambda job: 1 / 0)
        store.save(Job(1))
        with pytest.raises(AssertionError, match="dead letters"):
            assert_settled(store)
