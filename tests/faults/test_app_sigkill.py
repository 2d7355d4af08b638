"""The application process is SIGKILLed mid-run; a new process on the same data dir drains it.

A child process saves in a loop while Cassandra is unreachable for it (a closed port), so every
REALTIME amorphous write goes to the spool, and writes its ledger: one line per save that
returned, flushed and fsync'd. A spooled write is acknowledged, so it is durable: after the kill,
a store in this process on the same spool, with the real Cassandra, must land every acked write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .checks import Deliveries, assert_exactly_once, cassandra_rows, cassandra_session
from .load import SpoolWatch, StoreFactory, read_spool
from .metrics import Metrics
from .models import CrashDoc
from .servers import REPO, PrivateRedis, port_answers

pytestmark = pytest.mark.slow

CLOSED_PORT = 1  # nothing listens there: every Cassandra call of the child is refused
ACKS_BEFORE_KILL = 250
RATE = 100.0  # saves/s in the child

CHILD = """
import json, os, sys, time

import persistio as pio
from MODELS import CrashDoc

args = json.loads(sys.argv[1])
store = pio.Persistio(
    transitory=args["redis"],
    volatile=args["redis"],
    amorphous=args["amorphous"],
    data_dir=args["data"],
    realtime_deadline=1.0,
)
period = 1.0 / args["rate"]
stop_at = time.monotonic() + args["limit"]  # bounded: it stops by itself if nobody kills it
with open(args["ledger"], "a", encoding="utf-8") as ledger:
    n = 0
    while time.monotonic() < stop_at:
        t0 = time.monotonic()
        receipt = store.save(CrashDoc(n, n % 8))
        line = {
            "n": n,
            "write_id": receipt.write_id,
            "at": time.time(),
            "latency": time.monotonic() - t0,
            "done": receipt.done,
            "deferred": receipt.deferred,
            "buffered": receipt.buffered,
        }
        ledger.write(json.dumps(line) + "\\n")
        ledger.flush()
        os.fsync(ledger.fileno())  # acked = on disk, before the next save
        n += 1
        time.sleep(period)
store.close()
"""


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: a line cut by the kill is a save whose ack was never recorded."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def acked(lines: list[dict[str, Any]], intent: str) -> set[int]:
    states = ("done", "deferred", "buffered")
    return {int(x["n"]) for x in lines if any(intent in x[s] for s in states)}


def test_killed_app_spool_is_replayed_by_a_new_process(
    private_redis: PrivateRedis,
    amorphous_url: str,
    cassandra_keyspace: str,
    make_store: StoreFactory,
    tmp_path: Path,
    metrics: Metrics,
) -> None:
    data, ledger_path = tmp_path / "data", tmp_path / "ledger.jsonl"
    script = tmp_path / "crash_app.py"
    # the same model module in both processes: the replaying one must know the spooled model
    script.write_text(CHILD.replace("MODELS", CrashDoc.__module__), encoding="utf-8")
    assert not port_answers(CLOSED_PORT)
    args = {
        "redis": private_redis.url(),
        "amorphous": f"cassandra://127.0.0.1:{CLOSED_PORT}/{cassandra_keyspace}",
        "data": str(data),
        "ledger": str(ledger_path),
        "rate": RATE,
        "limit": 30.0,
    }
    # Given an application saving in a loop while Cassandra is unreachable for it
    child = subprocess.Popen(
        [sys.executable, str(script), json.dumps(args)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 25
        while len(read_ledger(ledger_path)) < ACKS_BEFORE_KILL:
            assert child.poll() is None, f"the app died: {child.communicate()[1].decode()}"
            assert time.monotonic() < deadline, "the app acked too few saves"
            time.sleep(0.05)
        # When it is SIGKILLed mid-run
        assert child.poll() is None
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    lines = read_ledger(ledger_path)
    last = max(int(x["n"]) for x in lines)
    in_flight = {last + 1}  # saved (maybe spooled) when the kill came, its ack not recorded
    left = read_spool(data / "spool.db")
    assert left.depth >= len(acked(lines, "fault_crash_hot"))

    # And a new process opens a store on the same data dir, with the real Cassandra, and drains
    with SpoolWatch(data / "spool.db") as watch:
        restored = time.monotonic()
        store = make_store(
            transitory=private_redis.url(),
            volatile=private_redis.url(),
            amorphous=amorphous_url,
            data_dir=data,
            realtime_deadline=1.5,
        )
        events = Deliveries()
        store.consumer("fault_crash_events", batch=256)(events)
        store.drain(timeout=60)
        drained = time.monotonic() - restored

    # Then every acked write is in its store exactly once: the spooled hot rows, the queued
    # cold ones, and the stream entries
    assert store.status()["spool"]["depth"] == 0
    with cassandra_session(amorphous_url) as session:
        hot = cassandra_rows(session, cassandra_keyspace, "fault_crash_hot")
        cold = cassandra_rows(session, cassandra_keyspace, "fault_crash_cold")
    assert all("fault_crash_hot" in x["buffered"] for x in lines)  # Cassandra was unreachable
    assert_exactly_once("fault_crash_hot", acked(lines, "fault_crash_hot"), hot, may_also=in_flight)
    assert_exactly_once(
        "fault_crash_cold", acked(lines, "fault_crash_cold"), cold, may_also=in_flight
    )
    assert_exactly_once(
        "fault_crash_events", acked(lines, "fault_crash_events"), events.counts, may_also=in_flight
    )

    peak, rate, lag = watch.replay("amorphous", restored)
    child_span = max(1e-9, float(lines[-1]["at"]) - float(lines[0]["at"]))
    metrics.record(
        {
            "app_acked_saves": len(lines),
            "app_ack_rate": round((len(lines) - 1) / child_span, 1),
            "app_max_latency_s": round(max(float(x["latency"]) for x in lines), 3),
            "spooled_at_kill": left.depth,
            "replayed_tasks": peak,
            "replay_rate_tasks_s": round(rate, 1),
            "spool_peak_after_restore_s": round(lag, 2),
            "drained_after_s": round(drained, 2),
        }
    )
