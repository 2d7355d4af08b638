"""The hardware's ceiling, measured in the same run against the same servers.

- Redis (``redis-benchmark``, 8 connections, ``-P 16`` pipelining), under each durability's
  ``appendfsync``: ``XADD`` of a 16-byte field onto one stream; ``SET ... PXAT`` (a volatile
  write in one command); and ``EVAL`` of a script doing ``SET`` + ``PEXPIREAT`` on a random key
  (the volatile write as the arms' PUT script does it, without its timestamp check).
- PostgreSQL (``pgbench``, prepared, 1 and 8 clients): a one-row ``INSERT`` per transaction
  into a table with a ``bigserial`` key, with the benchmark's settings (fsync on,
  ``synchronous_commit = on``): the rate of durable commits this machine can do.

Nothing here is fatal: a missing binary or a failed tool leaves its figure ``None`` and says why.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .settings import REDIS_DB_LOCK

if TYPE_CHECKING:
    from .admin import Admin

REDIS_CLIENTS = 8
PIPELINE = 16
KEY_PREFIX = "bench:ceil:"  # in the lock's database, deleted afterwards
SET_PEXPIREAT = (
    "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('PEXPIREAT', KEYS[1], ARGV[2])"
)
PGBENCH_SCRIPT = "\\set v random(1, 1000000000)\nINSERT INTO ceiling_rows (v) VALUES (:v);\n"
VALUE = "0123456789abcdef"


def measure(
    admin: Admin, durabilities: list[str], *, redis_requests: int, pg_seconds: int
) -> dict[str, Any]:
    """``{"redis": {durability: {test: ops/s}}, "postgres": {"insert_c1": tps, ...}}``."""
    out: dict[str, Any] = {"redis": {}, "postgres": {}, "method": __doc__, "errors": []}
    tool = shutil.which("redis-benchmark")
    for durability in durabilities:
        admin.set_durability(durability)
        if tool is None:
            out["errors"].append("redis-benchmark not found")
            break
        out["redis"][durability] = _redis(admin, tool, redis_requests, out["errors"])
    try:
        out["postgres"] = _postgres(admin, pg_seconds, out["errors"])
    except Exception as exc:
        out["errors"].append(f"pgbench: {type(exc).__name__}: {exc}".splitlines()[0])
    return out


def _redis(admin: Admin, tool: str, requests: int, errors: list[str]) -> dict[str, float | None]:
    parts = urlsplit(admin.endpoints.redis)
    base = [
        tool,
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 6379),
        "--dbnum",
        str(REDIS_DB_LOCK),
        "-n",
        str(requests),
        "-c",
        str(REDIS_CLIENTS),
        "-P",
        str(PIPELINE),
        "-r",
        "1000000",
        "--csv",
    ]
    expire_at = str(int((time.time() + 3 * 3600) * 1000))
    key = f"{KEY_PREFIX}k:__rand_int__"
    tests = {
        "xadd": ["XADD", f"{KEY_PREFIX}stream", "*", "p", VALUE],
        "set_pxat": ["SET", key, VALUE, "PXAT", expire_at],
        "eval_set_pexpireat": ["EVAL", SET_PEXPIREAT, "1", key, VALUE, expire_at],
    }
    found: dict[str, float | None] = {}
    try:
        for name, command in tests.items():
            found[name] = _rps(base + command, name, errors)
    finally:
        _delete_keys(admin)
    return found


def _rps(command: list[str], name: str, errors: list[str]) -> float | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        errors.append(f"redis-benchmark {name}: {exc}")
        return None
    rows = list(csv.reader(io.StringIO(done.stdout)))
    if done.returncode != 0 or len(rows) < 2:
        errors.append(f"redis-benchmark {name}: exit {done.returncode}: {done.stderr[-300:]}")
        return None
    return round(float(rows[-1][1]), 1)


def _delete_keys(admin: Admin) -> None:
    client = admin.lock_redis
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{KEY_PREFIX}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def pgbench_path(admin: Admin) -> str | None:
    row = admin.pg(admin.endpoints.admin_database).execute("SHOW server_version_num").fetchone()
    major = int(row[0]) // 10000 if row else 0
    candidate = Path(f"/usr/lib/postgresql/{major}/bin/pgbench")
    return str(candidate) if candidate.exists() else shutil.which("pgbench")


def _postgres(admin: Admin, seconds: int, errors: list[str]) -> dict[str, float | None]:
    tool = pgbench_path(admin)
    if tool is None:
        errors.append("pgbench not found")
        return {}
    database = admin.endpoints.database("ceiling")
    admin.create_databases([database])
    try:
        conn = admin.pg(database)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ceiling_rows (id bigserial PRIMARY KEY, v bigint NOT NULL)"
        )
        parts = urlsplit(admin.endpoints.postgres)
        found: dict[str, float | None] = {}
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp, "insert.sql")
            script.write_text(PGBENCH_SCRIPT)
            for clients in (1, 8):
                conn.execute("TRUNCATE ceiling_rows")
                command = [
                    tool,
                    "-n",
                    "-M",
                    "prepared",
                    "-f",
                    str(script),
                    "-c",
                    str(clients),
                    "-j",
                    str(min(clients, 2)),
                    "-T",
                    str(seconds),
                    "-h",
                    parts.hostname or "127.0.0.1",
                    "-p",
                    str(parts.port or 5432),
                    "-U",
                    parts.username or "postgres",
                    database,
                ]
                env = {**os.environ, "PGOPTIONS": "-c synchronous_commit=on"}
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=seconds + 120,
                    env=env,
                    check=False,
                )
                tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
                if done.returncode != 0 or tps is None:
                    errors.append(
                        f"pgbench -c {clients}: exit {done.returncode}: {done.stderr[-300:]}"
                    )
                    found[f"insert_c{clients}"] = None
                else:
                    found[f"insert_c{clients}"] = round(float(tps.group(1)), 1)
        return found
    finally:
        admin.drop_databases([database])
