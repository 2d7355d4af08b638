"""The package as a user gets it: the sdist and the wheel build and pass ``twine check``; the
wheel, installed alone into a clean virtual environment, runs the README's quick start and the
tutorial (docs/tutorial.md), command by command, on the embedded defaults.

The tutorial's files come from its ``title="..."`` code blocks, and every command run here must
appear in its text, so the page and this test cannot drift apart.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TUTORIAL = ROOT / "docs" / "tutorial.md"

pytestmark = pytest.mark.slow


def run(
    command: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> str:
    """Run a command; its stdout, or a failure showing everything it printed."""
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


@dataclass(frozen=True)
class Venv:
    """A virtual environment holding the wheel and its core dependencies, nothing else."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def env(self) -> dict[str, str]:
        """The environment of a shell where this venv is activated (and no PERSISTIO_*)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PERSISTIO_", "PYTHON", "VIRTUAL_ENV"))
        }
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.path)
        return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)])
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    [found] = dist.glob("persistio-*-py3-none-any.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    # no pip inside: this project's pip installs into it (--python), which is also quicker
    env = Venv(tmp_path_factory.mktemp("venv"))
    run([sys.executable, "-m", "venv", "--without-pip", str(env.path)])
    pip = [sys.executable, "-m", "pip", "--python", str(env.python), "--disable-pip-version-check"]
    run([*pip, "install", "--quiet", str(wheel)])
    return env


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    # Given the built distributions, Then both are there and their metadata renders on PyPI
    names = sorted(p.name for p in dist.iterdir())
    assert [n.endswith(".whl") for n in names] == [True, False], names
    assert names[1].endswith(".tar.gz"), names
    out = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())])
    assert out.count("PASSED") == 2, out


def test_the_wheel_holds_the_library_only(wheel: Path) -> None:
    # Given the wheel's file list
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()

    # Then it is the package with its type marker and command, and nothing of the repository
    assert "persistio/py.typed" in names
    assert "persistio/__init__.py" in names
    assert all(n.startswith(("persistio/", "persistio-")) for n in names), names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "persistio = persistio.cli:main" in archive.read(entry_points).decode()


def test_the_clean_venv_has_only_the_core_dependencies(venv: Venv) -> None:
    # Given the venv with the wheel installed, Then no driver and no dev tool came with it
    listing = run(
        [sys.executable, "-m", "pip", "--python", str(venv.python), "list", "--format=freeze"]
    )
    installed = {line.split("==")[0].lower() for line in listing.split()}
    assert {"persistio", "msgspec", "tenacity", "sqlalchemy"} <= installed
    assert not installed & {"redis", "psycopg", "cassandra-driver", "pytest", "fastapi"}


def quick_start() -> str:
    """The first Python block after the README's "Quick start" heading."""
    text = README.read_text()
    section = text[text.index("## Quick start") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the README's quick start has no python block"
    return found.group(1)


def test_the_readme_quick_start_runs_from_the_wheel(venv: Venv, tmp_path: Path) -> None:
    # Given the README's quick start as a script, in a folder outside the repository
    script = tmp_path / "quickstart.py"
    script.write_text(quick_start())

    # When the clean venv's Python runs it (embedded defaults: no server)
    out = run([str(venv.python), str(script)], cwd=tmp_path, env=venv.env())

    # Then the consumer ran and the deferred intent was written and read back
    assert "tell the friends of 1" in out
    assert "Checkin(id=UUID(" in out
    assert (tmp_path / ".persistio").is_dir()
    where = run(
        [str(venv.python), "-c", "import persistio; print(persistio.__file__)"],
        cwd=tmp_path,
        env=venv.env(),
    )
    assert Path(where.strip()).is_relative_to(venv.path), where


class Tutorial:
    """The tutorial's folder, with its files written out, and its commands run as it says."""

    def __init__(self, folder: Path, venv: Venv) -> None:
        self.folder = folder
        self.venv = venv
        self.text = TUTORIAL.read_text()
        blocks = re.findall(r'```python title="([^"]+)"\n(.*?)```', self.text, re.DOTALL)
        assert {name for name, _ in blocks} == {"app.py", "checkin.py", "read.py"}
        for name, code in blocks:
            (folder / name).write_text(code)

    def command(self, command: str) -> list[str]:
        assert command in self.text, f"the tutorial does not say {command!r}"
        return ["bash", "-c", command]

    def sh(self, command: str) -> str:
        return run(self.command(command), cwd=self.folder, env=self.venv.env())

    def start(self, command: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(command),
            cwd=self.folder,
            env=self.venv.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def shows(self, output: str) -> None:
        """The tutorial prints ``output`` where it shows this command's result."""
        assert output.strip() in self.text, f"the tutorial does not show:\n{output}"


class Lines:
    """A process's output lines as they come (read by a thread, so waits can time out)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.stdout = process.stdout
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        for line in self.stdout:
            self.queue.put(line.rstrip("\n"))

    def wait_for(self, wanted: set[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"the worker printed {self.seen}, not {wanted - set(self.seen)}"
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.queue.get(timeout=left))

    def close(self) -> None:
        """After the process has exited: the pipe is at its end."""
        self.thread.join(timeout=10)
        self.stdout.close()


def test_the_tutorial_runs_from_the_wheel(venv: Venv, tmp_path: Path) -> None:
    # Given the tutorial's folder and files, and its venv (the clean one, with the wheel)
    tutorial = Tutorial(tmp_path, venv)
    assert "worker" in tutorial.sh("persistio --help")

    # When its steps run: setup, two check-ins
    assert tutorial.sh("persistio setup app:open_store").strip() == "setup done"
    for user in (1, 2):
        out = tutorial.sh(f"python checkin.py {user} 7")
        # Then each save says what it wrote now and what it deferred, as the page shows
        assert out == "done:     notify_friends, here_now, checkins\ndeferred: activity\n"
        tutorial.shows(f"$ python checkin.py {user} 7\n{out}")

    # And the status shows the deferred tasks and the stream items waiting
    status = tutorial.sh("persistio status app:open_store")
    assert re.search(r"^tasks\.normal\s+2\s", status, re.MULTILINE), status
    assert re.search(r"^stream notify_friends\s+2\s", status, re.MULTILINE), status

    # When a worker runs, and a third check-in arrives while it does
    worker = tutorial.start("persistio worker app:open_store")
    lines = Lines(worker)
    try:
        first = {f"tell the friends of user {u}: at venue 7" for u in (1, 2)}
        lines.wait_for(first)
        tutorial.sh("python checkin.py 3 8")
        lines.wait_for({"tell the friends of user 3: at venue 8"})
        # Then the worker printed what the tutorial says; Ctrl-C stops it cleanly
        for line in (*first, "tell the friends of user 3: at venue 8"):
            tutorial.shows(line)
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=30) == 0, lines.seen
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        lines.close()

    # And nothing is pending any more
    status = tutorial.sh("persistio status app:open_store")
    for queue_name in ("tasks.normal", "stream notify_friends"):
        assert re.search(rf"^{re.escape(queue_name)}\s+0\s", status, re.MULTILINE), status

    # And the data reads back, through persistio and with SQLite's own client
    read = tutorial.sh("python read.py 1")
    assert re.fullmatch(r"\S+ venue 7\n  in the acid table: True\n", read), read
    rows = tutorial.sh(
        "python -c \"import sqlite3; print(sqlite3.connect('.persistio/acid.db')"
        ".execute('SELECT user_id, venue_id FROM checkins ORDER BY user_id').fetchall())\""
    )
    assert rows.strip() == "[(1, 7), (2, 7), (3, 8)]"
    tutorial.shows(rows)
