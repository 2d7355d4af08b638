"""Events and hooks: bad names refused, a raising hook counted and never breaking the caller."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

import persistio as pio
from persistio.events import Events


def test_hooks_get_their_event_and_can_be_removed(caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    got: list[tuple[str, dict[str, Any]]] = []

    def hook(event: str, fields: Mapping[str, Any]) -> None:
        got.append((event, dict(fields)))

    remove = events.on("spool_started", hook)
    everything = events.on("*", hook)
    with caplog.at_level(logging.INFO, "persistio.events"):
        events.emit("spool_started", tier="acid", name="x")
    assert got == [("spool_started", {"tier": "acid", "name": "x"})] * 2
    # one record, whose structured fields are attributes (a clash with LogRecord's is prefixed)
    (record,) = caplog.records
    assert record.__dict__["event"] == "spool_started"
    assert record.__dict__["tier"] == "acid"
    assert record.__dict__["pio_name"] == "x"
    remove()
    everything()
    events.emit("spool_started", tier="acid")
    assert len(got) == 2


def test_a_raising_hook_is_counted_and_the_rest_still_run() -> None:
    events = Events()
    got: list[str] = []

    def broken(_event: str, _fields: Mapping[str, Any]) -> None:
        raise RuntimeError("hook bug")

    events.on("replay_done", broken)
    events.on("replay_done", lambda event, _fields: got.append(event))
    events.emit("replay_done", replayed=1)
    assert got == ["replay_done"]
    assert events.errors == 1


def test_unknown_events_and_uncallable_hooks_are_refused() -> None:
    events = Events()
    with pytest.raises(pio.ValidationError, match="no such event"):
        events.on("circuit_open", lambda _e, _f: None)
    with pytest.raises(pio.ValidationError, match="must be callable"):
        events.on("replay_done", "not a function")  # type: ignore[arg-type]
