"""Ops -> the write script's KEYS and ARGV, trims and the replica wait: what every Redis
backend shares.

A batch of ops is one call of ``WRITE_SCRIPT`` (see ``redis_scripts``), followed by one trim per
stream it appended to whose spec bounds it (``max_len`` / ``max_age``). Appends to a stream
whose spec asks for ``replicas`` are acknowledged only once that many replicas hold them:
``WAIT <replicas> <ms>`` right after the script, on the same connection (WAIT counts that
connection's writes; it cannot run inside a script).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from redis.typing import EncodableT

from persistio.backends.base import Append, Op, Put, StreamSpec, refuse
from persistio.backends.redis.cache import volatile_key
from persistio.backends.redis.streams import stream_key
from persistio.errors import BackendUnavailable

# Ops per script call: bounds one call's run time on the server (a script blocks the server
# while it runs) and the request's size; a bigger batch is split into calls.
WRITE_CHUNK = 1000
WAIT_SHARE = 0.9  # of the time left: WAIT must answer before the socket times out


class Trim(NamedTuple):
    """Keep a stream within its max_len / max_age (sent after the batch's appends)."""

    stream: StreamSpec
    max_len: int | str  # '' when unbounded
    min_id: int | str  # the oldest entry id kept, in ms; '' when unbounded


def trims_of(ops: Sequence[Op]) -> list[Trim]:
    """One trim per stream that the batch appends to and whose spec bounds it."""
    seen: dict[str, Trim] = {}
    now_ms = time.time() * 1000
    for op in ops:
        if type(op) is not Append:
            continue
        for spec in op.targets():
            if spec.name in seen or (spec.max_len is None and spec.max_age_seconds is None):
                continue
            min_id: int | str = ""
            if spec.max_age_seconds is not None:
                min_id = max(0, int(now_ms - spec.max_age_seconds * 1000))
            seen[spec.name] = Trim(spec, "" if spec.max_len is None else spec.max_len, min_id)
    return list(seen.values())


class Call:
    """One script call: its keys and arguments, and the replicas its appends ask for."""

    __slots__ = ("args", "keys", "replicas")

    def __init__(self, keys: list[str], args: list[EncodableT], replicas: int) -> None:
        self.keys = keys
        self.args = args
        self.replicas = replicas


class ScriptWrites:
    """Builds write-script calls; ``_keys`` caches key names per stream and intent;
    ``trimmed`` counts the entries trims removed, per stream (this process's count)."""

    _window_ms: int
    _keys: dict[str, str]
    _where: str
    trimmed: dict[str, int]

    def _call(self, ops: Sequence[Op | Trim], now: str) -> Call:
        keys: list[str] = []
        args: list[EncodableT] = [self._window_ms, now]
        known = self._keys
        replicas = 0
        wall = float(now)
        for op in ops:
            if type(op) is Append:
                stream = op.stream
                name = stream.name
                key = known.get(name) or known.setdefault(name, stream_key(name))
                if stream.replicas > replicas:  # noqa: PLR1730 - a compare beats max() here
                    replicas = stream.replicas
                if op.not_before > wall:  # delayed: a sorted set holds it until it is due
                    _delayed(op, key, keys, args)
                elif op.copies:  # one marker, then the entry in every consumer group's stream
                    keys.append(f"{key}:seen:{op.item_id}")
                    keys += (stream_key(c.name) for c in op.copies)
                    args += ("f", len(op.copies), op.item_id, op.payload)
                elif op.dedupe:
                    keys += (key, f"{key}:seen:{op.item_id}")
                    args += ("a", op.item_id, op.payload)
                else:
                    keys.append(key)
                    args += ("q", op.item_id, op.payload)
            elif type(op) is Trim:
                keys.append(stream_key(op.stream.name))
                args += ("t", op.max_len, op.min_id)
            elif type(op) is Put:
                slot = f"v:{op.intent}"
                prefix = known.get(slot) or known.setdefault(slot, volatile_key(op.intent, "")[:-2])
                keys.append(f"{prefix}{{{op.key}}}")
                args += ("v", op.ts, op.expires_at_us // 1000, op.payload, op.wid)
            else:
                raise refuse(self, op)
        return Call(keys, args, replicas)

    def _calls(self, ops: Sequence[Op], trims: Sequence[Trim], now: str) -> list[Call]:
        """Calls of up to WRITE_CHUNK ops; the trims go last, after the appends that may have
        grown their streams."""
        chunks: list[list[Op | Trim]] = [
            list(ops[i : i + WRITE_CHUNK]) for i in range(0, len(ops), WRITE_CHUNK)
        ]
        chunks[-1] += trims
        return [self._call(chunk, now) for chunk in chunks]

    def _count_trims(self, trims: Sequence[Trim], removed: Sequence[int]) -> None:
        for trim, n in zip(trims, removed, strict=True):
            if n:
                name = trim.stream.name
                self.trimmed[name] = self.trimmed.get(name, 0) + n


def _delayed(op: Append, key: str, keys: list[str], args: list[EncodableT]) -> None:
    """A delayed append's keys and arguments (see WRITE_SCRIPT's 'A', 'Q' and 'F')."""
    due = int(op.not_before * 1000)
    if op.copies:
        keys.append(f"{key}:seen:{op.item_id}")
        keys += (f"{stream_key(c.name)}:delayed" for c in op.copies)
        args += ("F", len(op.copies), op.item_id, op.payload, due)
    elif op.dedupe:
        keys += (f"{key}:delayed", f"{key}:seen:{op.item_id}")
        args += ("A", op.item_id, op.payload, due)
    else:
        keys.append(f"{key}:delayed")
        args += ("Q", op.item_id, op.payload, due)


def wait_ms(deadline: float | None, request_timeout: float) -> int:
    """How long WAIT may block: most of what is left before the deadline, never 0 (forever)."""
    left = request_timeout if deadline is None else deadline - time.monotonic()
    return max(1, int(min(left, request_timeout) * WAIT_SHARE * 1000))


def check_replicas(acked: Any, wanted: int, waited_ms: int, where: str) -> None:
    """Raise BackendUnavailable when fewer replicas than ``wanted`` took the writes: the save
    then buffers them, and their replay is deduplicated where they did land."""
    if int(acked) < wanted:
        raise BackendUnavailable(
            f"transitory backend {where}: {int(acked)} of {wanted} replicas acknowledged the "
            f"write within {waited_ms} ms (is a replica connected? INFO replication)",
            tier="transitory",
        )


__all__ = [
    "WRITE_CHUNK",
    "Call",
    "ScriptWrites",
    "Trim",
    "check_replicas",
    "trims_of",
    "wait_ms",
]
