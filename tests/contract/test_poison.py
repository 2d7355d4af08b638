"""Poison items never block or kill: an item that cannot be applied is set aside with its reason,
everything behind it keeps flowing, and neither a worker nor ``drain()`` raises its error."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import msgspec

import persistio as pio
from tests import redis_clients

REPO = Path(__file__).resolve().parents[2]


@pio.persist(
    pio.Acid("poison_rows", key=("id",), on_outage="buffer"),
    pio.Acid("poison_later", key=("id",), priority=pio.HIGH),
)
class PoisonRow(msgspec.Struct, frozen=True):
    id: int
    note: str


def inject(store: pio.Persistio, stream: str, payload: bytes) -> None:
    """Add an entry to a stream as another client would (the raw client, not persistio)."""
    url = store.urls[pio.Tier.TRANSITORY]
    if url.startswith("redis"):
        client = redis_clients.client(url)
        client.xadd(f"pio:{{{stream}}}", {"d": "junk", "p": payload, "t": repr(time.time())})
        client.close()
        return
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO items (stream, dedup, payload, enqueued_at, visible_at) "
            "VALUES (?, 'junk', ?, ?, ?)",
            (stream, payload, time.time(), time.time()),
        )


def test_an_undecodable_task_is_set_aside_and_the_rest_flows(make_store: Any) -> None:
    # Given a HIGH task queue holding an entry nobody can decode, ahead of a good task
    store = make_store()
    inject(store, "tasks.high", b"\xc1 not msgpack")
    store.save(PoisonRow(1, "good"))

    # When the store drains (a worker's step, as run_worker does)
    store.drain(timeout=30)

    # Then the good task landed, the bad entry is one dead letter, and nothing is pending
    assert store.get(PoisonRow, "poison_later", id=1) == PoisonRow(1, "good")
    status = store.status()
    assert status["queues"]["high"]["pending"] == 0
    assert status["queues"]["high"]["dead_letters"] == 1


GHOST_APP = """
import sys, msgspec
sys.path.insert(0, {repo!r})
import persistio as pio
from tests.contract.test_poison import PoisonRow

@pio.persist(pio.Acid("poison_ghosts", key=("id",), on_outage="buffer"))
class Ghost(msgspec.Struct, frozen=True):
    id: int

# acid is down for this process: both saves are spooled
store = pio.Persistio(acid="postgresql+psycopg://nobody@127.0.0.1:1/none",
                      data_dir={data!r}, connect_timeout=1, realtime_deadline=2)
assert store.save(Ghost(1)).buffered == ("poison_ghosts",)
assert store.save(PoisonRow(7, "spooled")).buffered == ("poison_rows",)
store.close()
"""


def test_a_spooled_task_of_an_unknown_model_waits_then_is_set_aside(
    make_store: Any, tmp_path: Path
) -> None:
    # Given a spool left by another process: a task of a model this process never imports
    # (a rolling deploy: it was renamed), ahead of a task of a model it knows
    app = GHOST_APP.format(repo=str(REPO), data=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(app)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    # When a store on the same data dir replays it, with a short grace for unknown models
    store = make_store(spool_limits=pio.SpoolLimits(unknown_model_grace=0.5))
    store.drain(timeout=30)

    # Then the known task landed at once; the unknown one waits out its grace, then is set aside
    # naming the model to import, and the spool is empty
    assert store.get(PoisonRow, "poison_rows", id=7) == PoisonRow(7, "spooled")
    deadline = time.monotonic() + 20
    while store.status()["spool"]["depth"]:
        assert time.monotonic() < deadline, store.status()["spool"]
        time.sleep(0.1)
    spool = store.status()["spool"]
    assert spool["dead_letters"] == 1
    assert store.status()["dead_letters"] >= 1
