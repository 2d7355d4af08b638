"""The servers the fault tests break on purpose, and how they break them.

- ``PrivateRedis``: a redis-server of the test's own (never the shared one), to SIGKILL or stop.
- ``frozen()``: SIGSTOP a shared server's processes (PostgreSQL, Cassandra) and always SIGCONT
  them again, on the way out of the block and from a watchdog if the block itself hangs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[2]
SERVICES_DIR = Path(os.environ.get("PERSISTIO_SERVICES_DIR") or REPO / ".services")
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_answers(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port whose connections the kernel accepts (backlog) and nobody ever answers: what a
    frozen server looks like to a client that connects to it."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on ``HOST:port`` (via ``ss``), if one is found.

    The address matters: a cluster may run other servers on the same port of other loopback
    addresses (127.0.0.2, ...)."""
    done = subprocess.run(
        ["ss", "-Hltnp", f"src {HOST} and sport = :{port}"],
        capture_output=True,
        text=True,
        check=False,
    )
    for part in done.stdout.split("pid=")[1:]:
        digits = part.split(",", 1)[0]
        if digits.isdigit():
            return int(digits)
    return None


def children(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (from /proc; a process may vanish while we look)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# ------------------------------------------------------------------ freeze ----

_frozen_now: set[int] = set()
_frozen_lock = threading.Lock()


def _thaw(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    with _frozen_lock:
        _frozen_now.difference_update(pids)


@atexit.register
def _thaw_all_at_exit() -> None:
    # a last resort: an interpreter that exits must never leave a shared server stopped
    with _frozen_lock:
        left = list(_frozen_now)
    _thaw(left)


@contextlib.contextmanager
def frozen(pids: Callable[[], list[int]], *, watchdog: float) -> Iterator[list[int]]:
    """SIGSTOP every pid ``pids()`` lists (re-listed until no new one appears), then SIGCONT all.

    The first pid should be the parent (e.g. the postmaster): once it is stopped it forks no new
    child, so the second listing is complete. A watchdog thread thaws everything after
    ``watchdog`` seconds even if the block hangs; the ``finally`` thaws in every other case.
    """
    stopped: list[int] = []
    timer = threading.Timer(watchdog, lambda: _thaw(list(stopped)))
    timer.daemon = True
    try:
        timer.start()
        for _ in range(5):
            new = [p for p in pids() if p not in stopped]
            if not new:
                break
            for pid in new:
                with _frozen_lock:
                    _frozen_now.add(pid)
                stopped.append(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
        yield stopped
    finally:
        timer.cancel()
        _thaw(stopped)


def postgres_cluster(conninfo: str, port: int) -> Callable[[], list[int]]:
    """The postmaster of the server behind ``conninfo`` and all its children, re-listable.

    The postmaster pid comes from ``postmaster.pid`` in the services data dir when that server
    is the one on ``port``; it is checked against (or, for another server, found as) the parent
    of our own backend (``pg_backend_pid()``).
    """
    import psycopg

    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        postmaster = parent_of(int(row[0]))
    assert comm(postmaster) == "postgres", f"pid {postmaster} is not a postgres process"
    pid_file = SERVICES_DIR / "postgres" / "data" / "postmaster.pid"
    with contextlib.suppress(OSError, IndexError, ValueError):
        lines = pid_file.read_text().splitlines()
        if int(lines[3]) == port:
            assert int(lines[0]) == postmaster, f"{pid_file} names {lines[0]}, not {postmaster}"

    def listing() -> list[int]:
        return [postmaster, *children(postmaster)]

    return listing


def cassandra_process(port: int) -> Callable[[], list[int]]:
    """The Cassandra JVM listening on ``port`` (its pid file in .services/ when it is ours)."""
    pid = listener_pid(port)
    pid_file = SERVICES_DIR / "cassandra" / "cassandra.pid"
    if pid is None and pid_file.exists():
        pid = int(pid_file.read_text().split()[0])
    assert pid is not None, f"no process found listening on {HOST}:{port}"
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"CassandraDaemon" in cmdline, f"pid {pid} on port {port} is not Cassandra"
    found = pid
    return lambda: [found]


# ------------------------------------------------------------- private Redis ----


class PrivateRedis:
    """A redis-server of this test's own, on a free port, with its data in ``directory``.

    Durability: ``appendonly yes`` with ``appendfsync always``: Redis fsyncs the AOF before it
    replies, so every acknowledged write (stream entry, dedup marker, key) survives a SIGKILL.
    ``appendfsync everysec`` (the shared server's setting) would lose up to ~1 s of acknowledged
    writes on SIGKILL (a clean SIGTERM flushes the AOF either way); ``no`` leaves it to the OS.
    ``save ''``: no RDB snapshots, the AOF alone restores the data.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self, timeout: float = 15.0) -> None:
        """Start on the same port and data dir as before (a restart replays the AOF)."""
        assert self._process is None or self._process.poll() is not None
        config = {
            "bind": HOST,
            "port": str(self.port),
            "dir": str(self.directory),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "daemonize": "no",
            "logfile": str(self.directory / "redis.log"),
        }
        self._process = subprocess.Popen(
            ["redis-server", *(a for k, v in config.items() for a in (f"--{k}", v))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        with redis.Redis(host=HOST, port=self.port, socket_timeout=2) as probe:
            while True:
                assert self._process.poll() is None, f"redis-server exited: {self.log_tail()}"
                try:
                    if probe.ping():  # answers only once the AOF is loaded
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                assert time.monotonic() < deadline, f"redis-server not up: {self.log_tail()}"
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final AOF flush."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown (the AOF is flushed), then connections are refused."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        assert self._process is not None
        self._process.send_signal(sig)
        self._process.wait(timeout=30)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)

    def log_tail(self) -> str:
        try:
            return (self.directory / "redis.log").read_text()[-2000:]
        except OSError:
            return "(no log)"
