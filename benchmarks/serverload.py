"""What a run costs the servers, measured from the servers themselves.

Around each closed-loop phase (from before its workers start until every deferred task it
caused is done) the harness takes a ``Snapshot``; the difference, per acknowledged save, is the
run's load on the one central database, and on Redis:

- ``pg_commits_per_1k``: transactions that wrote, per 1,000 saves: the advance of the next
  transaction id (``pg_snapshot_xmax(pg_current_snapshot())``), cluster-wide (only one arm runs
  at a time; the harness writes nothing inside the window). Not ``pg_stat_database.xact_commit``:
  PostgreSQL 15 backends publish their counters at most every 10 s (an idle backend 10 s after
  its last transaction), so a per-run difference over 1-2 s phases would be wrong. Read-only
  transactions (an empty poll) take no id: they show in the CPU and statement figures.
- ``pg_wal_bytes_per_save``: ``pg_current_wal_insert_lsn()`` difference, cluster-wide.
- ``pg_cpu_s_per_1k``: user + system CPU of the postgres processes from ``/proc``: the
  postmaster (the listener on the server's port, found with ``ss -Hltnp``), all of its
  children, and the postmaster's ``cutime + cstime`` (children that exited in the window).
- ``pg_statements_per_1k``, ``pg_exec_ms_per_1k``: ``pg_stat_statements`` calls and execution
  time in the arm's database, when the extension is there (minus the harness's own polls).
- ``redis_cmds_per_save``: Redis commands executed (``INFO commandstats``; a script call and
  each command it runs count one each), less the harness's own (``XLEN`` polls, ``INFO``).

Anything that cannot be measured here (no grant, a remote server, no ``ss``) is ``None``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .admin import Admin

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# what the harness sends to Redis itself (polls, snapshots, checks), never counted
HARNESS_REDIS = {"info", "xlen", "scan", "flushdb", "ping", "select", "hello", "dbsize"}
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    at: float
    xid: int | None
    wal: int | None
    pg_cpu_s: float | None
    statements: tuple[int, float] | None  # pg_stat_statements (calls, exec ms) in the database
    harness_calls: int  # statements the harness ran in the database so far
    redis_cmds: int | None


@dataclass
class Load:
    """Per-save load of one window; ``None`` where it could not be measured."""

    pg_commits_per_1k: float | None = None
    pg_wal_bytes_per_save: float | None = None
    pg_cpu_s_per_1k: float | None = None
    pg_statements_per_1k: float | None = None
    pg_exec_ms_per_1k: float | None = None
    redis_cmds_per_save: float | None = None
    window_s: float | None = None
    problems: list[str] = field(default_factory=list)


class Meter:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.processes = PgProcesses.of(admin.endpoints.postgres)
        self._pgss = True  # until it fails once
        self._warned: set[str] = set()

    def snapshot(self, database: str) -> Snapshot:
        pg = self.admin.pg(self.admin.endpoints.admin_database)
        xid = wal = None
        try:
            row = pg.execute(
                "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, "
                "(pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
            ).fetchone()
            if row:
                xid, wal = int(row[0]), int(row[1])
        except Exception as exc:  # e.g. a server without the functions: say so once
            self._warn("xid/wal", exc)
        return Snapshot(
            at=time.monotonic(),
            xid=xid,
            wal=wal,
            pg_cpu_s=self.processes.cpu_seconds() if self.processes else None,
            statements=self._statements(database),
            harness_calls=self.admin.pg_calls.get(database, 0),
            redis_cmds=self._redis_commands(),
        )

    def _statements(self, database: str) -> tuple[int, float] | None:
        if not self._pgss:
            return None
        pg = self.admin.pg(self.admin.endpoints.admin_database)
        try:
            row = pg.execute(
                "SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(total_exec_time), 0) "
                "FROM pg_stat_statements WHERE dbid = "
                "(SELECT oid FROM pg_database WHERE datname = %s)",
                (database,),
            ).fetchone()
        except Exception as exc:  # not installed or not preloaded: no statement figures
            self._pgss = False
            self._warn("pg_stat_statements", exc)
            return None
        return (int(row[0]), float(row[1])) if row else None

    def _redis_commands(self) -> int | None:
        try:
            stats = self.admin.lock_redis.info("commandstats")
        except Exception as exc:
            self._warn("redis commandstats", exc)
            return None
        total = 0
        for name, values in stats.items():
            command = name.removeprefix("cmdstat_")
            base = command.split("|", 1)[0]
            if command in HARNESS_REDIS or base in ("client", "config", "command", "script"):
                continue
            total += int(values["calls"]) if isinstance(values, dict) else 0
        return total

    def _warn(self, what: str, exc: Exception) -> None:
        if what not in self._warned:
            self._warned.add(what)
            self.admin.say(f"cannot measure {what}: {type(exc).__name__}: {exc}".splitlines()[0])

    @staticmethod
    def load(before: Snapshot, after: Snapshot, saves: int) -> Load:
        out = Load(window_s=round(after.at - before.at, 3))
        if saves <= 0:
            return out

        def per(a: float | None, b: float | None, scale: float) -> float | None:
            return None if a is None or b is None else max(0.0, b - a) / saves * scale

        out.pg_commits_per_1k = per(before.xid, after.xid, 1000)
        out.pg_wal_bytes_per_save = per(before.wal, after.wal, 1)
        out.pg_cpu_s_per_1k = per(before.pg_cpu_s, after.pg_cpu_s, 1000)
        out.redis_cmds_per_save = per(before.redis_cmds, after.redis_cmds, 1)
        if before.statements is not None and after.statements is not None:
            harness = after.harness_calls - before.harness_calls
            calls = after.statements[0] - before.statements[0] - harness
            out.pg_statements_per_1k = max(0, calls) / saves * 1000
            out.pg_exec_ms_per_1k = (after.statements[1] - before.statements[1]) / saves * 1000
        return out


class PgProcesses:
    """The local PostgreSQL server's processes: its postmaster and the postmaster's children."""

    def __init__(self, port: int) -> None:
        self.port = port

    @classmethod
    def of(cls, postgres_url: str) -> PgProcesses | None:
        parts = urlsplit(postgres_url)
        if parts.hostname not in LOCAL_HOSTS:
            return None
        return cls(parts.port or 5432)

    def postmaster(self) -> int | None:
        """The process listening on the port (``ss -Hltnp``; root or the server's user)."""
        try:
            out = subprocess.run(
                ["ss", "-Hltnp", f"sport = :{self.port}"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        pids = {int(p) for p in re.findall(r"pid=(\d+)", out)}
        for pid in pids:
            if _comm(pid) in ("postgres", "postmaster"):
                return pid
        return None

    def pids(self) -> list[int]:
        """The postmaster first, then its children; empty when it cannot be found."""
        pm = self.postmaster()
        if pm is None:
            return []
        return [pm, *(pid for pid, stat in _all_stats() if int(stat[1]) == pm)]

    def cpu_seconds(self) -> float | None:
        pm = self.postmaster()
        if pm is None:
            return None
        ticks = 0
        for pid, stat in _all_stats():
            if pid == pm:
                ticks += int(stat[11]) + int(stat[12]) + int(stat[13]) + int(stat[14])
            elif int(stat[1]) == pm:
                ticks += int(stat[11]) + int(stat[12])
        return ticks / _CLK_TCK


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _all_stats() -> list[tuple[int, list[str]]]:
    """(pid, fields after the command name) of every process: [0] state, [1] ppid,
    [11] utime, [12] stime, [13] cutime, [14] cstime (proc(5) fields 3, 4, 14-17)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # it exited
        out.append((int(entry.name), text[text.rindex(")") + 2 :].split()))
    return out


def as_json(load: Load | None) -> dict[str, Any]:
    fields = (
        "pg_commits_per_1k",
        "pg_wal_bytes_per_save",
        "pg_cpu_s_per_1k",
        "pg_statements_per_1k",
        "pg_exec_ms_per_1k",
        "redis_cmds_per_save",
    )
    if load is None:
        return dict.fromkeys(fields)
    return {f: None if getattr(load, f) is None else round(getattr(load, f), 4) for f in fields}
