"""``python -m benchmarks.overload`` end to end, for a few seconds, on the embedded backends.

It checks the harness (a worker process, producers, samples, CSV, JSON, plot), and that under a
load above the service rate `shed` kept the queue's work and counted what it dropped.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_overload_run_writes_samples_summary_and_plot(tmp_path: Path) -> None:
    # When the benchmark runs `shed` for 6 s on embedded defaults
    command = [sys.executable, "-m", "benchmarks.overload", "--embedded", "--seconds", "6"]
    done = subprocess.run(
        [*command, "--policies", "shed", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    # Then it sampled the queue twice a second, and summed up the run
    with (tmp_path / "shed.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["t_s", "low_oldest_s", "low_pending", "saved", "shed", "slowed"]
    assert len(rows) >= 8
    summary = json.loads((tmp_path / "shed.json").read_text())
    assert summary["policy"] == "shed"
    assert summary["shed"] > 0, "the load never outran the worker"
    assert summary["shed"] == int(rows[-1]["shed"])
    assert summary["urgent_on_time"] + summary["urgent_late"] > 0
    assert (tmp_path / "queue_age.png").stat().st_size > 10_000
