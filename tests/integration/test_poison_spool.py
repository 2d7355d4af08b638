"""Given spooled rows that PostgreSQL now refuses, replay sets them aside and keeps going."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import persistio as pio
from tests.contract.test_poison import PoisonRow

pytestmark = pytest.mark.services


def test_a_spooled_value_the_store_refuses_is_set_aside_and_drain_does_not_raise(
    pg_database_url: str, raw_pg: Any, tmp_path: Path
) -> None:
    # Given rows spooled while PostgreSQL was unreachable
    down = pio.Persistio(
        acid="postgresql+psycopg://nobody@127.0.0.1:1/none",
        data_dir=tmp_path,
        connect_timeout=1,
        realtime_deadline=2,
    )
    for n, note in ((10, "ok"), (11, "refused"), (12, "ok")):
        assert down.save(PoisonRow(n, note)).buffered == ("poison_rows",)
    down.close()

    # And, by the time it is back, a constraint that refuses one of them
    with pio.Persistio(acid=pg_database_url, data_dir=tmp_path / "setup") as setup:
        setup.setup()
    raw_pg.execute("ALTER TABLE poison_rows ADD CONSTRAINT no_refused CHECK (note <> 'refused')")
    raw_pg.commit()

    # When a store on the same data dir replays the spool
    with pio.Persistio(acid=pg_database_url, data_dir=tmp_path) as store:
        store.drain(timeout=60)

        # Then drain() returned, the good rows landed, the refused one is the spool's one dead
        # letter, and nothing is left spooled
        rows = raw_pg.execute("SELECT id FROM poison_rows WHERE id >= 10 ORDER BY id").fetchall()
        assert rows == [(10,), (12,)]
        spool = store.status()["spool"]
        assert (spool["depth"], spool["dead_letters"]) == (0, 1)
