"""Dead letters you can act on: listed with their reason, put back, purged, and kept bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import msgspec

import persistio as pio

REPO = Path(__file__).resolve().parents[2]


@pio.persist(
    pio.Transitory(
        "dl_orders", max_deliveries=2, retry_backoff=timedelta(milliseconds=10), dead_max=3
    )
)
class DlOrder(msgspec.Struct, frozen=True):
    id: int
    item: str


def test_a_failing_item_becomes_a_dead_letter_that_can_be_redriven(store: pio.Persistio) -> None:
    # Given a consumer that fails order 2 while a bug is in it
    delivered: list[int] = []
    broken = {"yes": True}

    @store.consumer("dl_orders")
    def ship(order: DlOrder) -> None:
        if order.id == 2 and broken["yes"]:
            raise RuntimeError("warehouse API said 500")
        delivered.append(order.id)

    for n in (1, 2, 3):
        store.save(DlOrder(n, f"book {n}"))

    # When it is drained, the failing order is set aside after its deliveries
    store.drain(timeout=30)
    assert sorted(delivered) == [1, 3]
    (letter,) = store.dead_letters()

    # Then its dead letter says what, why, how often and when
    assert letter.place == "stream:dl_orders"
    assert letter.intent == "dl_orders"
    assert letter.model.endswith(":DlOrder")
    assert letter.reason == "RuntimeError: warehouse API said 500"
    assert letter.attempts == 2
    assert letter.enqueued_at <= letter.first_failed_at <= letter.failed_at
    assert "book 2" in letter.summary
    assert store.dead_letters("other_intent") == []

    # And once the bug is fixed, a redrive delivers it
    broken["yes"] = False
    assert store.redrive([letter.id]) == 1
    store.drain(timeout=30)
    assert sorted(delivered) == [1, 2, 3]
    assert store.dead_letters() == []
    assert store.status()["streams"]["dl_orders"]["dead_letters"] == 0


def test_dead_letters_are_bounded_and_what_goes_is_counted(store: pio.Persistio) -> None:
    # Given a consumer that fails everything, and dead_max=3 on its stream
    @store.consumer("dl_orders")
    def ship(order: DlOrder) -> None:
        raise RuntimeError("down for maintenance")

    # When five orders die
    for n in range(5):
        store.save(DlOrder(10 + n, "x"))
    store.drain(timeout=30)

    # Then only the newest three are kept, and the two dropped are counted
    letters = store.dead_letters()
    assert sorted(int(d.summary.split("id=")[1].split(",")[0]) for d in letters) == [12, 13, 14]
    status = store.status()
    assert status["dead_letters_dropped"] == {"dl_orders": 2}

    # And a purge deletes them for good, counted too
    assert store.purge_dead_letters(intent="dl_orders") == 3
    assert store.dead_letters() == []
    assert store.status()["dead_letters_purged"] == 3


APP = """
import sys
sys.path.insert(0, {repo!r})
import persistio as pio
from tests.contract.test_dead_letters import DlOrder  # noqa: F401  (declares the model)
store = pio.Persistio(**{urls!r}, data_dir={data!r})
"""


def test_the_cli_lists_shows_and_purges(store: pio.Persistio, tmp_path: Path) -> None:
    # Given one dead letter
    @store.consumer("dl_orders")
    def ship(order: DlOrder) -> None:
        raise ValueError("no such item")

    store.save(DlOrder(99, "ghost"))
    store.drain(timeout=30)
    urls = {t.value: u for t, u in store.urls.items()}
    (tmp_path / "dlapp.py").write_text(APP.format(repo=str(REPO), urls=urls, data=str(tmp_path)))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "persistio.cli", "dead-letters", *args, "dlapp:store"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # When the CLI lists them, then it shows the id, the intent and the reason
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "dl_orders" in listed.stdout
    assert "ValueError: no such item" in listed.stdout

    # And "show" prints them in full as JSON
    shown = json.loads(cli("show", "--intent", "dl_orders").stdout)
    assert [d["summary"] for d in shown] == ["DlOrder(id=99, item='ghost')"]

    # And purge needs to be told what, then deletes it
    assert cli("purge").returncode == 2
    purged = cli("purge", "--id", shown[0]["id"])
    assert purged.returncode == 0, purged.stderr
    assert "purged: 1" in purged.stdout
    assert store.dead_letters() == []
