"""``@persist``: validates a model's intents and attaches its plan; the registry of models.

The decorator only declares. It does no I/O; a store picks new models up on its next ``setup()``.
"""

from __future__ import annotations

import re
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from persistio.errors import IntentError
from persistio.model.codec import KEY_KINDS, Codec, fields_of
from persistio.model.collisions import acid_keys, check_identity
from persistio.model.counting import CountPlan, build
from persistio.model.counts import Count
from persistio.model.intents import Acid, Amorphous, Intent, Priority, Tier, Volatile
from persistio.model.limits import Check, checker

T = TypeVar("T")

PLAN_ATTRIBUTE = "__persistio_plan__"
# Column names are quoted by every backend, but users read these tables with plain SQL and CQL.
FIELD_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True, eq=False)
class BoundIntent:
    """An intent checked against its model: what it stores and how that is keyed.

    What a save asks of it on every call is copied into plain attributes once, here. A
    ``Count`` stores a tally, not the object: ``project`` is then its tally function.
    """

    intent: Intent
    model: type
    stored: type
    codec: Codec
    counting: CountPlan | None = None
    name: str = field(init=False)
    tier: Tier = field(init=False)
    priority: Priority = field(init=False)
    key: tuple[str, ...] = field(init=False)
    project: Callable[[Any], Any] | None = field(init=False)
    # what the store would refuse, checked before anything is written (None: nothing can be;
    # a Count checks the counted object's key in its tally function)
    limits: Check | None = field(init=False)
    # a save's payload for this intent is the model's own encoding (no projection, msgpack)
    shares_payload: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.intent.name)
        object.__setattr__(self, "tier", self.intent.tier)
        object.__setattr__(self, "priority", self.intent.priority)
        object.__setattr__(self, "key", self.intent.key_fields())
        counting = self.counting
        object.__setattr__(
            self, "project", self.intent.project if counting is None else counting.tally
        )
        limits = None if counting else checker(self.tier, self.codec, self.key)
        object.__setattr__(self, "limits", limits)
        shares = self.stored is self.model and self.codec.encoding == "msgpack"
        object.__setattr__(self, "shares_payload", shares)

    def derive(self, obj: Any) -> Any | None:
        """The object this intent stores for ``obj``, or None when ``when`` says skip."""
        if self.intent.when is not None and not self.intent.when(obj):
            return None
        if self.intent.project is not None:
            return self.intent.project(obj)
        return obj


@dataclass(frozen=True, eq=False)
class Plan:
    """A model's validated intents, in declaration order."""

    model: type
    model_name: str
    codec: Codec
    intents: tuple[BoundIntent, ...]
    by_name: dict[str, BoundIntent] = field(repr=False)

    def intent(self, name: str) -> BoundIntent:
        try:
            return self.by_name[name]
        except KeyError:
            raise IntentError(
                f"{self.model.__qualname__} declares no intent {name!r}; "
                f"it has {tuple(self.by_name)}"
            ) from None


class Registry:
    """Every model decorated in this process, by name.

    Two models may declare intents of one name: which store keeps them apart is the store's
    business (``persistio.model.catalog``). ``version`` changes with every declaration, so a store
    knows when to look again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, Plan] = {}
        self.version = 0

    def add(self, plan: Plan) -> None:
        with self._lock:
            # re-decoration (a module reload) replaces the old plan
            self._plans[plan.model_name] = plan
            self.version += 1

    def plans(self) -> list[Plan]:
        with self._lock:
            return list(self._plans.values())

    def plan_named(self, model_name: str) -> Plan | None:
        return self._plans.get(model_name)


REGISTRY = Registry()


def _name(model: type) -> str:
    return f"{model.__module__}:{model.__qualname__}"


def plan_of(model: type) -> Plan:
    """The plan ``@persist`` attached to ``model``."""
    plan = model.__dict__.get(PLAN_ATTRIBUTE)
    if not isinstance(plan, Plan):
        raise IntentError(
            f"{getattr(model, '__qualname__', model)!r} is not a persisted model: "
            "decorate it with @persistio.persist(...)"
        )
    return plan


def persist(*intents: Intent, strict: bool = False) -> Callable[[type[T]], type[T]]:
    """Declare why each piece of a model is stored; attach the checked plan to the class.

    An Amorphous intent whose ``partition + order`` (the row's identity) holds no field that
    identifies the object (one named ``id``, or the model's Acid key) warns with
    ``KeyCollisionWarning``: equal values would be one row. ``strict=True`` refuses it.

    Raises:
        IntentError: at decoration time, naming the model, the intent and the fix.
    """

    def decorate(model: type[T]) -> type[T]:
        if isinstance(getattr(model, "__dict__", {}).get(PLAN_ATTRIBUTE), Plan):
            # two plans for one model: one would silently win over the other
            raise IntentError(
                f"@persist on {model.__qualname__!r}: the model is already decorated with "
                "@persist; declare all of its intents in one @persist(...)"
            )
        plan = _build_plan(model, intents, strict)
        REGISTRY.add(plan)
        setattr(model, PLAN_ATTRIBUTE, plan)
        return model

    return decorate


def _build_plan(model: type, intents: tuple[Intent, ...], strict: bool = False) -> Plan:
    where = f"@persist on {getattr(model, '__qualname__', model)!r}"
    if not isinstance(model, type) or fields_of(model) is None:
        raise IntentError(f"{where}: decorate a msgspec.Struct (or a dataclass)")
    if not intents:
        raise IntentError(f"{where}: declare at least one intent, e.g. pio.Acid('name', key=...)")
    bound: list[BoundIntent] = []
    seen: set[str] = set()
    for intent in intents:
        if not isinstance(intent, Intent):
            raise IntentError(
                f"{where}: {intent!r} is not an intent (Transitory, Volatile, Acid, Amorphous, "
                "Count)"
            )
        label = f"{where}, intent {intent.name!r}"
        problems = intent.problems()
        if problems:
            raise IntentError(f"{label}: " + "; ".join(problems))
        if intent.name in seen:
            raise IntentError(f"{label}: the model declares this name twice; names are unique")
        seen.add(intent.name)
        stored = _stored_type(model, intent, label)
        if isinstance(intent, Count):
            counting = build(intent, model, stored, label)
            bound.append(
                BoundIntent(
                    intent, model, counting.tally_type, Codec(counting.tally_type), counting
                )
            )
            continue
        codec = Codec(stored, getattr(intent, "encoding", "msgpack"))
        _check_fields(codec, intent, label)
        if isinstance(intent, Amorphous):
            names = [c.name for c in codec.columns]
            keys = acid_keys(intents)
            check_identity(label, intent, names, stored is model, keys, strict=strict)
        bound.append(BoundIntent(intent, model, stored, codec))
    by_name = {b.name: b for b in bound}
    for b in bound:
        if isinstance(b.intent, Volatile) and b.intent.rebuild_from is not None:
            _check_rebuild(b, by_name, f"{where}, intent {b.name!r}")
    return Plan(model, _name(model), Codec(model), tuple(bound), by_name)


def _stored_type(model: type, intent: Intent, label: str) -> type:
    if intent.project is None:
        return model
    stored = _return_annotation(intent.project, label)
    if not isinstance(stored, type) or fields_of(stored) is None:
        raise IntentError(
            f"{label}: project= must be annotated to return a msgspec.Struct or dataclass "
            f"(got {stored!r}), e.g. def to_feed(c: Checkin) -> FeedItem"
        )
    return stored


def _return_annotation(project: Callable[..., Any], label: str) -> Any:
    # Only the return annotation is resolved: the parameter usually names the model being
    # decorated, which does not exist yet under its name while the decorator runs.
    annotation = getattr(project, "__annotations__", {}).get("return")
    if not isinstance(annotation, str):
        return annotation

    def probe() -> None: ...

    probe.__annotations__ = {"return": annotation}
    try:
        return typing.get_type_hints(probe, globalns=getattr(project, "__globals__", {}))["return"]
    except Exception as exc:
        raise IntentError(f"{label}: cannot resolve project='s return type: {exc}") from exc


def _check_fields(codec: Codec, intent: Intent, label: str) -> None:
    by_name = {c.name: c for c in codec.columns}
    stored = codec.model.__qualname__
    if isinstance(intent, Acid):
        for name in intent.index_fields():
            found = by_name.get(name)
            if found is None or found.kind not in KEY_KINDS:
                raise IntentError(
                    f"{label}: index field {name!r} must be a field of {stored} holding an int, "
                    f"str, bool, datetime, date, UUID, Decimal or bytes; its fields are "
                    f"{tuple(by_name)}"
                )
    if intent.tier in (Tier.ACID, Tier.AMORPHOUS):
        for column in codec.columns:
            if not FIELD_PATTERN.fullmatch(column.name):
                raise IntentError(
                    f"{label}: field {column.name!r} of {stored} cannot be a column name: "
                    "use letters, digits and _ (starting with a letter)"
                )
    for name in intent.key_fields():
        found = by_name.get(name)
        if found is None:
            raise IntentError(
                f"{label}: key field {name!r} is not a field of {stored}; "
                f"its fields are {tuple(by_name)}"
            )
        if found.kind not in KEY_KINDS or found.nullable:
            raise IntentError(
                f"{label}: key field {name!r} must be a non-optional int, str, bool, datetime, "
                f"date, UUID, Decimal or bytes (it is {found.kind}"
                f"{', optional' if found.nullable else ''})"
            )


def _check_rebuild(b: BoundIntent, by_name: dict[str, BoundIntent], label: str) -> None:
    assert isinstance(b.intent, Volatile)
    source = by_name.get(b.intent.rebuild_from or "")
    if source is None or source.tier not in (Tier.ACID, Tier.AMORPHOUS) or source.counting:
        raise IntentError(
            f"{label}: rebuild_from={b.intent.rebuild_from!r} must name an Acid or Amorphous "
            "intent of the same model"
        )
    if source.stored is not b.stored or not set(source.key) <= set(b.key):
        raise IntentError(
            f"{label}: rebuild_from={source.name!r} must store the same type, keyed by fields "
            f"that the volatile key {b.key} contains"
        )
