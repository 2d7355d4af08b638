"""Given ``persistio worker``, its start-up log says what it serves and what it leaves waiting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REDIS_DB = 3  # this suite's own database


def write_app(tmp_path: Path, urls: dict[str, str]) -> dict[str, str]:
    (tmp_path / "startup_app.py").write_text(
        "import json, os\n"
        "import persistio as pio\n"
        "from tests.newcomer_models import Signup\n"
        "store = pio.Persistio(**json.loads(os.environ['APP_URLS']),"
        f" data_dir={str(tmp_path / 'data')!r})\n"
        "@store.consumer('evts', name='email')\n"
        "def send(s: Signup) -> None:\n"
        "    pass\n"
    )
    return {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
        "APP_URLS": json.dumps(urls),
    }


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persistio.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(params=["embedded", "real"])
def app_urls(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "embedded":
        return {}
    real: dict[str, Any] = request.getfixturevalue("real_store_urls")(REDIS_DB)
    urls = dict(real)
    # a password the log must never show (PostgreSQL on loopback trusts the user anyway)
    urls["acid"] = urls["acid"].replace("://persistio@", "://persistio:sekret@")
    return urls


def test_worker_logs_what_it_serves_and_warns_about_unconsumed_streams(
    tmp_path: Path, app_urls: dict[str, Any]
) -> None:
    # Given an app whose worker consumes the email group only, and saved signups
    env = write_app(tmp_path, app_urls)
    saved = subprocess.run(
        [
            sys.executable,
            "-c",
            "from startup_app import store, Signup\n"
            "store.setup()\n"
            "store.save_many([Signup(i, 'a@b.c') for i in range(4)])\n"
            "store.close()\n",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert saved.returncode == 0, saved.stderr

    # When its worker starts
    worker = subprocess.Popen(
        [sys.executable, "-m", "persistio.cli", "worker", "startup_app:store"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    guard = threading.Timer(60, worker.kill)  # a worker that never logs fails, not hangs
    guard.start()
    lines: list[str] = []
    try:
        assert worker.stderr is not None
        for line in worker.stderr:
            lines.append(line)
            if "no consumer of this process reads" in line:
                break
    finally:
        guard.cancel()
        worker.send_signal(signal.SIGTERM)
        try:
            _, rest = worker.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            worker.kill()  # never leave a worker behind, claiming from the test servers
            _, rest = worker.communicate()
    err = "".join(lines) + rest
    assert worker.returncode == 0, err

    # Then it logged its URLs (masked), its absolute data directory, its consumers, and the
    # SMS stream whose entries nobody in it consumes
    assert "sekret" not in err
    assert f"data directory: {tmp_path / 'data'}" in err
    assert "consumers: evts~email" in err
    assert "no consumer of this process reads: evts~sms (4)" in err
    if app_urls:
        assert "acid=postgresql+psycopg://persistio:***@" in err
    else:
        assert f"transitory=sqlite:///{tmp_path / 'data' / 'transitory.db'}" in err


def test_the_cli_warns_when_its_data_directory_is_empty(tmp_path: Path) -> None:
    # Given an embedded app whose data directory does not exist yet
    env = write_app(tmp_path, {})

    # When status is asked for twice (the first run creates the files)
    first = cli("status", "startup_app:store", env=env, cwd=tmp_path)
    second = cli("status", "startup_app:store", env=env, cwd=tmp_path)

    # Then the first run warns that it found no data, and prints the absolute directory
    assert first.returncode == 0, first.stderr
    assert f"the data directory {tmp_path / 'data'} held no spool or tables" in first.stderr
    assert "PERSISTIO_DATA_DIR" in first.stderr
    assert f"data directory: {tmp_path / 'data'}" in first.stdout
    assert "held no spool" not in second.stderr
