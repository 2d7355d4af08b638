"""The schedule: durability, then rounds, then (batch, concurrency), then arms A B C twice.

Per (durability, round, batch, concurrency):

1. for each arm: reset its stores, start its workers, run the closed-loop phase (every process
   saves back to back: throughput), wait until every deferred task is done (``all_done_s``,
   from the last acknowledgement), stop its workers;
2. the open-loop rate is ``latency_load`` x the slowest arm's throughput just measured, so all
   three arms are compared at the same offered load;
3. for each arm: start its workers, run the open-loop phase at that rate (latency from each
   request's scheduled time), wait until done, stop the workers, then check every store.

Strict runs come first and back to back, so Redis's fsync-always spell on the shared server is
as short as possible; ``appendfsync everysec`` is restored in a ``finally``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .admin import Admin
from .agents import LoadResult, LoadSpec, WorkResult
from .arms import ARMS, Stores, open_stores
from .pool import AgentError, AgentPool
from .results import RunRecord
from .settings import Endpoints, Size

DONE_TIMEOUT = 120.0  # deferred work must finish within this after the last acknowledgement
RECOVERY_PAUSE = 5.0  # after a server error, before the next run
START_DELAY = 0.3  # lets every agent receive its spec before the common start time
SEQ_STRIDE = 1_000_000_000  # id numbers per (phase, process): disjoint across the invocation


@dataclass(frozen=True)
class Plan:
    size: Size
    batches: Sequence[int] = (1, 100)
    concurrencies: Sequence[int] = (1, 8)
    durabilities: Sequence[str] = ("strict", "relaxed")
    arms: Sequence[str] = ARMS

    @staticmethod
    def workers(concurrency: int) -> int:
        """Worker processes per arm: the same for every arm."""
        return 1 if concurrency == 1 else 2


@dataclass
class Phase:
    loads: list[LoadResult]
    work: list[WorkResult]
    all_done_s: float | None
    problems: list[str] = field(default_factory=list)

    @property
    def saves(self) -> int:
        return sum(r.saves for r in self.loads)

    @property
    def client_cpu_s(self) -> float:
        return sum(r.cpu_s for r in self.loads)

    @property
    def worker_cpu_s(self) -> float:
        return sum(w.cpu_s for w in self.work)


class Runner:
    def __init__(
        self, endpoints: Endpoints, plan: Plan, admin: Admin, say: Callable[[str], None]
    ) -> None:
        self.endpoints = endpoints
        self.plan = plan
        self.admin = admin
        self.say = say
        self.stores: dict[str, Stores] = {a: open_stores(a, admin) for a in plan.arms}
        self.pool: AgentPool | None = None
        self._seq = 0

    def prepare(self) -> None:
        e = self.endpoints
        self.admin.create_databases([e.database(n) for n in ("single", "raw", "pio")])
        self.admin.create_keyspace()
        for stores in self.stores.values():
            stores.prepare()

    def start_agents(self) -> None:
        loaders = max(self.plan.concurrencies)
        workers = max(self.plan.workers(c) for c in self.plan.concurrencies)
        self.pool = AgentPool(self.endpoints, loaders, workers)
        for arm in self.plan.arms:
            self.pool.warm(arm, 1 << 60)
            self._phase_work(arm, workers, lambda: [])  # the workers' first batch, untimed

    def run(self) -> list[RunRecord]:
        records: list[RunRecord] = []
        for durability in self.plan.durabilities:
            self.admin.set_durability(durability)
            for rnd in range(self.plan.size.rounds):
                for batch in self.plan.batches:
                    for concurrency in self.plan.concurrencies:
                        records += self.config_round(durability, rnd, batch, concurrency)
        return records

    def config_round(
        self, durability: str, rnd: int, batch: int, concurrency: int
    ) -> list[RunRecord]:
        records = {a: RunRecord(a, batch, concurrency, durability, rnd) for a in self.plan.arms}
        for arm, rec in records.items():
            with self._guarded(rec):
                self.stores[arm].reset()
                phase = self.phase(arm, durability, batch, concurrency, rate=None)
                self._add(rec, phase)
                began = min((r.began for r in phase.loads), default=0.0)
                wall = max((r.ended for r in phase.loads), default=0.0) - began
                rec.saves_per_s = phase.saves / wall if phase.saves and wall > 0 else None
                rec.all_done_s = phase.all_done_s
        measured = [r.saves_per_s for r in records.values() if r.saves_per_s and r.correct]
        rate = self.plan.size.latency_load * min(measured) if measured else None
        for arm, rec in records.items():
            with self._guarded(rec):
                if rate is not None and rec.correct:
                    rec.offered_rate = rate
                    phase = self.phase(arm, durability, batch, concurrency, rate=rate)
                    self._add(rec, phase)
                    for r in phase.loads:
                        rec.latencies_ms.extend(r.latencies_ms)
                        rec.unsent += r.unsent
                    rec.all_done_open_s = phase.all_done_s
                rec.check = self.stores[arm].check()
                rec.verify()
            self.say(_line(rec))
        return list(records.values())

    @contextlib.contextmanager
    def _guarded(self, rec: RunRecord) -> Iterator[None]:
        """A server that fails mid-run (on the shared test servers another suite may restart
        Redis or freeze Cassandra) makes this run incorrect, not the whole invocation."""
        try:
            yield
        except AgentError as exc:
            if exc.fatal:
                raise
            rec.problems.append(str(exc).splitlines()[0])
        except Exception as exc:
            rec.problems.append(f"harness: {type(exc).__name__}: {exc}")
            time.sleep(RECOVERY_PAUSE)

    def _add(self, rec: RunRecord, phase: Phase) -> None:
        rec.saves += phase.saves
        rec.client_cpu_s += phase.client_cpu_s
        rec.worker_cpu_s += phase.worker_cpu_s
        rec.problems += phase.problems
        for w in phase.work:
            rec.delivered += w.delivered

    def phase(
        self, arm: str, durability: str, batch: int, concurrency: int, rate: float | None
    ) -> Phase:
        """One phase of one arm, its workers running from before the first save until every
        deferred task it caused is done."""
        assert self.pool is not None
        self.admin.refresh_lock()
        size = self.plan.size
        per_process = None if rate is None else rate / concurrency
        if size.requests is not None:
            requests, seconds = size.requests, 3600.0
        elif per_process is None:
            requests, seconds = math.ceil(size.max_saves / concurrency / batch), size.seconds
        else:
            requests, seconds = math.ceil(size.seconds * per_process / batch) + 1, size.seconds
        start_at = time.time() + START_DELAY
        specs = [
            LoadSpec(arm, durability, batch, self._next_seq(), start_at, seconds, requests, rate)
            for rate in [per_process] * concurrency
        ]
        loads: list[LoadResult] = []
        problems: list[str] = []

        def drive() -> list[LoadResult]:
            assert self.pool is not None
            loads.extend(self.pool.load(specs, timeout=seconds * 3 + 120))
            return loads

        workers = self.plan.workers(concurrency)
        try:
            all_done, work = self._phase_work(arm, workers, drive)
        except AgentError as exc:
            if exc.fatal:
                raise
            return Phase(loads, [], None, [str(exc).splitlines()[0]])
        for r in loads:
            if r.errors:
                problems.append(f"{r.errors} failed saves, first: {r.first_error}")
        for w in work:
            if w.error:
                problems.append(f"worker: {w.error}")
            if w.backlog:
                problems.append(f"worker: {w.backlog} tasks left in its spool")
        if all_done is None:
            problems.append(f"deferred work not done {DONE_TIMEOUT:.0f}s after the last ack")
        return Phase(loads, work, all_done, problems)

    def _phase_work(
        self, arm: str, workers: int, drive: Callable[[], list[LoadResult]]
    ) -> tuple[float | None, list[WorkResult]]:
        """Start the arm's workers, run ``drive``, wait for the deferred work, stop them."""
        assert self.pool is not None
        self.pool.start_work(arm, workers)
        try:
            loads = drive()
            last_ack = max((r.ended for r in loads), default=time.time())
            done_at = self._wait_done(arm, last_ack + DONE_TIMEOUT)
        finally:
            work = self.pool.stop_work()
        return (None if done_at is None else max(0.0, done_at - last_ack)), work

    def _wait_done(self, arm: str, deadline: float) -> float | None:
        while True:
            if self.stores[arm].pending() == 0:
                return time.time()
            if time.time() >= deadline:
                return None
            time.sleep(0.01)

    def _next_seq(self) -> int:
        self._seq += SEQ_STRIDE
        return self._seq

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def _line(r: RunRecord) -> str:
    thr = "-" if r.saves_per_s is None else f"{r.saves_per_s:,.0f}/s"
    p99 = (
        sorted(r.latencies_ms)[max(0, math.ceil(0.99 * len(r.latencies_ms)) - 1)]
        if (r.latencies_ms)
        else float("nan")
    )
    cpu = r.cpu_s / r.saves * 1000 if r.saves else float("nan")
    client = r.client_cpu_s / r.saves * 1000 if r.saves else float("nan")
    verdict = "ok" if r.correct else "INCORRECT: " + "; ".join(r.problems)
    return (
        f"  {r.durability:<7} b={r.batch:<3} c={r.concurrency} round {r.round + 1} "
        f"{r.arm:<15} {thr:>10}  p99 {p99:8.2f} ms  cpu/1k {cpu:6.3f}s "
        f"(client {client:5.3f}s)  {verdict}"
    )


__all__ = ["AgentError", "Plan", "Runner"]
