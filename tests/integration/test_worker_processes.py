"""Given 20,000 deferred tasks and 3 worker processes, every effect lands exactly once.

The queues and the consumer's stream are partitioned (see ``worker_app``): on a Redis Cluster
(``make test-cluster``) the three workers share partitions that live on three masters.
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

import persistio as pio
from tests import redis_clients
from tests.conftest import keyspace_url

REPO = Path(__file__).resolve().parents[2]
TASKS = 20_000


@pytest.mark.slow
def test_three_workers_apply_every_effect_once(
    redis_url: str,
    pg_database_url: str,
    cassandra_url: str,
    cassandra_keyspace: str,
    raw_cassandra: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis_db = redis_clients.with_db(redis_url, 4)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PERSISTIO_TRANSITORY_URL": redis_db,
        "PERSISTIO_VOLATILE_URL": redis_db,
        "PERSISTIO_ACID_URL": pg_database_url,
        "PERSISTIO_AMORPHOUS_URL": keyspace_url(cassandra_url, cassandra_keyspace),
        "PERSISTIO_DATA_DIR": str(tmp_path),
    }
    redis_clients.flush(redis_db)
    effects = redis_clients.client(redis_db)
    for name, value in env.items():
        if name.startswith("PERSISTIO_"):
            monkeypatch.setenv(name, value)
    from tests.integration import worker_app

    run = uuid.uuid4().hex[:8]
    # Given 20,000 saves whose three intents are all deferred (HIGH, NORMAL, LOW)
    store = worker_app.store
    store.setup()
    for start in range(0, TASKS, 1000):
        store.save_many(worker_app.Fanout(n, n % 64, run) for n in range(start, start + 1000))
    assert store.status()["queues"]["low"]["pending"] == TASKS

    # When three worker processes share the queues (their logs go to files: a pipe nobody reads
    # until the end would block a worker once it has logged 64 KiB)
    logs = [tmp_path / f"worker-{i}.log" for i in range(3)]
    handles = [log.open("w") for log in logs]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "persistio.cli", "worker", "tests.integration.worker_app:store"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )
        for handle in handles
    ]
    for handle in handles:
        handle.close()  # each worker holds its own copy
    try:
        deadline = time.monotonic() + 300
        key = f"{worker_app.EFFECTS_KEY}:{run}"
        while effects.llen(key) < TASKS or _pending(store):
            assert time.monotonic() < deadline, f"workers too slow: {store.status()['queues']}"
            assert all(w.poll() is None for w in workers), "a worker died"
            time.sleep(0.5)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
        outputs = [log.read_text() for log in logs]

    # Then every worker exited cleanly on SIGTERM
    assert [w.returncode for w in workers] == [0, 0, 0], [o[-3000:] for o in outputs]
    # And no store warned about how it was written to (e.g. Cassandra on oversized batches)
    assert not [o for o in outputs if "Server warning" in o], [o[-3000:] for o in outputs]
    # And each effect happened exactly once: consumer deliveries, acid rows, Cassandra rows
    seen = Counter(int(n) for n in effects.lrange(key, 0, -1))
    assert len(seen) == TASKS
    assert max(seen.values()) == 1
    import psycopg

    conninfo = pg_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT n) FROM fanout_rows").fetchone()
    assert rows == (TASKS, TASKS)
    raw_cassandra.set_keyspace(cassandra_keyspace)
    docs = raw_cassandra.execute("SELECT count(*) FROM fanout_docs").one()[0]
    assert docs == TASKS
    assert store.status()["dead_letters"] == 0
    store.close()


def _pending(store: pio.Persistio) -> bool:
    status = store.status()
    return any(q["pending"] for q in status["queues"].values())
