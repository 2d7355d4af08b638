"""``python -m benchmarks`` end to end, at a tiny size, on the real servers.

It checks the harness, not the numbers: every arm runs both batch sizes, every run passes its
end-of-run correctness check, and the JSON has the fields the README documents. The run uses
its own PostgreSQL databases and Cassandra keyspace (``bench_smoke_<hex>``, dropped at the end)
and Redis DBs 10-12, under the benchmark's lock. Relaxed durability only: the smoke test never
switches the shared Redis to ``appendfsync always``.
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
FIELDS = {
    "arm",
    "batch",
    "concurrency",
    "durability",
    "saves_per_s",
    "ack_p50_ms",
    "ack_p99_ms",
    "ack_p999_ms",
    "all_done_s",
    "cpu_s_per_1k",
    "correct",
}
NUMBERS = FIELDS - {"arm", "batch", "concurrency", "durability", "correct"}


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
        "--json",
        str(out),
        # hidden knobs: 3 requests per process per phase, one process, relaxed durability
        "--size",
        "3",
        "--concurrency",
        "1",
        "--durability",
        "relaxed",
        "--namespace",
        f"bench_smoke_{secrets.token_hex(3)}",
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    document = json.loads(out.read_text())
    runs = document["runs"]
    assert {(r["arm"], r["batch"]) for r in runs} == {(a, b) for a in ARMS for b in (1, 100)}
    for run in runs:
        assert run.keys() >= FIELDS
        assert (run["concurrency"], run["durability"], run["correct"]) == (1, "relaxed", True)
        assert all(isinstance(run[k], int | float) and run[k] >= 0 for k in NUMBERS), run
        assert run["saves_per_s"] > 0
        assert run["ack_p50_ms"] <= run["ack_p99_ms"] <= run["ack_p999_ms"]
    assert {(t["batch"], t["concurrency"]) for t in document["targets"]} == {(1, 1), (100, 1)}
