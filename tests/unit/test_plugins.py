"""Given a package that adds a backend through the ``persistio.backends`` entry points, a store
uses it for its URL scheme, and the shipped contract suite runs against it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import persistio as pio
from persistio.testing import BackendContract

PLUGIN = '''
from persistio.backends.sqlite.documents import SQLiteDocuments


class ShelfDocuments(SQLiteDocuments):
    """An amorphous backend of its own scheme (here: the SQLite one, under another name)."""


def from_url(url, options, setting):
    return ShelfDocuments("sqlite:///" + url.split("://", 1)[1])
'''


def install_plugin(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution, as pip leaves it: a module and its dist-info."""
    (root / "pio_shelf_plugin.py").write_text(PLUGIN)
    info = root / "pio_shelf_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pio-shelf-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[persistio.backends]\namorphous:shelf = pio_shelf_plugin:from_url\n"
    )
    monkeypatch.syspath_prepend(str(root))


@pytest.fixture
def plugin_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pio.Persistio]:
    (tmp_path / "site").mkdir()
    install_plugin(tmp_path / "site", monkeypatch)
    with pio.Persistio(amorphous=f"shelf://{tmp_path / 'shelf.db'}", data_dir=tmp_path) as store:
        store.setup()
        yield store


def test_a_plugin_serves_its_scheme(plugin_store: pio.Persistio, tmp_path: Path) -> None:
    # When a record is saved through a store whose amorphous URL has the plugin's scheme
    from persistio.testing.contract import ContractRecord

    rec = ContractRecord("r1", "ann", 1, datetime(2026, 1, 1, tzinfo=UTC))
    plugin_store.save(rec)
    plugin_store.drain(timeout=30)

    # Then the plugin's file holds its document (read raw)
    with sqlite3.connect(tmp_path / "shelf.db") as raw:
        rows = raw.execute("SELECT owner, n FROM pio_contract_docs").fetchall()
    assert rows == [("ann", 1)]


def test_an_unknown_scheme_names_the_entry_point_to_add(tmp_path: Path) -> None:
    with pytest.raises(pio.ConfigError, match=r"persistio\.backends.*amorphous:nosuch"):
        pio.Persistio(amorphous="nosuch://x", data_dir=tmp_path)


class TestShelfPlugin(BackendContract):
    @pytest.fixture
    def store(self, plugin_store: pio.Persistio) -> pio.Persistio:
        return plugin_store
