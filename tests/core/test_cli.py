"""Given a module that defines a store, the CLI runs its worker and prints its status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import persistio as pio
from tests.models import Checkin

REPO = Path(__file__).resolve().parents[2]


def write_app(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "cli_app.py").write_text(
        "import persistio as pio\n"
        "import tests.models  # declares the models\n"
        f"store = pio.Persistio(data_dir={str(tmp_path / 'data')!r})\n"
    )
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}


def persistio_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persistio.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_prints_json_and_a_table(tmp_path: Path) -> None:
    env = write_app(tmp_path)
    done = persistio_cli("status", "cli_app:store", "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert set(status["backends"]) == {"transitory", "volatile", "acid", "amorphous"}
    assert status["queues"]["normal"]["pending"] == 0

    table = persistio_cli("status", "cli_app:store", env=env, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "tasks.high" in table.stdout
    assert "stream notify_friends" in table.stdout


def test_a_bad_target_is_a_clear_error(tmp_path: Path) -> None:
    env = write_app(tmp_path)
    done = persistio_cli("status", "cli_app", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "module:attribute" in done.stderr
    done = persistio_cli("status", "cli_app:nothing", env=env, cwd=tmp_path)
    assert "has no 'nothing'" in done.stderr


def test_worker_runs_deferred_tasks_and_stops_on_sigterm(tmp_path: Path) -> None:
    # Given a worker process on an embedded store
    env = write_app(tmp_path)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "persistio.cli",
            "worker",
            "cli_app:store",
            "--poll-interval",
            "0.01",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # When this process saves check-ins whose activity intent is deferred
        with pio.Persistio(data_dir=tmp_path / "data") as store:
            store.setup()
            user = uuid.uuid4().int % 10**9
            saved = [Checkin(uuid.uuid4(), user, 1, datetime.now(UTC)) for _ in range(20)]
            store.save_many(saved)
            deadline = time.monotonic() + 30
            while len(store.query(Checkin, "activity", user_id=user, limit=100)) < 20:
                assert time.monotonic() < deadline, "the worker process did not run the tasks"
                time.sleep(0.05)
            # Then the worker wrote every one, and the queue is empty
            assert store.status()["queues"]["normal"]["pending"] == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    # And SIGTERM ends it cleanly
    assert worker.returncode == 0, out


def test_status_text_lists_the_warnings(tmp_path: Path) -> None:
    # Given the status of a store (embedded: nothing risky) and one with a warning added
    from persistio.cli import format_status

    with pio.Persistio(data_dir=tmp_path) as store:
        status = store.status()
    assert status["warnings"] == []
    assert "warning:" not in format_status(status)
    # Then the text form prints each warning on a line of its own
    risky = {**status, "warnings": ["amorphous backend x: keyspace ks has replication 1"]}
    assert "warning: amorphous backend x: keyspace ks has replication 1" in format_status(risky)
