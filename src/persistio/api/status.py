"""What ``status()`` reports: backends' health, queues, streams, spool and every counter.

Every question to a server is asked at once, on threads of their own, and the report is made by
the deadline plus a little: a frozen server shows up as unhealthy ("no answer within ..."), it
does not hold the report (nor ``persistio status``) for as long as it stays frozen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from persistio.backends.watchdog import in_daemon_thread
from persistio.config.urls import masked
from persistio.errors import PersistioError
from persistio.model.declare import BoundIntent
from persistio.model.intents import Tier
from persistio.write.router import Router


def _health(backend: Any) -> dict[str, Any]:
    try:
        backend.ping()
    except Exception as exc:  # whatever went wrong, the report goes on and says so
        text = str(exc) if isinstance(exc, PersistioError) else f"{type(exc).__name__}: {exc}"
        return {"healthy": False, "error": text}
    return {"healthy": True, "error": None}


def _stream(backend: Any, specs: Sequence[Any]) -> dict[str, Any]:
    """One stream's figures, summed over its partitions (the oldest age is the oldest's)."""
    try:
        found = [backend.stats(spec) for spec in specs]
    except PersistioError as exc:
        return {"error": str(exc)}
    ages = [s.oldest_age_seconds for s in found if s.oldest_age_seconds is not None]
    figures = {
        "pending": sum(s.pending for s in found),
        "oldest_age_s": max(ages) if ages else None,
        "dead_letters": sum(s.dead_letters for s in found),
    }
    delayed = sum(s.delayed for s in found)
    if delayed:  # of the pending: a delayed save's, not due yet
        figures["delayed"] = delayed
    return figures


def _warnings(backends: Sequence[Any]) -> list[str]:
    """What each backend says is risky in how its server is set up (see ``Backend``)."""
    found: list[str] = []
    for backend in backends:
        warn = getattr(backend, "warnings", None)
        if warn is None:
            continue
        try:
            found.extend(warn())
        except Exception:
            continue
    return found


GRACE = 1.0  # seconds past the deadline the report waits for a last answer


def _all_at_once(calls: dict[str, Callable[[], Any]], seconds: float) -> dict[str, Any]:
    """Run ``calls`` concurrently; each answer, or None for one that did not answer in time.

    Daemon threads: one stuck on a frozen server ends at its own deadline, and never holds the
    process at exit (``persistio status`` returns at once).
    """
    futures: dict[str, Future[Any]] = {
        name: in_daemon_thread(call, "persistio-status") for name, call in calls.items()
    }
    deadline = time.monotonic() + seconds
    answers: dict[str, Any] = {}
    for name, future in futures.items():
        try:
            answers[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            answers[name] = None
    return answers


def collect_status(
    router: Router, urls: dict[Tier, str], streams: Sequence[BoundIntent]
) -> dict[str, Any]:
    backends = router.stores
    by_tier = backends.by_tier
    counters = router.spool.counters()
    spool = router.spool.depth()
    wait = router.deadline + GRACE
    silent = {"error": f"no answer within {router.deadline}s"}

    def streams_now() -> tuple[dict[str, Any], dict[str, Any]]:
        t = backends.transitory
        return (
            {p.name.lower(): _stream(t, s) for p, s in backends.queues.items()},
            {b.name: _stream(t, backends.ops.streams(b)) for b in streams},
        )

    calls: dict[str, Callable[[], Any]] = {t.value: _bind(_health, b) for t, b in by_tier.items()}
    calls["streams"] = streams_now
    calls["warnings"] = _bind(_warnings, backends.distinct())
    answers = _all_at_once(calls, wait)
    queues, intent_streams = answers["streams"] or (
        {p.name.lower(): silent for p in backends.queues},
        {b.name: silent for b in streams},
    )
    dead = sum(int(s.get("dead_letters", 0)) for s in (*queues.values(), *intent_streams.values()))
    return {
        "backends": {
            tier.value: {
                "url": masked(urls[tier]),
                "circuit": backends.breakers[tier].state,
                "circuit_opened": backends.breakers[tier].opened,
                "circuit_rejected": backends.breakers[tier].rejected,
                **(answers[tier.value] or {"healthy": False, **silent}),
            }
            for tier in by_tier
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
        # counts: contributions waiting to be folded into their buckets' rollups (the rollup
        # lag; drain() does not wait for it: counts are exact without it); zeros where the
        # backend folds as it writes (SQLite)
        "counts": backends.amorphous.count_stats(),
        # e.g. a Cassandra keyspace with one replica: one node's loss loses data
        "warnings": answers["warnings"]
        if answers["warnings"] is not None
        else [f"the servers' setup could not be read within {router.deadline}s"],
        "dropped": _prefixed(counters, "dropped:"),
        "retries": _prefixed(counters, "retries:"),
        # items set aside for good, per stream or task queue (by every process)
        "dead_lettered": _prefixed(counters, "dead_letters:"),
        # writes (now or deferred) that lost to a newer stored value, per intent
        "superseded": _prefixed(counters, "superseded:"),
        # writes of a save that failed after its other writes landed (see Receipt.failed)
        "failed": _prefixed(counters, "failed:"),
        # dead letters dropped to keep them within their count and age bounds, and purged
        "dead_letters_dropped": _prefixed(counters, "dead_letters_dropped:"),
        "dead_letters_purged": counters.get("dead_letters_purged", 0),
        # entries of a stream that nobody consumed within its max_len / max_age, by this process
        "trimmed": dict(getattr(backends.transitory, "trimmed", {})),
        "worker_errors": counters.get("worker_errors", 0),
        "buffered": counters.get("buffered", 0),
        "replayed": counters.get("replayed", 0),
    }


def _bind(fn: Callable[[Any], Any], arg: Any) -> Callable[[], Any]:
    return lambda: fn(arg)


def _prefixed(counters: dict[str, int], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in counters.items() if k.startswith(prefix)}


def _due(stats: Any) -> int:
    """Entries a worker could take now or soon: a delayed save's are not waited for."""
    return int(stats.pending - stats.delayed)


def pending_work(
    router: Router, consumer_streams: Sequence[tuple[str, Sequence[Any]]]
) -> dict[str, int]:
    """Work ``drain()`` still waits for, by place; empty when everything is done.

    ``consumer_streams``: this process's consumers, each with the streams it reads.
    """
    backends = router.stores
    found: dict[str, int] = {}
    transitory = backends.transitory
    for priority, queue in backends.queues.items():
        n = sum(_due(transitory.stats(spec)) for spec in queue)
        if n:
            found[f"queue:{priority.name.lower()}"] = n
    for name, specs in consumer_streams:
        n = sum(_due(transitory.stats(spec)) for spec in specs)
        if n:
            found[f"stream:{name}"] = n
    for tier, (n, _age) in router.spool.depth().items():
        found[f"spool:{tier}"] = n
    if backends.acid.take_outbox(1, 0.0):
        found["outbox"] = 1
    return found
