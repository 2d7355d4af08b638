"""Deferred tasks on the wire: a save's task keeps the encoding earlier workers read (7 fields,
8 when traced); a delete is 9 fields, and stays a delete when a traced save carries it."""

from __future__ import annotations

import msgspec

from persistio.plan import TASK_DECODER, TASK_ENCODER, Task, delete_task, traced

BASE = Task("w1", "m:M", "intent", "acid", 1, 1_700_000_000_000_000, b"\x91\x01")
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def fields(task: Task) -> list[object]:
    decoded: list[object] = msgspec.msgpack.decode(TASK_ENCODER.encode(task))
    return decoded


def test_a_plain_task_keeps_the_seven_fields_of_earlier_versions() -> None:
    assert len(fields(BASE)) == 7
    back = TASK_DECODER.decode(TASK_ENCODER.encode(BASE))
    assert (back.write_id, back.payload, back.delete, back.trace) == ("w1", b"\x91\x01", False, "")


def test_a_traced_save_adds_only_its_trace() -> None:
    task = traced(BASE, TRACE)
    assert fields(task) == [*fields(BASE), TRACE]
    back = TASK_DECODER.decode(TASK_ENCODER.encode(task))
    assert (back.trace, back.delete) == (TRACE, False)


def test_a_delete_stays_a_delete_traced_or_not() -> None:
    gone = delete_task(BASE)
    assert fields(gone) == [*fields(BASE), "", True]
    assert TASK_DECODER.decode(TASK_ENCODER.encode(gone)).delete is True
    both = traced(gone, TRACE)
    back = TASK_DECODER.decode(TASK_ENCODER.encode(both))
    assert (back.delete, back.trace, back.payload) == (True, TRACE, BASE.payload)
