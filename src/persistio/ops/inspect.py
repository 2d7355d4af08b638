"""``persistio inspect``: what persistio keeps in Redis, decoded to JSON.

Volatile values and stream entries hold msgpack (compact and fast to write) unless their intent
says ``encoding="json"``; this decodes one key
— a volatile value (``pio:v:<intent>:{<key>}``), a stream (``pio:{<intent>}``, a partition
``pio:{<intent>.<i>}``), a task queue (``pio:{tasks.normal}``) or a dead-letter stream
(``pio:{<stream>}:dead``) — with the model that wrote it when the store's module declares it,
else as plain msgpack. Services in other languages read the same bytes with any msgpack
library: see docs/operations.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from persistio.backends.base import Options
from persistio.errors import PersistioError
from persistio.model.declare import REGISTRY, BoundIntent
from persistio.model.intents import Tier
from persistio.model.tasks import TASK_DECODER

_VOLATILE = re.compile(r"pio:v:(?P<intent>[a-z][a-z0-9_]*):\{(?P<key>[^}]*)\}")
_STREAM = re.compile(r"pio:\{(?P<name>[a-z0-9_.]+)\}(?P<dead>:dead)?")
_TASKS = re.compile(r"(?:[a-z0-9_]+\.)?tasks\.(?:high|normal|low)(?:\.\d+){0,2}")
_PARTITION = re.compile(r"(?P<base>.+?)(?:\.\d+){1,2}")


def redis_client(url: str) -> Any:
    """A client for a transitory or volatile URL (the first of a failover list)."""
    from persistio.backends.redis.client import CLUSTER_SCHEMES, open_client, parse_cluster_url

    first = url.split(",", 1)[0]
    if first.partition("://")[0].lower() in CLUSTER_SCHEMES:
        from redis.cluster import ClusterNode, RedisCluster

        ep = parse_cluster_url(first, "inspect")
        node: Any = ClusterNode  # untyped in redis-py
        return RedisCluster(
            startup_nodes=[node(h, p) for h, p in ep.hosts],
            username=ep.username,
            password=ep.password,
            ssl=ep.tls,
        )
    return open_client(first, Options(Path(".")), "inspect")


Intents = Callable[[Tier, str], "BoundIntent | None"]
"""The intent a stored name belongs to, in the inspecting store (``Catalog.stored_intent``)."""


def inspect_key(
    client: Any, key: str, intents: Intents, entry_id: str | None = None, count: int = 10
) -> Any:
    """What ``key`` holds, decoded: a dict for a volatile value, a list of entries for a
    stream (``entry_id``: that entry only; else the oldest ``count``).

    Raises:
        PersistioError: the key is absent, or is not one persistio writes.
    """
    volatile = _VOLATILE.fullmatch(key)
    if volatile is not None:
        return _volatile(client, key, volatile["intent"], intents)
    stream = _STREAM.fullmatch(key)
    if stream is None:
        raise PersistioError(
            f"{key!r} is not a key persistio writes: pio:v:<intent>:{{<key>}} (volatile), "
            "pio:{<stream>} or pio:{<stream>}:dead"
        )
    if entry_id is not None:
        entries = client.xrange(key, entry_id, entry_id)
    else:
        entries = client.xrange(key, "-", "+", count=count)
    if not entries and not client.exists(key):
        raise PersistioError(f"{key!r}: no such stream")
    if entry_id is not None and not entries:
        raise PersistioError(f"{key!r}: no entry {entry_id!r}")
    name = stream["name"]
    bound = None if _TASKS.fullmatch(name) else _intent(intents, Tier.TRANSITORY, name)
    return [_entry(entry, bound, bool(stream["dead"])) for entry in entries]


def _volatile(client: Any, key: str, intent: str, intents: Intents) -> dict[str, Any]:
    fields = client.hgetall(key)
    if not fields:
        raise PersistioError(f"{key!r}: no such volatile value (absent or expired)")
    ttl_ms = client.pttl(key)
    bound = _intent(intents, Tier.VOLATILE, intent)
    return {
        "key": key,
        "intent": intent,
        "model": None if bound is None else bound.model.__qualname__,
        "write_id": _text(fields.get(b"w")),
        "ts": int(fields[b"ts"]),
        "expires_in_s": None if ttl_ms < 0 else ttl_ms / 1000,
        "value": _decoded(fields.get(b"p", b""), bound),
    }


def _entry(entry: Any, bound: BoundIntent | None, dead: bool) -> dict[str, Any]:
    entry_id, raw = entry
    fields = {str(_text(k)): v for k, v in raw.items()}
    payload = fields.pop("payload" if dead else "p", b"")
    out: dict[str, Any] = {"id": _text(entry_id)}
    for name, value in fields.items():
        label = {"d": "item", "t": "enqueued_at"}.get(name, name)
        out[label] = _text(value)
    if bound is None and not dead:  # a task queue: the task, and the object it writes
        out["task"] = _task(payload)
    elif dead and bound is None:
        out["value"] = _task(payload) if _is_task(payload) else _decoded(payload, None)
    else:
        out["value"] = _decoded(payload, bound)
    return out


def _is_task(payload: bytes) -> bool:
    try:
        TASK_DECODER.decode(payload)
    except msgspec.DecodeError:
        return False
    return True


def _task(payload: bytes) -> dict[str, Any]:
    try:
        task = TASK_DECODER.decode(payload)
    except msgspec.DecodeError as exc:
        return {"undecodable": str(exc), "bytes": payload.hex()}
    plan = REGISTRY.plan_named(task.model)
    bound = None if plan is None else plan.by_name.get(task.intent)
    out = msgspec.to_builtins(task)
    names = [*task.__struct_fields__]
    found = dict(zip(names, out, strict=True))
    found["payload"] = _decoded(task.payload, bound)
    if not found.get("trace"):
        found.pop("trace", None)
    return found


def _decoded(payload: bytes, bound: BoundIntent | None) -> Any:
    """The object as JSON-ready builtins: through its model when known, else plain msgpack."""
    if bound is not None:
        try:
            return msgspec.to_builtins(bound.codec.decode(payload))
        except (ValueError, msgspec.DecodeError):
            pass  # written by another version of the model: show what is there
    try:
        if payload[:1] in (b"{", b"["):  # an intent declared with encoding="json"
            return msgspec.json.decode(payload)
        return msgspec.to_builtins(msgspec.msgpack.decode(payload))
    except msgspec.DecodeError as exc:
        return {"undecodable": str(exc), "bytes": payload.hex()}


def _intent(intents: Intents, tier: Tier, name: str) -> BoundIntent | None:
    found = intents(tier, name)
    if found is None:
        base = _PARTITION.fullmatch(name)
        if base is not None:
            found = intents(tier, base["base"])
    return found


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["inspect_key", "redis_client"]
