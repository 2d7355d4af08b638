"""Given a worker SIGKILLed in the middle of a batch, other workers take its items over.

An item a worker claimed stays pending in its consumer group under that worker's name; once it
has been idle for the stream's visibility timeout, the next claim of any worker takes it over
(XAUTOCLAIM). So a dead worker's items are handled again after about that long, by the others,
and nothing else is: the only repeats are items of the batch it was in when it died (at least
once for consumers; deferred tasks, whose effects are last-write-wins, land once).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from persistio.model.partitions import partition_names
from tests import redis_clients
from tests.conftest import keyspace_url, psycopg_conninfo
from tests.faults.checks import acid_rows

REPO = Path(__file__).resolve().parents[2]
ITEMS = 400


def _worker(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "persistio.cli", "worker", "tests.integration.takeover_app:store"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pending_of(client: Any, pid: int) -> dict[str, list[bytes]]:
    """Entry ids each partition has pending under a consumer of process ``pid``."""
    found: dict[str, list[bytes]] = {}
    for name in partition_names("chores", 3):
        rows = client.xpending_range(f"pio:{{{name}}}", "persistio", "-", "+", 1000)
        mine = [r["message_id"] for r in rows if f"-{pid}-" in r["consumer"].decode()]
        if mine:
            found[name] = mine
    return found


def _env(urls: dict[str, str], data: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PERSISTIO_DATA_DIR": str(data), **urls}


def _kill_mid_batch(worker: subprocess.Popen[str], raw: Any, key: str) -> float:
    """SIGKILL ``worker`` once it has handled 20 items (within its first batch of 50)."""
    deadline = time.monotonic() + 60
    while raw.llen(key) < 20:
        assert time.monotonic() < deadline, "the first worker handled nothing"
        assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)
    return time.time()


def _until_done(store: Any, workers: list[subprocess.Popen[str]], raw: Any, key: str) -> None:
    deadline = time.monotonic() + 180
    while len({e.split(b":")[0] for e in raw.lrange(key, 0, -1)}) < ITEMS or any(
        q["pending"] for q in store.status()["queues"].values()
    ):
        assert time.monotonic() < deadline, store.status()["streams"]
        assert all(w.poll() is None for w in workers), "a worker died"
        time.sleep(0.2)
    while store.status()["streams"]["chores"]["pending"]:
        assert time.monotonic() < deadline, store.status()["streams"]
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_workers_batch_is_taken_over_after_the_visibility_timeout(
    redis_url: str,
    pg_database_url: str,
    cassandra_url: str,
    cassandra_keyspace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis_db = redis_clients.with_db(redis_url, 5)
    urls = {
        "PERSISTIO_TRANSITORY_URL": redis_db,
        "PERSISTIO_VOLATILE_URL": redis_db,
        "PERSISTIO_ACID_URL": pg_database_url,
        "PERSISTIO_AMORPHOUS_URL": keyspace_url(cassandra_url, cassandra_keyspace),
    }
    redis_clients.flush(redis_db)
    env = _env(urls, tmp_path)
    for name, value in urls.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PERSISTIO_DATA_DIR", str(tmp_path))
    from tests.integration import takeover_app

    run = uuid.uuid4().hex[:8]
    key = f"{takeover_app.EFFECTS_KEY}:{run}"
    raw = redis_clients.client(redis_db)
    store = takeover_app.store
    store.setup()
    # Given 400 chores: a stream entry each (3 partitions) and a deferred acid row (HIGH)
    store.save_many(takeover_app.Chore(n, run) for n in range(ITEMS))

    # When a worker is SIGKILLed in the middle of a batch (it handles 20 ms an item)
    first = _worker(env, tmp_path)
    others: list[subprocess.Popen[str]] = []
    try:
        killed_at = _kill_mid_batch(first, raw, key)
        orphaned = _pending_of(raw, first.pid)
        done_before = raw.llen(key)
        assert orphaned, "the killed worker held no claimed item"
        # And two other workers share the partitions
        others = [_worker(env, tmp_path) for _ in range(2)]
        _until_done(store, others, raw, key)
    finally:
        for w in others:
            w.send_signal(signal.SIGTERM)
        outputs = [w.communicate(timeout=60)[1] for w in others]
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=30)
    assert [w.returncode for w in others] == [0, 0], outputs

    # Then every chore was handled, and the only repeats are items the dead worker had claimed
    records = [e.decode().split(":") for e in raw.lrange(key, 0, -1)]
    counts = Counter(int(n) for n, _, _ in records)
    assert sorted(counts) == list(range(ITEMS))
    orphan_ids = {i for ids in orphaned.values() for i in ids}
    repeated = {n for n, c in counts.items() if c > 1}
    assert repeated, "no item of the killed batch was handled again"
    assert len(repeated) <= len(orphan_ids) <= 50
    assert max(counts.values()) <= 2
    # And its items were taken over by the others only once their visibility timeout had passed
    taken_over = [
        float(t)
        for n, pid, t in records[done_before:]
        if int(n) in repeated and int(pid) != first.pid
    ]
    assert taken_over
    assert min(taken_over) >= killed_at + takeover_app.VISIBILITY - 1.0
    assert not _pending_of(raw, first.pid), "the dead worker still owns entries"
    # And the deferred rows landed once each, nothing is pending, nothing was dead-lettered
    assert acid_rows(psycopg_conninfo(pg_database_url), "chore_rows") == Counter(range(ITEMS))
    status = store.status()
    assert status["streams"]["chores"] == {"pending": 0, "oldest_age_s": None, "dead_letters": 0}
    assert status["dead_letters"] == 0
    raw.close()
    store.close()
