"""Model evolution: version 1 of a model writes and queues; version 2 (a field added with a
default, a required field removed) reads the old rows, writes new ones, and its worker consumes
what version 1 queued; a field whose type changed is refused by setup()."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec

import persistio as pio

REPO = Path(__file__).resolve().parents[2]


@pio.persist(
    pio.Acid("evo_rows", key=("id",)),
    pio.Acid("evo_later", key=("id",), priority=pio.LOW),
    pio.Amorphous("evo_docs", partition=("id",)),
    pio.Transitory("evo_events"),
)
class EvoItem(msgspec.Struct, frozen=True):
    """Version 2: ``plan`` added with a default; version 1's required ``legacy`` removed."""

    id: int
    name: str
    plan: str = "free"


VERSION = """
import sys
sys.path.insert(0, {repo!r})
import msgspec
import persistio as pio

class EvoItem(msgspec.Struct, frozen=True):
{fields}

EvoItem.__module__ = "tests.contract.test_evolution"  # the same model, an older version
pio.persist(
    pio.Acid("evo_rows", key=("id",)),
    pio.Acid("evo_later", key=("id",), priority=pio.LOW),
    pio.Amorphous("evo_docs", partition=("id",)),
    pio.Transitory("evo_events"),
)(EvoItem)
store = pio.Persistio(**{urls!r}, data_dir={data!r})
{body}
store.close()
"""
V1_FIELDS = "    id: int\n    name: str\n    legacy: int\n"
V1_BODY = "store.setup()\nfor n in (1, 2, 3):\n    store.save(EvoItem(n, f'v1-{n}', n * 10))\n"
V3_FIELDS = "    id: int\n    name: int\n    plan: str = 'free'\n"
V3_BODY = (
    "try:\n    store.setup()\nexcept pio.PersistioError as exc:\n    print(exc)\n"
    "    raise SystemExit(3)\n"
)


def run_version(store: pio.Persistio, fields: str, body: str, data: Path) -> Any:
    urls = {t.value: u for t, u in store.urls.items()}
    code = VERSION.format(repo=str(REPO), fields=fields, urls=urls, data=str(data), body=body)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_version_2_reads_writes_and_consumes_what_version_1_left(
    make_store: Any, tmp_path: Path
) -> None:
    # Given version 1 saved three items: rows written, deferred tasks and stream entries queued
    probe = make_store()
    v1 = run_version(probe, V1_FIELDS, V1_BODY, tmp_path / "v1")
    assert v1.returncode == 0, v1.stderr[-3000:]
    probe.close()

    # When version 2 sets up (a new column; the removed field's NOT NULL dropped)
    store = make_store()
    store.setup()

    # Then version 1's rows read with the new field's default
    assert store.get(EvoItem, "evo_rows", id=1) == EvoItem(1, "v1-1", "free")

    # And version 2 writes rows without the removed field
    assert store.save(EvoItem(4, "v2-4", "pro")).done == ("evo_rows", "evo_events")
    assert store.get(EvoItem, "evo_rows", id=4) == EvoItem(4, "v2-4", "pro")

    # And its worker consumes what version 1 queued: deferred tasks and stream entries
    seen: list[EvoItem] = []
    store.consumer("evo_events")(seen.append)
    store.drain(timeout=30)
    assert sorted(seen, key=lambda e: e.id) == [
        EvoItem(1, "v1-1"),
        EvoItem(2, "v1-2"),
        EvoItem(3, "v1-3"),
        EvoItem(4, "v2-4", "pro"),
    ]
    for n in (1, 2, 3):
        assert store.get(EvoItem, "evo_later", id=n) == EvoItem(n, f"v1-{n}")
        assert store.get(EvoItem, "evo_docs", id=n) == EvoItem(n, f"v1-{n}")
    assert store.status()["dead_letters"] == 0

    # And a version whose field changed type is refused by setup(), naming the column
    v3 = run_version(store, V3_FIELDS, V3_BODY, tmp_path / "v3")
    assert v3.returncode == 3, v3.stderr[-3000:]
    assert "column 'name'" in v3.stdout
    assert "ALTER TABLE" in v3.stdout
