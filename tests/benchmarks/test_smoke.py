"""``python -m benchmarks`` end to end, at a tiny size, on the real servers.

It checks the harness, not the numbers: every arm runs both workloads, both batch sizes and the
8-thread configuration, every run passes its end-of-run correctness check, and the JSON has the
fields the README documents, the servers' load per check-in included. The run uses its own
PostgreSQL databases and Cassandra keyspace (``bench_smoke_<hex>``, dropped at the end) and
Redis DBs 10-12, under the benchmark's lock.

It is safe on the shared test servers: relaxed durability only (Redis never switched to
``appendfsync always``), PostgreSQL's fsync/full_page_writes/synchronous_commit left as they
are (``--no-pg-durability``), and no outage phase (nothing is ever paused). What the servers do
not grant (pg_stat_statements, CHECKPOINT) is recorded as null or skipped, never an error.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARMS = {"single_postgres", "raw_tiered", "persistio"}
WORKLOADS = {"seed", "all_acid"}
CONFIGS = {(1, 1), (1, 8), (100, 1)}  # (batch, threads), one process
FIELDS = {
    "arm",
    "workload",
    "batch",
    "concurrency",
    "threads",
    "durability",
    "saves_per_s",
    "ack_p50_ms",
    "ack_p99_ms",
    "ack_p999_ms",
    "all_done_s",
    "cpu_s_per_1k",
    "pg_commits_per_1k",
    "pg_wal_bytes_per_save",
    "pg_cpu_s_per_1k",
    "pg_statements_per_1k",
    "redis_cmds_per_save",
    "correct",
    "check",
}
NUMBERS = {
    "saves_per_s",
    "ack_p50_ms",
    "ack_p99_ms",
    "ack_p999_ms",
    "all_done_s",
    "cpu_s_per_1k",
    # measured from PostgreSQL itself, with no grant needed: always there
    "pg_commits_per_1k",
    "pg_wal_bytes_per_save",
    "pg_cpu_s_per_1k",
}
MAYBE = {"pg_statements_per_1k", "redis_cmds_per_save"}  # null where not measurable


@pytest.mark.slow
def test_quick_run_is_correct_and_writes_its_json(
    redis_url: str, postgres_url: str, cassandra_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    env = {
        **os.environ,
        "PERSISTIO_VOLATILE_URL": redis_url,
        "PERSISTIO_ACID_URL": postgres_url,
        "PERSISTIO_AMORPHOUS_URL": cassandra_url,
    }
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--no-outage",
        "--json",
        str(out),
        # hidden knobs: 3 requests per thread per phase, one process, relaxed durability,
        # PostgreSQL's durability settings untouched
        "--size",
        "3",
        "--concurrency",
        "1",
        "--threads",
        "8",
        "--durability",
        "relaxed",
        "--no-pg-durability",
        "--namespace",
        f"bench_smoke_{secrets.token_hex(3)}",
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    document = json.loads(out.read_text())
    runs = document["runs"]
    assert {(r["arm"], r["workload"], r["batch"], r["threads"]) for r in runs} == {
        (a, w, b, t) for a in ARMS for w in WORKLOADS for b, t in CONFIGS
    }
    for run in runs:
        assert run.keys() >= FIELDS
        assert (run["concurrency"], run["durability"], run["correct"]) == (1, "relaxed", True)
        assert all(isinstance(run[k], int | float) and run[k] >= 0 for k in NUMBERS), run
        assert all(run[k] is None or run[k] >= 0 for k in MAYBE), run
        assert run["saves_per_s"] > 0
        assert run["ack_p50_ms"] <= run["ack_p99_ms"] <= run["ack_p999_ms"]
        check = run["check"]
        assert check["rows"] == {k: check["expected"][k] for k in check["rows"]}, check
    assert {(t["workload"], t["batch"], t["threads"]) for t in document["targets"]} == {
        (w, b, t) for w in WORKLOADS for b, t in CONFIGS
    }
    assert document["outages"] == []
    meta = document["meta"]
    assert meta["server_settings"]["postgres_durability_switch"] == {
        "skipped": "--no-pg-durability"
    }
    assert set(meta["ceilings"]) >= {"redis", "postgres"}
