"""Given a real deployment, an outage drill of each tier loses nothing and says what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest

import persistio as pio
from persistio.ops.drill import run_drill

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def real_store(
    redis_url: str,
    pg_database_url: str,
    cassandra_url: str,
    cassandra_keyspace: str,
    tmp_path: Path,
) -> pio.Persistio:
    hosts = cassandra_url.split("://", 1)[1].split("/", 1)[0]
    redis_db = f"{redis_url.rsplit('/', 1)[0]}/9"
    import redis

    redis.Redis.from_url(redis_db).flushdb()
    return pio.Persistio(
        transitory=redis_db,
        volatile=redis_db,
        acid=pg_database_url,
        amorphous=f"cassandra://{hosts}/{cassandra_keyspace}",
        data_dir=tmp_path,
    )


@pytest.mark.parametrize(
    ("tier", "expect"),
    [
        ("transitory", lambda r: r.buffered >= r.acked > 0 and r.replayed == r.buffered),
        ("volatile", lambda r: r.dropped == r.acked > 0 and r.buffered == 0),
        ("acid", lambda r: r.refused == r.attempted > 0 and r.acked == 0),
        ("amorphous", lambda r: r.buffered > 0 and r.replayed == r.buffered),
    ],
)
def test_drill_converges_with_nothing_lost(
    real_store: pio.Persistio, tier: str, expect: object
) -> None:
    # When a drill opens the tier's circuit for a second while saving
    with real_store:
        report = run_drill(real_store, tier, seconds=1.0, rate=200)

    # Then every acknowledged save is in every store its intents name, and the counters fit
    # the tier's outage policy (buffer and replay, drop, or refuse)
    assert report.ok, report.text()
    assert report.lost == report.duplicated == 0
    assert expect(report), report.text()  # type: ignore[operator]


def test_drill_command_prints_a_report(tmp_path: Path) -> None:
    # Given an embedded store in a module
    (tmp_path / "drill_app.py").write_text(
        f"import persistio as pio\nstore = pio.Persistio(data_dir={str(tmp_path / 'data')!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    # When the drill command runs on the amorphous tier
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "persistio.cli",
            "drill",
            "drill_app:store",
            "--tier",
            "amorphous",
            "--seconds",
            "1",
            "--json",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then it reports a converged drill and exits 0
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["lost"] == 0
    assert report["acked"] > 0


def test_bad_drill_arguments_are_refused(tmp_path: Path) -> None:
    with pio.Persistio(data_dir=tmp_path) as store:
        with pytest.raises(pio.ValidationError, match="tier='bogus'"):
            run_drill(store, "bogus", 1.0)
        with pytest.raises(pio.ValidationError, match="seconds=0"):
            run_drill(store, "acid", 0)
        assert store.status()["buffered"] == 0


@pio.persist(pio.Acid("drill_bystander_rows", key=("n",), priority=pio.LOW))
class Bystander(msgspec.Struct, frozen=True):
    n: int


def test_a_drill_touches_nothing_of_the_application(real_store: pio.Persistio) -> None:
    # Given the application's deferred tasks queued, and its worker running on the same queues
    with real_store:
        real_store.setup()
        for n in range(300):
            real_store.save(Bystander(n))
        before = real_store.status()
        worker = threading.Thread(target=real_store.run_worker, daemon=True)
        worker.start()
        try:
            # When a drill opens the amorphous circuit and saves beside it
            report = run_drill(real_store, "amorphous", seconds=1.0, rate=100)
        finally:
            deadline = time.monotonic() + 30
            while real_store.status()["queues"]["low"]["pending"]:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            real_store.stop_worker()
            worker.join(30)

        # Then the drill converged on its own, and the application's tasks were all applied by
        # its worker: none taken, spooled or dropped by the drill; its circuits never opened
        assert report.ok, report.text()
        assert report.buffered > 0
        after = real_store.status()
        assert after["buffered"] == before["buffered"]
        assert after["spool"]["depth"] == 0
        assert after["dropped"] == before["dropped"]
        assert all(b["circuit_opened"] == 0 for b in after["backends"].values())
        assert all(real_store.get(Bystander, "drill_bystander_rows", n=n) for n in range(300))
