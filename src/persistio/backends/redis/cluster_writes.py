"""Writes to a Redis Cluster: one script call per hash slot, one packed request per master.

Every key carries a hash tag (``pio:{<stream>}``, ``pio:v:<intent>:{<key>}``) and a script call
may only touch one slot, so a batch of writes is grouped by slot (each stream's trim after its
appends), every call bound for one master is packed into one request, and all masters are
written before any answer is read: a save that touches three masters costs one round trip to
each, at the same time.

A call that meets ``MOVED`` / ``ASK`` (a failover or a resharding), ``TRYAGAIN``, ``NOSCRIPT`` (a
promoted replica: scripts are not replicated) or a lost connection is sent again once the slot
map is read again; a batch whose calls still fail raises an outage as a whole (the router then
buffers it). The calls that did land stay: a deduplicated append or a volatile write sent again
changes nothing, and a task queue entry sent twice only repeats a last-write-wins write. Appends
that ask for ``replicas`` are followed by ``WAIT`` on each master they reached, on the same
connection.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

from persistio.backends.base import Append, Op, Options, Put, hash_tag
from persistio.backends.redis.client import unavailable_on_outage
from persistio.backends.redis.scripts import WRITE_SCRIPT
from persistio.backends.redis.writes import (
    WRITE_CHUNK,
    Call,
    ScriptWrites,
    Trim,
    check_replicas,
    trims_of,
    wait_ms,
)
from persistio.errors import BackendUnavailable, InDoubt
from persistio.model.partitions import slot as slot_of

if HIREDIS_AVAILABLE:
    import hiredis

ATTEMPTS = 4  # sends of one call: redirects and TRYAGAIN resolve within a few
_REDIRECTS = (MovedError, AskError, ReadOnlyError, ClusterDownError, TryAgainError)


class _Slotted(Call):
    """A write-script call for one slot; where the answers for its ops go; where to send it."""

    __slots__ = ("ask", "done", "indexes", "slot", "trims")

    def __init__(self, call: Call, slot: int, indexes: list[int], trims: list[Trim]) -> None:
        super().__init__(call.keys, call.args, call.replicas)
        self.slot = slot
        self.indexes = indexes  # the ops' places in the batch; their trims' answers follow
        self.trims = trims
        self.ask: str | None = None  # an ASK redirect's node: sent there with ASKING
        self.done = False  # it ran (an answer came)


class ClusterWrites(ScriptWrites):
    """The write method of ``RedisClusterStore`` (see the module docstring)."""

    _options: Options
    _sha: str  # the write script's; loaded again on a master that answers NOSCRIPT
    _stream_slots: dict[str, int]  # stream name -> its slot
    _replicas_wanted: int  # the most replicas an append has asked for (warnings())

    def _redis(self) -> RedisCluster:
        raise NotImplementedError

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]:
        """Every op, one script call per slot, one packed request per master (see above)."""
        if not ops:
            return []
        tier = "transitory" if isinstance(ops[0], Append) else "volatile"
        results = [False] * len(ops)
        with unavailable_on_outage(tier, self._where):
            client = self._redis()
            calls = self._slotted(ops, repr(time.time()))
            sent = list(calls)
            attempt = reloads = 0
            unanswered = False
            while True:
                calls, errors = self._send(client, calls, results, deadline)
                if not calls:
                    return results
                unanswered = unanswered or any(isinstance(e, _Unanswered) for e in errors)
                if all(isinstance(e, NoScriptError) for e in errors) and reloads < ATTEMPTS:
                    reloads += 1  # a master just got the script (a promoted replica): no wait
                    continue
                attempt += 1
                late = deadline is not None and time.monotonic() >= deadline
                if attempt >= ATTEMPTS or late:
                    # still redirected, or a master still down: an outage, which the caller
                    # buffers; what did land stays (see the module docstring), so a batch
                    # part of which ran, or may have, is in doubt rather than not written
                    if unanswered or any(c.done for c in sent):
                        raise InDoubt(
                            f"{tier} backend {self._where}: part of the writes ran, or may "
                            f"have, before the cluster stopped taking them: {errors[0]}",
                            tier=tier,
                        )
                    raise RedisConnectionError(f"the cluster did not take the writes: {errors[0]}")
                if any(
                    isinstance(e, RedisConnectionError | MovedError | ReadOnlyError) for e in errors
                ):
                    self._refresh(client)  # a failover promoted a replica, or a slot moved
                time.sleep(0.01 * attempt)

    def _slotted(self, ops: Sequence[Op], now: str) -> list[_Slotted]:
        """The ops by slot, in calls of up to WRITE_CHUNK; each stream's trim after its appends."""
        by_slot: dict[int, list[int]] = {}
        for i, op in enumerate(ops):
            by_slot.setdefault(self._slot(op), []).append(i)
        trims: dict[int, list[Trim]] = {}
        for trim in trims_of(ops):
            trims.setdefault(self._stream_slot(trim.stream.name), []).append(trim)
        calls: list[_Slotted] = []
        for slot, indexes in by_slot.items():
            for start in range(0, len(indexes), WRITE_CHUNK):
                chunk = indexes[start : start + WRITE_CHUNK]
                last = start + WRITE_CHUNK >= len(indexes)
                its = trims.get(slot, []) if last else []
                call = self._call([*(ops[i] for i in chunk), *its], now)
                calls.append(_Slotted(call, slot, chunk, its))
        return calls

    def _slot(self, op: Op) -> int:
        if type(op) is Append:
            return self._stream_slot(op.stream.name)
        if type(op) is Put:
            return slot_of(op.key)
        return 0  # refused by _call, with the op named

    def _stream_slot(self, name: str) -> int:
        found = self._stream_slots.get(name)
        if found is None:
            found = self._stream_slots[name] = slot_of(hash_tag(name))
        return found

    def _send(
        self,
        client: RedisCluster,
        calls: list[_Slotted],
        results: list[bool],
        deadline: float | None,
    ) -> tuple[list[_Slotted], list[BaseException]]:
        """Send ``calls`` (to every master first, then read each); the calls to send again, and
        why. Raises what sending again cannot help (bad data, too few replicas)."""
        by_node: dict[str, tuple[ClusterNode, list[_Slotted]]] = {}
        for call in calls:
            node = self._node(client, call)
            by_node.setdefault(node.name, (node, []))[1].append(call)
        sent = [self._write_node(client, n, c, deadline) for n, c in by_node.values()]
        again: list[_Slotted] = []
        errors: list[BaseException] = []
        for node_calls, conn, pool, waited, unsent in sent:
            failure = unsent
            try:
                if failure is None:
                    failure = self._read_node(conn, node_calls, results, waited, again)
            finally:
                pool.release(conn)
            if failure is not None:
                errors.append(failure)
                if isinstance(failure, RedisConnectionError):
                    again.extend(c for c in node_calls if c not in again)
        fatal = [e for e in errors if not isinstance(e, _RETRIED)]
        if fatal:
            raise fatal[0].original if isinstance(fatal[0], _Failed) else fatal[0]
        return again, errors

    @staticmethod
    def _node(client: RedisCluster, call: _Slotted) -> ClusterNode:
        if call.ask:
            found: ClusterNode | None = client.get_node(node_name=call.ask)  # type: ignore[no-untyped-call]
            if found is not None:
                return found
            call.ask = None
        try:
            node: ClusterNode = client.nodes_manager.get_node_from_slot(call.slot)
        except RedisClusterException as exc:  # the slot is served by no one right now
            raise RedisConnectionError(f"slot {call.slot}: {exc}") from exc
        return node

    @staticmethod
    def _refresh(client: RedisCluster) -> None:
        """Read the slot map again (a failover promoted a replica, a slot moved)."""
        try:
            client.nodes_manager.initialize()
        except RedisClusterException as exc:
            raise RedisConnectionError(f"no node of the cluster answers: {exc}") from exc

    def _write_node(
        self, client: RedisCluster, node: ClusterNode, calls: list[_Slotted], deadline: float | None
    ) -> tuple[list[_Slotted], Any, Any, int, BaseException | None]:
        """Send one master its calls (and WAIT), packed in one request; don't read yet."""
        pool: Any = client.get_redis_connection(node).connection_pool
        conn: Any = pool.get_connection()
        commands: list[tuple[Any, ...]] = []
        for call in calls:
            if call.ask:
                commands.append(("ASKING",))
            commands.append(("EVALSHA", self._sha, len(call.keys), *call.keys, *call.args))
        replicas = max(c.replicas for c in calls)
        waited = 0
        if replicas:
            self._replicas_wanted = max(self._replicas_wanted, replicas)
            waited = wait_ms(deadline, self._options.request_timeout)
            commands.append(("WAIT", replicas, waited))
        try:
            conn.send_packed_command(_pack(conn, commands))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            conn.disconnect()
            return calls, conn, pool, waited, RedisConnectionError(f"{node.name}: {exc}")
        return calls, conn, pool, waited, None

    def _read_node(
        self,
        conn: Any,
        calls: list[_Slotted],
        results: list[bool],
        waited: int,
        again: list[_Slotted],
    ) -> BaseException | None:
        """Read every answer of one master (so its connection stays clean): results go in
        place, redirected calls to ``again``; the first error, if any."""
        errors: list[BaseException] = []
        try:
            for call in calls:
                error = self._read_call(conn, call, results)
                if error is not None:
                    errors.append(error)
                    if not isinstance(error, _FAILED):
                        again.append(call)
            if waited:
                error = self._read_wait(conn, calls, waited)
                if isinstance(error, ReadOnlyError):  # the node is a replica now: all again
                    again.extend(c for c in calls if c not in again)
                if error is not None:
                    errors.append(error)
            if any(isinstance(e, NoScriptError) for e in errors):
                conn.send_command("SCRIPT", "LOAD", WRITE_SCRIPT)
                self._sha = conn.read_response().decode()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            conn.disconnect()  # a reply may be in flight: never reuse this connection
            return _Unanswered(f"{conn.host}:{conn.port}: {exc}")
        except BaseException:
            conn.disconnect()
            raise
        return errors[0] if errors else None

    def _read_call(self, conn: Any, call: _Slotted, results: list[bool]) -> BaseException | None:
        """One call's answer: its ops' results (and trims' counts), or why it must go again
        (a redirect, a missing script) or failed (a script error: bad data)."""
        if call.ask:
            _asking(conn)
        try:
            reply = conn.read_response()
        except NoScriptError as exc:  # a promoted replica: scripts are not replicated
            return exc
        except _REDIRECTS as exc:
            call.ask = f"{exc.host}:{exc.port}" if type(exc) is AskError else None
            return exc
        except ResponseError as exc:
            return _Failed(exc)
        call.ask, call.done = None, True
        ops = len(call.indexes)
        for i, r in zip(call.indexes, reply[:ops], strict=True):
            results[i] = int(r) == 1
        if call.trims:
            self._count_trims(call.trims, [int(r) for r in reply[ops:]])
        return None

    def _read_wait(self, conn: Any, calls: list[_Slotted], waited: int) -> BaseException | None:
        """WAIT's answer: None when enough replicas took the writes."""
        try:
            acked = int(conn.read_response())
        except ResponseError as exc:  # "WAIT cannot be used with replica instances"
            return ReadOnlyError(str(exc))
        wanted = max(c.replicas for c in calls)
        try:
            check_replicas(acked, wanted, waited, f"{self._where} {conn.host}:{conn.port}")
        except BackendUnavailable as exc:
            return exc
        return None


_RETRIED = (*_REDIRECTS, RedisConnectionError, NoScriptError)


class _Unanswered(RedisConnectionError):
    """Sent, but the connection failed before every answer came: those calls may have run."""


class _Failed(ResponseError):
    """A script error (bad data): the call is not sent again, the batch fails with it."""

    def __init__(self, original: ResponseError) -> None:
        super().__init__(str(original))
        self.original = original


_FAILED = (_Failed, BackendUnavailable)


def _pack(conn: Any, commands: list[tuple[Any, ...]]) -> list[bytes]:
    """The commands as one buffer: hiredis packs each in one C call (redis-py's own packing
    checks every argument in Python first, which costs more than the round trip here)."""
    if HIREDIS_AVAILABLE:
        return [b"".join(hiredis.pack_command(c) for c in commands)]
    packed: list[bytes] = conn.pack_commands(commands)
    return packed


def _asking(conn: Any) -> None:
    """ASKING's +OK; an error here would show in the call's own reply just after."""
    with contextlib.suppress(ResponseError):
        conn.read_response()


__all__ = ["ClusterWrites"]
