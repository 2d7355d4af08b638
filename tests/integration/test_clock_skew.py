"""The hybrid logical clock: a save made after another process's save wins in every store, even
when that process's host clock is ahead (two processes, one under faketime)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

import persistio as pio

REPO = Path(__file__).resolve().parents[2]
FAKETIME = shutil.which("faketime")


@pio.persist(
    pio.Acid("skew_rows", key=("k",), priority=pio.REALTIME),
    pio.Volatile("skew_cache", key=("k",), ttl=timedelta(hours=1), priority=pio.REALTIME),
    pio.Amorphous("skew_docs", partition=("k",), order=(), priority=pio.REALTIME),
)
class Skewed(msgspec.Struct, frozen=True):
    k: str
    by: str


INTENTS = {"skew_rows", "skew_cache", "skew_docs"}
CLOCK_REDIS_DB = 9  # this suite's own Redis database: the shared clock starts empty


@pytest.fixture
def make_store(real_store_urls: Callable[[int], dict[str, str]]) -> Iterator[Any]:
    """Stores on the real servers, each with the data dir it is given (its spool)."""
    urls = real_store_urls(CLOCK_REDIS_DB)
    made: list[pio.Persistio] = []

    def make(**options: Any) -> pio.Persistio:
        store = pio.Persistio(**{**urls, **options})
        made.append(store)
        store.setup()
        return store

    yield make
    for store in made:
        store.close()


AHEAD = """
import json, os, sys
sys.path.insert(0, {repo!r})
import persistio as pio
from tests.integration.test_clock_skew import Skewed

store = pio.Persistio(**{urls!r}, data_dir={data!r})
store.setup()
receipt = store.save(Skewed({key!r}, "ahead"))
print(json.dumps({{"done": sorted(receipt.done), "ts": store.status()["clock"]["high"]}}))
sys.stdout.flush()
if {close!r}:
    store.close()  # shares its clock
else:
    os._exit(0)  # gone before sharing anything: others learn its clock only from what it wrote
"""


def save_from_a_host_ahead(
    store: pio.Persistio, key: str, data: Path, ahead: timedelta, *, close: bool
) -> int:
    """Save ``key`` from another process whose clock is ``ahead``; its write timestamp."""
    if FAKETIME is None:
        pytest.fail("faketime is missing: scripts/services installs it (apt-get install faketime)")
    urls = {t.value: u for t, u in store.urls.items()}
    code = AHEAD.format(repo=str(REPO), urls=urls, data=str(data), key=key, close=close)
    offset = f"+{int(ahead.total_seconds())}s"
    run = subprocess.run(
        [FAKETIME, "-f", offset, sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(result["done"]) == INTENTS, result
    ts = int(result["ts"])
    assert ts > time.time_ns() // 1000 + int(ahead.total_seconds() * 1e6) // 2, "not skewed"
    return ts


def assert_every_store_holds(store: pio.Persistio, key: str, by: str) -> None:
    for intent in sorted(INTENTS):
        assert store.get(Skewed, intent, k=key) == Skewed(key, by), intent


def test_a_later_save_wins_over_a_host_whose_clock_is_ahead(
    make_store: Any, tmp_path: Path
) -> None:
    # Given a process on a host two minutes ahead saved a key and closed
    here = make_store(data_dir=tmp_path / "here")
    ahead_ts = save_from_a_host_ahead(
        here, "shared", tmp_path / "ahead", timedelta(minutes=2), close=True
    )

    # When a process with the right clock starts (setup) and saves the same key afterwards
    later = make_store(data_dir=tmp_path / "later")
    receipt = later.save(Skewed("shared", "later"))

    # Then its save is the newer one everywhere: written, not superseded
    assert set(receipt.done) == INTENTS
    assert not receipt.superseded
    assert_every_store_holds(later, "shared", "later")
    assert later.status()["clock"]["high"] > ahead_ts


def test_a_stamp_read_back_moves_the_clock(make_store: Any, tmp_path: Path) -> None:
    # Given a process two minutes ahead saved a key and vanished without sharing its clock
    here = make_store(data_dir=tmp_path / "here")
    ahead_ts = save_from_a_host_ahead(
        here, "read", tmp_path / "ahead", timedelta(minutes=2), close=False
    )

    # When another process reads that key, then saves it
    assert here.get(Skewed, "skew_rows", k="read") == Skewed("read", "ahead")
    receipt = here.save(Skewed("read", "after reading"))

    # Then the save is stamped after what it read, and wins in every store
    assert set(receipt.done) == INTENTS
    assert not receipt.superseded
    assert_every_store_holds(here, "read", "after reading")
    clock = here.status()["clock"]
    assert clock["high"] > ahead_ts
    assert clock["followed"] >= 1


def test_a_restart_after_the_clock_stepped_back_stamps_above_what_it_wrote(
    make_store: Any, tmp_path: Path
) -> None:
    # Given a process saved a key while its host's clock was two minutes ahead, and closed
    first = make_store(data_dir=tmp_path / "here")
    ahead_ts = save_from_a_host_ahead(
        first, "restart", tmp_path / "here", timedelta(minutes=2), close=True
    )

    # When the clock is stepped back (the real one) and a process restarts on the same data dir
    restarted = make_store(data_dir=tmp_path / "here")
    receipt = restarted.save(Skewed("restart", "after restart"))

    # Then its first save is stamped above everything it wrote before
    assert set(receipt.done) == INTENTS
    assert not receipt.superseded
    assert_every_store_holds(restarted, "restart", "after restart")
    assert restarted.status()["clock"]["high"] > ahead_ts


def test_a_clock_too_far_ahead_is_not_followed_and_losing_saves_say_so(
    make_store: Any, tmp_path: Path
) -> None:
    # Given a process on a host two hours ahead (beyond max_clock_skew) saved a key and closed
    here = make_store(data_dir=tmp_path / "here", max_clock_skew=timedelta(minutes=5))
    seen: list[dict[str, Any]] = []
    here.on("clock_ignored", lambda _event, fields: seen.append(dict(fields)))
    save_from_a_host_ahead(here, "far", tmp_path / "ahead", timedelta(hours=2), close=True)

    # When this process reads it and saves the key
    assert here.get(Skewed, "skew_rows", k="far") == Skewed("far", "ahead")
    receipt = here.save(Skewed("far", "behind"))

    # Then the clock did not jump two hours; the save lost, and the receipt and status say so
    status = here.status()
    assert status["clock"]["high"] < time.time_ns() // 1000 + 60_000_000
    assert status["clock"]["ignored"] >= 1
    assert seen
    assert seen[0]["ahead_seconds"] > 3600
    # (Cassandra resolves last-write-wins itself and tells no writer it lost: amorphous writes
    # are blind, so only the acid and volatile ones can say superseded)
    assert set(receipt.superseded) == {"skew_rows", "skew_cache"}
    assert set(receipt.done) == {"skew_docs"}
    assert {status["superseded"].get(i) for i in ("skew_rows", "skew_cache")} == {1}
    assert_every_store_holds(here, "far", "ahead")
