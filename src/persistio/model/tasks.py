"""A save becomes tasks: one per intent, stamped with a write id and a write timestamp."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from persistio.model.clock import WriteClock
from persistio.model.counting import void
from persistio.model.declare import REGISTRY, BoundIntent, Plan


class Task(msgspec.Struct, array_like=True, frozen=True):
    """What a deferred, spooled or outboxed write carries: enough to run it in any process."""

    write_id: str
    model: str
    intent: str
    tier: str
    priority: int
    ts: int  # microseconds since the epoch; last write wins by this
    payload: bytes  # msgpack of the stored (projected) object; of a delete, its key values

    @property
    def delete(self) -> bool:
        """A tombstone of the key (see ``AnyTask``)."""
        return False

    @property
    def not_before(self) -> float:
        """Epoch seconds before which its stream entry or deferred task is not handed out (a
        delayed save); 0: at once (see ``AnyTask``)."""
        return 0.0


class TracedTask(Task, frozen=True):
    """A task made by a traced save (``persistio.ops.tracing``): one more field, the save's W3C
    ``traceparent``, so the worker's span links to it. A store that is not traced writes plain
    tasks, byte for byte what they were before tracing existed."""

    trace: str = ""


class AnyTask(TracedTask, frozen=True):
    """What a worker decodes: a plain task (7 fields), a traced one (8: its trace), or one that
    is a delete or delayed (10: the trace, empty when not traced, the delete flag and the time
    it is due). A plain or traced save keeps the encoding of earlier versions, so their workers
    still read it; a delete or a delay they cannot read is set aside rather than run wrongly."""

    is_delete: bool = False
    due: float = 0.0

    @property
    def delete(self) -> bool:
        return self.is_delete

    @property
    def not_before(self) -> float:
        return self.due


TASK_ENCODER = msgspec.msgpack.Encoder()
TASK_DECODER = msgspec.msgpack.Decoder(AnyTask)


def make_task(
    base: Task, *, trace: str = "", delete: bool = False, not_before: float = 0.0
) -> Task:
    """``base``'s identity and payload in the smallest encoding that carries the rest."""
    t = base
    fields = (t.write_id, t.model, t.intent, t.tier, t.priority, t.ts, t.payload)
    if delete or not_before:
        return AnyTask(*fields, trace, delete, not_before)
    if trace:
        return TracedTask(*fields, trace)
    return t if type(t) is Task else Task(*fields)


def delete_task(task: Task, trace: str = "") -> Task:
    """``task`` as a delete (a tombstone of its key), with the save's trace context if any."""
    return make_task(task, trace=trace, delete=True, not_before=task.not_before)


def traced(task: Task, trace: str) -> Task:
    """``task`` carrying a trace context, a delete staying a delete, a delay a delay."""
    return make_task(task, trace=trace, delete=task.delete, not_before=task.not_before)


def _plain(task: Task) -> Task:
    """A decoded task as the type it was written as (re-encoded, e.g. spooled again by a worker,
    it keeps that encoding)."""
    if type(task) is not AnyTask:
        return task
    return make_task(task, trace=task.trace, delete=task.delete, not_before=task.not_before)


class Work:
    """A task together with its intent and decoded object, ready for a backend.

    ``state`` is what became of it (done, deferred, buffered, dropped, superseded), set once
    when its write is settled; receipts are read from it.
    """

    __slots__ = ("bound", "obj", "state", "task")

    def __init__(self, task: Task, bound: BoundIntent, obj: Any) -> None:
        self.task = task
        self.bound = bound
        self.obj = obj
        self.state: str | None = None

    @property
    def dedup_key(self) -> str:
        """One save writes once per intent: the unit that replay and redelivery deduplicate."""
        return f"{self.task.write_id}:{self.task.intent}"


@dataclass(frozen=True, slots=True)
class SavePlan:
    write_id: str
    ts: int
    work: list[Work]
    skipped: list[str]


def plan_save(
    plan: Plan,
    obj: Any,
    clock: WriteClock,
    where: str,
    stamp: tuple[str, int] | None = None,
    not_before: float = 0.0,
) -> SavePlan:
    """Validate ``obj`` and turn it into one task per intent; nothing is written here.

    ``stamp`` (write id, timestamp) replays an earlier attempt's identity (an idempotency key);
    ``not_before`` (epoch seconds) delays its stream entries and deferred tasks.
    """
    model_payload = plan.codec.validate(obj, where)
    if stamp is None:
        ts = clock.next()
        write_id = clock.write_id(ts)
    else:
        write_id, ts = stamp
    work: list[Work] = []
    skipped: list[str] = []
    model_name = plan.model_name
    for bound in plan.intents:
        intent = bound.intent
        if intent.when is not None and not intent.when(obj):
            skipped.append(bound.name)
            continue
        project = bound.project  # a Count's is its tally function
        stored = obj if project is None else project(obj)
        if stored is obj and bound.shares_payload:
            payload = model_payload
        else:
            payload = bound.codec.validate_for(stored, where, bound.name)
        if bound.limits is not None:
            bound.limits(stored, where, bound.name)
        task = Task(write_id, model_name, bound.name, bound.tier.value, bound.priority, ts, payload)
        if not_before:
            task = make_task(task, not_before=not_before)
        work.append(Work(task, bound, stored))
    return SavePlan(write_id, ts, work, skipped)


def plan_uncount(plan: Plan, obj: Any, clock: WriteClock, where: str) -> SavePlan:
    """Withdraw ``obj`` from every Count of its model declared with ``identity=``.

    The hook ``delete`` calls for counts: each such Count gets a task writing the object's
    contribution again with weight 0, newer than every earlier save of it, so a save of the
    object replayed later (older) cannot count it again. Counts without ``identity`` count
    saves, not objects, and are left as they are. Tasks run like a save's (REALTIME now, or
    deferred; spooled on an outage), so the uncount is as durable and as replay-safe.
    """
    plan.codec.validate(obj, where)
    ts = clock.next()
    write_id = clock.write_id(ts)
    work: list[Work] = []
    for bound in plan.intents:
        counting = bound.counting
        if counting is None or not counting.identified:
            continue
        # when= is not asked: the object may have been counted by an earlier save
        tally = void(counting.tally(obj))
        payload = bound.codec.encode(tally)
        name, tier = bound.name, bound.tier.value
        task = Task(write_id, plan.model_name, name, tier, bound.priority, ts, payload)
        work.append(Work(task, bound, tally))
    return SavePlan(write_id, ts, work, [])


def plan_delete(
    plan: Plan,
    keys: list[tuple[BoundIntent, tuple[Any, ...]]],
    clock: WriteClock,
    extra: list[Work] | None = None,
) -> SavePlan:
    """One delete task per (intent, key values): a tombstone stamped like a save, so it is run,
    deferred, spooled and replayed like one and resolves by last write wins in every store.
    ``extra``: more works of the same delete (its uncounts), stamped alike."""
    ts = clock.next()
    write_id = clock.write_id(ts)
    work: list[Work] = []
    for bound, key in keys:
        payload = TASK_ENCODER.encode(list(key))
        name, tier = bound.name, bound.tier.value
        task = delete_task(Task(write_id, plan.model_name, name, tier, bound.priority, ts, payload))
        work.append(Work(task, bound, key))
    for more in extra or ():
        more.task = msgspec.structs.replace(more.task, write_id=write_id, ts=ts)
        work.append(more)
    return SavePlan(write_id, ts, work, [])


class UnknownModel(LookupError):
    """A task names a model this process has not imported."""


def work_from_task(
    task: Task, plan_named: Callable[[str], Plan | None] = REGISTRY.plan_named
) -> Work:
    """Rebuild a Work from its encoded task (in a worker, a replay, or an outbox dispatch).

    ``plan_named``: the models the running store covers (``Persistio(models=...)``); a task of
    another model is left for a store that covers it.
    """
    plan = plan_named(task.model)
    if plan is None or task.intent not in plan.by_name:
        raise UnknownModel(
            f"task for {task.model} intent {task.intent!r}: import the module that declares "
            "the model in the worker process, and run it with a store that covers the model"
        )
    bound = plan.by_name[task.intent]
    task = _plain(task)
    if task.delete:
        values = msgspec.msgpack.decode(task.payload)
        given = dict(zip(bound.key, values, strict=True))
        return Work(task, bound, bound.codec.check_key(given, bound.key, f"delete {task.intent}"))
    return Work(task, bound, bound.codec.decode(task.payload))
