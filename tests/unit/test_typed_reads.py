"""Given reads with as_type=, the type checker knows the projected type (mypy runs on a sample)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mypy import api

SAMPLE = """
from datetime import datetime
import msgspec
import persistio as pio


class Item(msgspec.Struct, frozen=True):
    user_id: int
    at: datetime


def to_item(e: "Event") -> Item:
    return Item(e.user_id, e.at)


@pio.persist(
    pio.Acid("typed_events", key=("id",)),
    pio.Amorphous("typed_items", partition=("user_id",), order=("at",), project=to_item),
)
class Event(msgspec.Struct, frozen=True):
    id: int
    user_id: int
    at: datetime


async def reads(store: pio.Persistio, aio: pio.AsyncPersistio, at: datetime) -> None:
    reveal_type(store.get(Event, "typed_events", id=1))
    reveal_type(store.get(Event, "typed_items", as_type=Item, user_id=1, at=at))
    reveal_type(store.get_many(Event, "typed_items", [], as_type=Item))
    reveal_type(store.get_many(Event, "typed_events", [{"id": 1}]))
    reveal_type(store.query(Event, "typed_items", as_type=Item, user_id=1))
    reveal_type(store.query(Event, "typed_items", user_id=1))
    reveal_type(store.pages(Event, "typed_items", as_type=Item, user_id=1))
    reveal_type(await aio.get(Event, "typed_items", as_type=Item, user_id=1, at=at))
    reveal_type(await aio.query(Event, "typed_items", as_type=Item, user_id=1))
    reveal_type(await aio.get_many(Event, "typed_items", [], as_type=Item))
    reveal_type(aio.pages(Event, "typed_items", as_type=Item, user_id=1))
    with store.transaction() as tx:
        reveal_type(tx.get(Event, "typed_events", for_update=True, id=1))
    wrong: list[Event] = store.query(Event, "typed_items", as_type=Item, user_id=1)
"""

EXPECTED = [
    "sample.Event | None",
    "sample.Item | None",
    "list[sample.Item | None]",
    "list[sample.Event | None]",
    "list[sample.Item]",
    "list[sample.Event]",
    "typing.Iterator[persistio.read.pages.Page[sample.Item]]",
    "sample.Item | None",
    "list[sample.Item]",
    "list[sample.Item | None]",
    "typing.AsyncIterator[persistio.read.pages.Page[sample.Item]]",
    "sample.Event | None",
]


def test_mypy_knows_the_projected_type(tmp_path: Path) -> None:
    # Given a model whose amorphous intent stores a projection, read with and without as_type
    sample = tmp_path / "sample.py"
    sample.write_text(SAMPLE)

    # When mypy (strict) checks the reads
    out, err, _ = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--python-executable",
            sys.executable,
            "--cache-dir",
            str(Path(__file__).parents[2] / ".mypy_cache"),
            str(sample),
        ]
    )

    # Then each read has the stored type, and assigning a projection to the model's is an error
    revealed = [
        t.replace("builtins.", "") for t in re.findall(r"Revealed type is \"([^\"]+)\"", out)
    ]
    assert revealed == EXPECTED, out + err
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1, out
    wrong = SAMPLE.splitlines().index(
        '    wrong: list[Event] = store.query(Event, "typed_items", as_type=Item, user_id=1)'
    )
    assert f"sample.py:{wrong + 1}: error:" in errors[0]
    assert "Item" in errors[0]
