"""``benchmarks/count_bench.py`` end to end, at a tiny size: both arms agree on every count read.

The script exits with an error when the row counts and the Count disagree on any number, so a
passing run is a correctness check of the comparison, on SQLite and on Cassandra (a keyspace of
its own, dropped at the end). It checks the harness, not the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import count_bench


@pytest.mark.parametrize("kind", ["embedded", pytest.param("real", marks=pytest.mark.services)])
def test_count_bench_runs_and_the_arms_agree(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--checkins", "1500", "--days", "3", "--reads", "2", "--row-reads", "1"]
    if kind == "real":
        url = request.getfixturevalue("cassandra_url")
        monkeypatch.setenv("PERSISTIO_AMORPHOUS_URL", url)
        args.append("--real")
    out = tmp_path / "out.json"
    assert count_bench.main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["read"]["3 days (on the hour)"]["checkins"] == 1500
    assert result["counts_status"]["fold_queue"] == 0
    assert set(result["write"]) == {"rows", "count"}
