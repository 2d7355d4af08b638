"""What ``status()`` reports: backends' health, queues, streams, spool and every counter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import PersistioError
from .intents import Tier
from .model import BoundIntent
from .router import Router
from .urls import masked


def _health(backend: Any) -> dict[str, Any]:
    try:
        backend.ping()
    except PersistioError as exc:
        return {"healthy": False, "error": str(exc)}
    return {"healthy": True, "error": None}


def _stream(backend: Any, specs: Sequence[Any]) -> dict[str, Any]:
    """One stream's figures, summed over its partitions (the oldest age is the oldest's)."""
    try:
        found = [backend.stats(spec) for spec in specs]
    except PersistioError as exc:
        return {"error": str(exc)}
    ages = [s.oldest_age_seconds for s in found if s.oldest_age_seconds is not None]
    return {
        "pending": sum(s.pending for s in found),
        "oldest_age_s": max(ages) if ages else None,
        "dead_letters": sum(s.dead_letters for s in found),
    }


def _warnings(backends: Sequence[Any]) -> list[str]:
    """What each backend says is risky in how its server is set up (see ``Backend``)."""
    found: list[str] = []
    for backend in backends:
        warn = getattr(backend, "warnings", None)
        if warn is None:
            continue
        try:
            found.extend(warn())
        except PersistioError:
            continue  # its health entry already says it is down
    return found


def collect_status(
    router: Router, urls: dict[Tier, str], streams: Sequence[BoundIntent]
) -> dict[str, Any]:
    backends = router.stores
    by_tier = backends.by_tier
    counters = router.spool.counters()
    spool = router.spool.depth()
    queues = {p.name.lower(): _stream(backends.transitory, s) for p, s in backends.queues.items()}
    intent_streams = {
        b.name: _stream(backends.transitory, backends.ops.streams(b)) for b in streams
    }
    dead = sum(int(s.get("dead_letters", 0)) for s in (*queues.values(), *intent_streams.values()))
    return {
        "backends": {
            tier.value: {
                "url": masked(urls[tier]),
                "circuit": backends.breakers[tier].state,
                "circuit_opened": backends.breakers[tier].opened,
                "circuit_rejected": backends.breakers[tier].rejected,
                **_health(b),
            }
            for tier, b in by_tier.items()
        },
        "queues": queues,
        "streams": intent_streams,
        "spool": {
            "depth": sum(n for n, _ in spool.values()),
            "bytes": router.spool.size()[1],
            "by_tier": {t: {"items": n, "oldest_age_s": age} for t, (n, age) in spool.items()},
            "dead_letters": router.spool.dead_count(),
        },
        "dead_letters": dead + router.spool.dead_count(),
        # per server written from the calling thread: round trips, and the saves they carried
        "group_commit": {
            c.name: {"flushes": c.flushes, "saves": c.requests, "largest": c.largest}
            for c in router.combiners.values()
        },
        # e.g. a Cassandra keyspace with one replica: one node's loss loses data
        "warnings": _warnings(backends.distinct()),
        "dropped": _prefixed(counters, "dropped:"),
        "retries": _prefixed(counters, "retries:"),
        # dead letters dropped to keep them within their count and age bounds, and purged
        "dead_letters_dropped": _prefixed(counters, "dead_letters_dropped:"),
        "dead_letters_purged": counters.get("dead_letters_purged", 0),
        "worker_errors": counters.get("worker_errors", 0),
        "buffered": counters.get("buffered", 0),
        "replayed": counters.get("replayed", 0),
    }


def _prefixed(counters: dict[str, int], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in counters.items() if k.startswith(prefix)}


def pending_work(router: Router, consumer_streams: Sequence[BoundIntent]) -> dict[str, int]:
    """Work ``drain()`` still waits for, by place; empty when everything is done."""
    backends = router.stores
    found: dict[str, int] = {}
    transitory = backends.transitory
    for priority, queue in backends.queues.items():
        n = sum(transitory.stats(spec).pending for spec in queue)
        if n:
            found[f"queue:{priority.name.lower()}"] = n
    for bound in consumer_streams:
        n = sum(transitory.stats(spec).pending for spec in backends.ops.streams(bound))
        if n:
            found[f"stream:{bound.name}"] = n
    for tier, (n, _age) in router.spool.depth().items():
        found[f"spool:{tier}"] = n
    if backends.acid.take_outbox(1, 0.0):
        found["outbox"] = 1
    return found
