"""Given a CLI target that is not a store, the CLI says so in one line; a factory works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def write_app(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "target_app.py").write_text(
        "import persistio as pio\n"
        "from tests.models import Checkin\n"
        f"DATA = {str(tmp_path / 'data')!r}\n"
        "def make_store():\n"
        "    return pio.Persistio(data_dir=DATA)\n"
        "def make_with(url):\n"
        "    return pio.Persistio(data_dir=DATA)\n"
        "def broken():\n"
        "    raise RuntimeError('no config file')\n"
        "number = 3\n"
    )
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}


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


@pytest.mark.parametrize(
    ("attribute", "said"),
    [
        ("Checkin", "is the class Checkin, not a store"),
        ("number", "is a int, not a Persistio store"),
        ("make_with", "is a function that needs arguments"),
        ("broken", "calling it raised RuntimeError: no config file"),
    ],
)
def test_a_target_that_is_not_a_store_is_one_line(
    tmp_path: Path, attribute: str, said: str
) -> None:
    env = write_app(tmp_path)
    done = cli("status", f"target_app:{attribute}", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("persistio: ")
    assert said in lines[0]


def test_a_factory_target_is_called(tmp_path: Path) -> None:
    env = write_app(tmp_path)
    done = cli("setup", "target_app:make_store", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "acid.db").exists()
