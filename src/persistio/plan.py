"""A save becomes tasks: one per intent, stamped with a write id and a write timestamp."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from .clock import WriteClock
from .model import REGISTRY, BoundIntent, Plan
from .tally import void


class Task(msgspec.Struct, array_like=True, frozen=True):
    """What a deferred, spooled or outboxed write carries: enough to run it in any process."""

    write_id: str
    model: str
    intent: str
    tier: str
    priority: int
    ts: int  # microseconds since the epoch; last write wins by this
    payload: bytes  # msgpack of the stored (projected) object
    # epoch seconds before which its stream entry or deferred task is not handed out (a
    # delayed save); 0: at once. Last, with a default: tasks encoded before it still decode
    not_before: float = 0.0


TASK_ENCODER = msgspec.msgpack.Encoder()
TASK_DECODER = msgspec.msgpack.Decoder(Task)


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
    model = plan.model
    model_name = plan.model_name
    for bound in plan.intents:
        intent = bound.intent
        if intent.when is not None and not intent.when(obj):
            skipped.append(bound.name)
            continue
        project = bound.project  # a Count's is its tally function
        stored = obj if project is None else project(obj)
        if stored is obj and bound.stored is model:
            payload = model_payload
        else:
            payload = bound.codec.validate_for(stored, where, bound.name)
        if bound.limits is not None:
            bound.limits(stored, where, bound.name)
        task = Task(
            write_id,
            model_name,
            bound.name,
            bound.tier.value,
            bound.priority,
            ts,
            payload,
            not_before,
        )
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


class UnknownModel(LookupError):
    """A task names a model this process has not imported."""


def work_from_task(task: Task) -> Work:
    """Rebuild a Work from its encoded task (in a worker, a replay, or an outbox dispatch)."""
    plan = REGISTRY.plan_named(task.model)
    if plan is None or task.intent not in plan.by_name:
        raise UnknownModel(
            f"task for {task.model} intent {task.intent!r}: import the module that declares "
            "the model in the worker process"
        )
    bound = plan.by_name[task.intent]
    return Work(task, bound, bound.codec.decode(task.payload))
