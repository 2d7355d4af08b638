"""Refuse early what a store would refuse late.

A value that PostgreSQL or Cassandra would refuse is refused by ``save`` before anything is
written, with a ``ValidationError`` naming the field, the intent and the limit: once a write is
queued or spooled, the store's refusal could only set it aside. The checks are compiled once per
intent from its columns, so a save pays only for the fields that can break a limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from persistio.errors import ValidationError
from persistio.model.codec import INT64_MAX, INT64_MIN, Codec
from persistio.model.intents import Tier

# PostgreSQL: a B-tree entry may not exceed about a third of a page (2704 bytes in version 4);
# the primary key's columns must fit in it with their headers.
PG_KEY_BYTES = 2600
# Cassandra: a partition key (and each clustering value) is at most 64 KiB - 1.
CASSANDRA_KEY_BYTES = 65_535

Check = Callable[[Any, str, str], None]


def checker(tier: Tier, codec: Codec, key: tuple[str, ...]) -> Check | None:
    """The check for objects an intent of ``tier`` stores, or None when nothing can break."""
    checks: list[Check] = []
    by_name = {c.name: c for c in codec.columns}
    if tier is Tier.ACID:
        ints = [c.name for c in codec.columns if c.kind == "int"]
        texts = [c.name for c in codec.columns if c.kind == "str"]
        jsons = [c.name for c in codec.columns if c.kind == "json"]
        if ints:
            checks.append(_int64(ints, "a 64-bit integer column"))
        if texts:
            checks.append(_no_nul(texts))
        if jsons:
            checks.append(_json_safe(jsons))
        sized = [k for k in key if by_name[k].kind in ("str", "bytes")]
        if sized:
            checks.append(_key_size(sized, PG_KEY_BYTES, "PostgreSQL's index entry"))
    elif tier is Tier.AMORPHOUS:
        ints = [k for k in key if by_name[k].kind == "int"]
        sized = [k for k in key if by_name[k].kind in ("str", "bytes")]
        if ints:
            checks.append(_int64(ints, "Cassandra's bigint"))
        if sized:
            checks.append(_key_size(sized, CASSANDRA_KEY_BYTES, "a Cassandra key"))
    if not checks:
        return None

    def check(obj: Any, where: str, intent: str) -> None:
        for one in checks:
            one(obj, where, intent)

    return check


def _refuse(where: str, intent: str, field: str, problem: str) -> ValidationError:
    return ValidationError(f"{where}, intent {intent!r}: field {field!r} {problem}")


def _int64(fields: list[str], limit: str) -> Check:
    def check(obj: Any, where: str, intent: str) -> None:
        for name in fields:
            value = getattr(obj, name)
            if value is not None and not INT64_MIN <= value <= INT64_MAX:
                raise _refuse(where, intent, name, f"= {value} does not fit {limit}")

    return check


def _no_nul(fields: list[str]) -> Check:
    def check(obj: Any, where: str, intent: str) -> None:
        for name in fields:
            value = getattr(obj, name)
            if value is not None and "\x00" in value:
                raise _refuse(
                    where, intent, name, "holds a NUL character, which PostgreSQL text refuses"
                )

    return check


def _json_safe(fields: list[str]) -> Check:
    def check(obj: Any, where: str, intent: str) -> None:
        for name in fields:
            problem = _json_problem(getattr(obj, name))
            if problem:
                raise _refuse(where, intent, name, f"holds {problem}, which JSON columns refuse")

    return check


def _json_problem(value: Any) -> str | None:
    """NaN or an infinity, or a NUL character in text, anywhere in a nested value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return repr(item)
        if isinstance(item, str) and "\x00" in item:
            return "a NUL character"
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif hasattr(item, "__struct_fields__"):
            stack.extend(getattr(item, f) for f in item.__struct_fields__)
        elif hasattr(item, "__dataclass_fields__"):
            stack.extend(getattr(item, f) for f in item.__dataclass_fields__)
    return None


def _key_size(fields: list[str], limit: int, what: str) -> Check:
    def check(obj: Any, where: str, intent: str) -> None:
        total = 0
        for name in fields:
            value = getattr(obj, name)
            size = len(value.encode()) if isinstance(value, str) else len(value)
            if size > limit:
                raise _refuse(where, intent, name, f"is {size} bytes: {what} holds {limit}")
            total += size
        if total > limit:
            raise _refuse(
                where,
                intent,
                fields[0],
                f"and the other key fields are {total} bytes: {what} holds {limit}",
            )

    return check
