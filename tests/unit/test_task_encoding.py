"""Deferred tasks on the wire: a save's task keeps the encoding earlier workers read (7 fields,
8 when traced); a delete or a delayed task is 10 fields (trace, delete flag, due time), and a
delete stays a delete, a delay a delay, when a traced save carries it."""

from __future__ import annotations

import msgspec

from persistio.model.tasks import TASK_DECODER, TASK_ENCODER, Task, delete_task, make_task, traced

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
    assert fields(gone) == [*fields(BASE), "", True, 0.0]
    assert TASK_DECODER.decode(TASK_ENCODER.encode(gone)).delete is True
    both = traced(gone, TRACE)
    back = TASK_DECODER.decode(TASK_ENCODER.encode(both))
    assert (back.delete, back.trace, back.payload) == (True, TRACE, BASE.payload)


def test_a_delayed_task_keeps_its_due_time_traced_or_not() -> None:
    due = make_task(BASE, not_before=1_800_000_000.5)
    assert fields(due) == [*fields(BASE), "", False, 1_800_000_000.5]
    back = TASK_DECODER.decode(TASK_ENCODER.encode(traced(due, TRACE)))
    assert (back.not_before, back.delete, back.trace) == (1_800_000_000.5, False, TRACE)
    assert TASK_DECODER.decode(TASK_ENCODER.encode(BASE)).not_before == 0.0
