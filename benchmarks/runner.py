"""The schedule: durability, then rounds, then workload, then configuration, then arms.

Per (durability, round, workload, configuration):

1. for each arm: reset its stores, start its workers, run the closed-loop phase (every process,
   every thread saves back to back: throughput), wait until every deferred task is done
   (``all_done_s``, from the last acknowledgement), stop its workers. The servers' load
   (``serverload``) is measured over exactly this window;
2. the open-loop rate is ``latency_load`` x the slowest arm's throughput just measured, so all
   three arms are compared at the same offered load;
3. for each arm: start its workers, run the open-loop phase at that rate (latency from each
   request's scheduled time), wait until done, stop the workers, then check every store against
   what the acknowledged check-ins imply.

Strict runs come first and back to back, so Redis's fsync-always spell is as short as possible;
``appendfsync everysec`` is restored in a ``finally``. The outage phase (``outage.py``) comes
last.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .admin import Admin
from .agents import LoadResult, LoadSpec, WorkResult
from .arms import ARMS, Stores, open_stores
from .pool import AgentError, AgentPool
from .results import RunRecord
from .serverload import Load, Meter, Snapshot
from .settings import Endpoints, Size
from .workload import WORKLOADS, Ranges

DONE_TIMEOUT = 120.0  # deferred work must finish within this after the last acknowledgement
RECOVERY_PAUSE = 5.0  # after a server error, before the next run
START_DELAY = 0.3  # lets every agent receive its spec before the common start time
SEQ_STRIDE = 1_000_000_000  # id numbers per (phase, process): disjoint across the invocation


@dataclass(frozen=True)
class Config:
    """One point of the matrix: batch size, load processes, threads per process."""

    batch: int
    concurrency: int
    threads: int = 1

    @property
    def savers(self) -> int:
        return self.concurrency * self.threads


def configs(
    batches: Sequence[int], concurrencies: Sequence[int], threads: Sequence[int]
) -> list[Config]:
    """Every (batch, processes) with one thread each, then ``threads`` threads in one process
    at batch 1 (how a web application calls the library)."""
    out = [Config(b, c) for b in batches for c in concurrencies]
    if 1 in batches:
        out += [Config(1, 1, t) for t in threads if t > 1]
    return sorted(out, key=lambda c: (c.batch, c.threads, c.concurrency))


@dataclass(frozen=True)
class Plan:
    size: Size
    configs: Sequence[Config] = (Config(1, 1), Config(1, 8), Config(1, 1, 8), Config(100, 1))
    durabilities: Sequence[str] = ("strict", "relaxed")
    arms: Sequence[str] = ARMS
    workloads: Sequence[str] = WORKLOADS
    outage: bool = False

    @staticmethod
    def workers(config: Config) -> int:
        """Worker processes per arm: the same for every arm."""
        return 1 if config.savers == 1 else 2

    @property
    def processes(self) -> int:
        return max(c.concurrency for c in self.configs)

    @property
    def threads(self) -> int:
        return max(c.threads for c in self.configs)


@dataclass
class Phase:
    loads: list[LoadResult]
    work: list[WorkResult]
    all_done_s: float | None
    problems: list[str] = field(default_factory=list)
    server: Load | None = None

    @property
    def saves(self) -> int:
        return sum(r.saves for r in self.loads)

    @property
    def client_cpu_s(self) -> float:
        return sum(r.cpu_s for r in self.loads)

    @property
    def worker_cpu_s(self) -> float:
        return sum(w.cpu_s for w in self.work)

    @property
    def acked(self) -> Ranges:
        return [r for load in self.loads for r in load.acked]

    @property
    def failed(self) -> Ranges:
        return [r for load in self.loads for r in load.failed]


class Runner:
    def __init__(
        self, endpoints: Endpoints, plan: Plan, admin: Admin, say: Callable[[str], None]
    ) -> None:
        self.endpoints = endpoints
        self.plan = plan
        self.admin = admin
        self.say = say
        self.stores: dict[str, Stores] = {a: open_stores(a, admin) for a in plan.arms}
        self.meter = Meter(admin)
        self.pool: AgentPool | None = None
        self._seq = 0

    def prepare(self) -> None:
        e = self.endpoints
        self.admin.create_databases([e.database(n) for n in ("single", "raw", "pio")])
        self.admin.create_keyspace()
        for stores in self.stores.values():
            stores.prepare()

    def start_agents(self) -> None:
        workers = max(self.plan.workers(c) for c in self.plan.configs)
        self.pool = AgentPool(self.endpoints, self.plan.processes, workers)
        for workload in self.plan.workloads:
            for arm in self.plan.arms:
                self.pool.warm(arm, workload, 1 << 60, self.plan.threads)
                self._phase_work(arm, workload, workers, lambda: [])  # untimed first batch

    def run(self) -> list[RunRecord]:
        records: list[RunRecord] = []
        for durability in self.plan.durabilities:
            self.admin.set_durability(durability)
            for rnd in range(self.plan.size.rounds):
                for workload in self.plan.workloads:
                    for config in self.plan.configs:
                        records += self.config_round(workload, durability, rnd, config)
        return records

    def config_round(
        self, workload: str, durability: str, rnd: int, config: Config
    ) -> list[RunRecord]:
        records = {
            a: RunRecord(
                a, config.batch, config.concurrency, durability, rnd, workload, config.threads
            )
            for a in self.plan.arms
        }
        for arm, rec in records.items():
            with self._guarded(rec):
                self.stores[arm].reset(workload)
                self.admin.checkpoint()
                phase = self.phase(arm, workload, durability, config, rate=None)
                self._add(rec, phase)
                began = min((r.began for r in phase.loads), default=0.0)
                wall = max((r.ended for r in phase.loads), default=0.0) - began
                rec.saves_per_s = phase.saves / wall if phase.saves and wall > 0 else None
                rec.all_done_s = phase.all_done_s
                rec.server = phase.server
        measured = [r.saves_per_s for r in records.values() if r.saves_per_s and r.correct]
        rate = self.plan.size.latency_load * min(measured) if measured else None
        for arm, rec in records.items():
            with self._guarded(rec):
                if rate is not None and rec.correct:
                    rec.offered_rate = rate
                    phase = self.phase(arm, workload, durability, config, rate=rate)
                    self._add(rec, phase)
                    for r in phase.loads:
                        rec.latencies_ms.extend(r.latencies_ms)
                        rec.unsent += r.unsent
                    rec.all_done_open_s = phase.all_done_s
                rec.check = self.stores[arm].check(workload)
                rec.verify()
            self.say(_line(rec))
        return list(records.values())

    @contextlib.contextmanager
    def _guarded(self, rec: RunRecord) -> Iterator[None]:
        """A server that fails mid-run makes this run incorrect, not the whole invocation."""
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
        rec.acked += phase.acked
        rec.failed += phase.failed
        for w in phase.work:
            rec.delivered += w.delivered

    def specs(
        self,
        arm: str,
        workload: str,
        durability: str,
        config: Config,
        rate: float | None,
        *,
        seconds: float | None = None,
        outage: bool = False,
    ) -> list[LoadSpec]:
        """One spec per load process: the closed loop is bounded by time and by saves (all
        processes and threads together), the open loop by time at ``rate`` in all."""
        size = self.plan.size
        seconds = size.seconds if seconds is None else seconds
        if size.requests is not None:
            requests, seconds = size.requests, 3600.0
        elif rate is None:
            requests = math.ceil(size.max_saves / config.savers / config.batch)
        else:
            requests = math.ceil(seconds * rate / config.savers / config.batch) + 1
        per_process = None if rate is None else rate / config.concurrency
        start_at = time.time() + START_DELAY
        return [
            LoadSpec(
                arm,
                workload,
                durability,
                config.batch,
                self._next_seq(),
                start_at,
                seconds,
                requests,
                per_process,
                config.threads,
                outage,
            )
            for _ in range(config.concurrency)
        ]

    def phase(
        self, arm: str, workload: str, durability: str, config: Config, rate: float | None
    ) -> Phase:
        """One phase of one arm, its workers running from before the first save until every
        deferred task it caused is done. The closed loop also measures the servers' load."""
        assert self.pool is not None
        self.admin.refresh_lock()
        specs = self.specs(arm, workload, durability, config, rate)
        loads: list[LoadResult] = []

        def drive() -> list[LoadResult]:
            assert self.pool is not None
            loads.extend(self.pool.load(specs, timeout=specs[0].seconds * 3 + 120))
            return loads

        database = self.endpoints.database(_ARM_DB[arm])
        meter = self.meter if rate is None else None
        try:
            all_done, work, server = self._phase_work(
                arm, workload, self.plan.workers(config), drive, meter, database
            )
        except AgentError as exc:
            if exc.fatal:
                raise
            return Phase(loads, [], None, [str(exc).splitlines()[0]])
        load = None if server is None else Meter.load(*server, sum(r.saves for r in loads))
        return Phase(loads, work, all_done, phase_problems(loads, work, all_done), load)

    def _phase_work(
        self,
        arm: str,
        workload: str,
        workers: int,
        drive: Callable[[], list[LoadResult]],
        meter: Meter | None = None,
        database: str = "",
    ) -> tuple[float | None, list[WorkResult], tuple[Snapshot, Snapshot] | None]:
        """Start the arm's workers, run ``drive``, wait for the deferred work, stop them."""
        assert self.pool is not None
        before = meter.snapshot(database) if meter else None
        after = None
        self.pool.start_work(arm, workload, workers)
        try:
            loads = drive()
            last_ack = max((r.ended for r in loads), default=time.time())
            done_at = self.wait_done(arm, workload, last_ack + DONE_TIMEOUT)
            if meter and done_at is not None:
                after = meter.snapshot(database)
        finally:
            work = self.pool.stop_work()
        window = None if before is None or after is None else (before, after)
        return (None if done_at is None else max(0.0, done_at - last_ack)), work, window

    def wait_done(self, arm: str, workload: str, deadline: float) -> float | None:
        while True:
            if self.stores[arm].pending(workload) == 0:
                return time.time()
            if time.time() >= deadline:
                return None
            time.sleep(0.01)

    def _next_seq(self) -> int:
        self._seq += SEQ_STRIDE
        return self._seq

    def close(self, grace: float = 30.0) -> None:
        if self.pool is not None:
            self.pool.close(grace)
            self.pool = None


_ARM_DB = {"single_postgres": "single", "raw_tiered": "raw", "persistio": "pio"}


def phase_problems(
    loads: Sequence[LoadResult], work: Sequence[WorkResult], all_done: float | None
) -> list[str]:
    problems = []
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
    return problems


def median_rate(records: Sequence[RunRecord]) -> float | None:
    found = [r.saves_per_s for r in records if r.correct and r.saves_per_s]
    return statistics.median(found) if found else None


def _line(r: RunRecord) -> str:
    thr = "-" if r.saves_per_s is None else f"{r.saves_per_s:,.0f}/s"
    p99 = (
        sorted(r.latencies_ms)[max(0, math.ceil(0.99 * len(r.latencies_ms)) - 1)]
        if (r.latencies_ms)
        else float("nan")
    )
    cpu = r.cpu_s / r.saves * 1000 if r.saves else float("nan")
    pg = r.server.pg_commits_per_1k if r.server else None
    wal = r.server.pg_wal_bytes_per_save if r.server else None
    pg_text = "" if pg is None else f" pg {pg:6.1f} commits/1k"
    wal_text = "" if wal is None else f" {wal:7.0f} WAL B/save"
    verdict = "ok" if r.correct else "INCORRECT: " + "; ".join(r.problems)
    return (
        f"  {r.workload:<8} {r.durability:<7} b={r.batch:<3} c={r.concurrency} t={r.threads} "
        f"r{r.round + 1} {r.arm:<15} {thr:>10}  p99 {p99:8.2f} ms  cpu/1k {cpu:6.3f}s"
        f"{pg_text}{wal_text}  {verdict}"
    )


__all__ = ["AgentError", "Config", "Plan", "Runner"]
