"""The simulation's final summary: throughput, lag per priority, badges, what each store holds."""

from __future__ import annotations

import statistics
from datetime import timedelta
from typing import Any

import persistio as pio

from . import inventory
from .reads import venue_checkins
from .simulate import RunStats
from .world import World


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def _quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def summary(
    store: pio.Persistio,
    world: World,
    stats: RunStats,
    *,
    mode: str,
    batch: int,
    workers: int = 1,
) -> str:
    """The report printed at the end of ``simulate`` (it reads the stores to count)."""
    lines: list[str] = []
    add = lines.append
    n = stats.checkins
    add(
        f"check-in game on {mode}: {len(world.users)} users, {world.friendships()} friendships, "
        f"{len(world.venues)} venues, {n} check-ins"
    )
    add(f"  world loaded in {stats.setup_s:.2f} s (users, venues, friend lists in transactions)")
    rate = n / stats.save_s if stats.save_s else 0.0
    add(
        f"  acknowledged saves: {n} in {stats.save_s:.2f} s = {rate:,.0f} saves/s "
        f"(save_many batches of {batch}, {workers} worker thread(s) running alongside)"
    )
    add(
        f"  deferred work finished {stats.drain_s:.2f} s after the last save; "
        f"total {stats.setup_s + stats.save_s + stats.drain_s:.2f} s"
    )
    add("  lag per priority (worst seen during the run; all drained at the end):")
    lat = stats.batch_latencies_s
    add(
        f"    realtime  written before save returned: batch latency p50 "
        f"{_ms(_quantile(lat, 0.5))}, p99 {_ms(_quantile(lat, 0.99))}"
    )
    for name, lag in sorted(stats.lag.items()):
        add(f"    {name:<24} pending <= {lag.max_pending:>6}, oldest <= {lag.max_oldest_s:6.2f} s")
    add("  deferred work done within its time slice (the intent's within=):")
    for line in promises(stats.status):
        add(f"    {line}")
    led = inventory.ledger(store, world)
    badges = ", ".join(f"{b} {c}" for b, c in sorted(led.awards.items())) or "none"
    add(
        f"  badges awarded: {sum(led.awards.values())} ({badges}); points {led.ledger_points} "
        f"{'=' if led.balanced else '!='} sum of awards {led.award_points}"
    )
    add("  " + _counted(store, world, stats))
    add("  what the stores hold (whole tables):")
    rows = inventory.table_rows(store)
    for tier in ("acid", "amorphous"):
        add(f"    {tier:<10} rows  " + _pairs(rows[tier]))
    add("    volatile   keys  " + _pairs(inventory.volatile_keys(store, world)))
    add("    transitory " + _streams(stats.status))
    add("  " + _incidents(stats.status))
    return "\n".join(lines)


def promises(status: dict[str, Any]) -> list[str]:
    """One line per deferred game intent: its promise and the share of its tasks that kept it."""
    lines: list[str] = []
    for name, p in sorted((status.get("promises") or {}).items()):
        if not name.startswith("game_"):
            continue
        done = p["total_on_time"] + p["total_late"]
        share = "-" if p["total_share"] is None else f"{100 * p['total_share']:.1f}%"
        p99 = "-" if p["lag_p99_s"] is None else f"{p['lag_p99_s']:.2f} s"
        lines.append(
            f"{name:<24} within {p['within_s']:>6g} s: {share:>6} of {done} "
            f"(lag p99 {p99}, {p['on_lag']})"
        )
    return lines


def _counted(store: pio.Persistio, world: World, stats: RunStats) -> str:
    """Check-ins per venue over the run, read from the venue counts (buckets, not rows)."""
    if stats.span is None:
        return "check-ins per venue: none"
    first, last = stats.span
    until = last + timedelta(microseconds=1)
    per_venue = {v.venue_id: venue_checkins(store, v.venue_id, first, until) for v in world.venues}
    busiest = sorted(per_venue.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    top = ", ".join(f"venue {v} {n}" for v, n in busiest if n)
    return (
        f"check-ins per venue (read from game_venue_checkins): {sum(per_venue.values())} at "
        f"{sum(1 for n in per_venue.values() if n)} venues; busiest {top or 'none'}"
    )


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k.removeprefix('game_')} {v}" for k, v in counts.items())


def _streams(status: dict[str, Any]) -> str:
    parts = [
        f"{name} pending {s.get('pending', '?')}"
        for name, s in {**status["queues"], **status["streams"]}.items()
        if name in ("high", "normal", "low") or name.startswith("game_")
    ]
    return ", ".join(parts)


def _incidents(status: dict[str, Any]) -> str:
    unhealthy = [t for t, b in status["backends"].items() if not b["healthy"]]
    dropped = status["dropped"] or {}
    return (
        f"buffered {status['buffered']}, replayed {status['replayed']}, "
        f"spool depth {status['spool']['depth']}, dropped {dropped or 0}, "
        f"dead letters {status['dead_letters']}, retries {status['retries'] or 0}"
        + (f", UNHEALTHY: {', '.join(unhealthy)}" if unhealthy else "")
    )
