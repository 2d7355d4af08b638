"""CPU time of the local servers a benchmark talks to, found by the address they listen on.

A process is found with ``ss -Hltnp`` (root, or the server's own user) by its address and port,
so the nodes of a cluster on 127.0.0.2, 127.0.0.3 ... are told apart; its CPU is user + system
time from ``/proc/<pid>/stat`` (a PostgreSQL server's is its postmaster's and every child's:
``serverload.PgProcesses``). Anything that cannot be found is left out of the sums.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def listener(host: str, port: int) -> int | None:
    """The pid listening on ``host:port``, if ``ss`` can say."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"src {host} and sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.findall(r"pid=(\d+)", out)
    return int(found[0]) if found else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


__all__ = ["cpu_seconds", "listener"]
