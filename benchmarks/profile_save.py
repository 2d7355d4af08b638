"""Where a save's client CPU goes: cProfile of ``save`` and ``save_many`` on the real servers.

    eval "$(bash scripts/services env)"
    .venv/bin/python -m benchmarks.profile_save                   # seed mix, batch 1 and 100
    .venv/bin/python -m benchmarks.profile_save --mix all_acid --threads 8

Method: one process, a warm-up of 300 saves, then ``-n`` saves at batch 1 (or ``--threads``
threads each saving ``-n / threads``) and ``-n`` saves through ``save_many`` in batches of 100.
``--metrics`` / ``--trace`` attach persistio.metrics / persistio.tracing first (what the probes
cost the save path). Reported per phase: wall-clock saves/s, the process's CPU per save (user
+ system, all threads),
and the top functions by own time. The last phase runs the worker (``store.step()`` until idle)
over the deferred tasks the saves left (each phase runs twice: plain, then profiled), reported
per save. A shared 2-core machine is noisy: compare runs of one invocation.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec

import persistio as pio


class PfFeed(msgspec.Struct, frozen=True):
    user_id: int
    at: datetime
    checkin_id: uuid.UUID
    venue_id: int


class PfAward(msgspec.Struct, frozen=True):
    checkin_id: uuid.UUID
    user_id: int
    badge: str


class PfPoints(msgspec.Struct, frozen=True):
    user_id: int
    points: int


def _feed(c: PfSeed | PfAcid) -> PfFeed:
    return PfFeed(c.user_id, c.at, c.id, c.venue_id)


def _award(c: PfSeed) -> PfAward:
    return PfAward(c.id, c.user_id, c.badge or "")


def _points(c: PfSeed) -> PfPoints:
    return PfPoints(c.user_id, 10)


def _earns(c: PfSeed) -> bool:
    return c.badge is not None


@pio.persist(
    pio.Transitory("pf_notify"),
    pio.Volatile("pf_here", key=("venue_id", "user_id"), ttl=timedelta(hours=3)),
    pio.Volatile("pf_cell", key=("cell", "user_id"), ttl=timedelta(hours=3)),
    pio.Acid("pf_awards", key=("checkin_id",), project=_award, when=_earns, priority=pio.HIGH),
    pio.Acid("pf_points", key=("user_id",), project=_points, when=_earns, priority=pio.HIGH),
    pio.Amorphous("pf_activity", partition=("user_id",), order=("at", "checkin_id"), project=_feed),
    pio.Amorphous("pf_raw", partition=("id",), priority=pio.LOW),
)
class PfSeed(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: int
    venue_id: int
    cell: int
    at: datetime
    badge: str | None


@pio.persist(
    pio.Transitory("pf_acid_notify"),
    pio.Volatile("pf_acid_here", key=("venue_id", "user_id"), ttl=timedelta(hours=3)),
    pio.Acid("pf_checkins", key=("id",)),
    pio.Amorphous(
        "pf_acid_activity", partition=("user_id",), order=("at", "checkin_id"), project=_feed
    ),
    pio.Amorphous("pf_acid_raw", partition=("id",), priority=pio.LOW),
)
class PfAcid(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: int
    venue_id: int
    at: datetime
    lat: float
    lon: float


def make(mix: str, seq: int, n: int) -> list[PfSeed] | list[PfAcid]:
    now = datetime.now(UTC)
    if mix == "seed":
        return [
            PfSeed(
                uuid.uuid4(), s // 4, s % 1009, (s % 1009) // 8, now, "b" if s % 20 == 0 else None
            )
            for s in range(seq, seq + n)
        ]
    return [
        PfAcid(uuid.uuid4(), s // 4, s % 1009, now, 48.0 + s % 1009 / 1e4, 2.0)
        for s in range(seq, seq + n)
    ]


def cpu() -> float:
    return time.process_time()


def phase(name: str, run: Callable[[], int], top: int) -> None:
    """Run once plainly (the figures), then once under cProfile (the breakdown)."""
    wall0, cpu0 = time.perf_counter(), cpu()
    saves = run()
    wall, used = time.perf_counter() - wall0, cpu() - cpu0
    print(f"\n== {name}: {saves / wall:,.0f}/s, {used / saves * 1e6:,.0f} us CPU each")
    if top <= 0:
        return
    profile = cProfile.Profile()
    profile.enable()
    run()
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    print("\n".join(lines[start : start + top + 1]))


def instrument(store: pio.Persistio, *, metrics: bool, trace: bool) -> None:
    """What an instrumented app pays: the metrics probe, the tracing probe (spans recorded by
    the SDK, exported nowhere)."""
    if metrics:
        from prometheus_client import CollectorRegistry

        from persistio.metrics import register

        register(store, CollectorRegistry())
    if trace:
        from opentelemetry.sdk.trace import TracerProvider

        from persistio.tracing import instrument as traced

        traced(store, tracer_provider=TracerProvider())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_save")
    parser.add_argument("--mix", choices=("seed", "all_acid"), default="seed")
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--metrics", action="store_true", help="with persistio.metrics registered (its probe)"
    )
    parser.add_argument(
        "--trace", action="store_true", help="with persistio.tracing on an SDK tracer provider"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as data_dir,
        pio.Persistio.from_env(data_dir=data_dir) as store,
    ):
        store.setup()
        instrument(store, metrics=args.metrics, trace=args.trace)
        seq = 0
        for obj in make(args.mix, seq, 300):
            store.save(obj)
        seq += 300
        objs = make(args.mix, seq, args.n)
        seq += args.n

        def singles() -> int:
            if args.threads == 1:
                for obj in objs:
                    store.save(obj)
                return len(objs)
            share = len(objs) // args.threads

            def each(k: int) -> None:
                for obj in objs[k * share : (k + 1) * share]:
                    store.save(obj)

            threads = [threading.Thread(target=each, args=(k,)) for k in range(args.threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return int(share * args.threads)

        phase(f"{args.mix} save x {args.threads} thread(s)", singles, args.top)
        batches = make(args.mix, seq, args.n)

        def many() -> int:
            for k in range(0, len(batches), 100):
                store.save_many(batches[k : k + 100])
            return len(batches)

        phase(f"{args.mix} save_many(100)", many, args.top)

        def work() -> int:
            """The worker's side: the deferred tasks of ``args.n`` saves, reported per task."""
            store.save_many(make(args.mix, seq + args.n, args.n))
            queues = store.status()["queues"]
            tasks: int = sum(int(q["pending"]) for q in queues.values())
            while store.step():
                pass
            return tasks

        while store.step():  # what the phases above left
            pass
        phase(f"{args.mix} worker (per task, not per save)", work, args.top)


if __name__ == "__main__":
    main()
