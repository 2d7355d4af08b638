"""Long-lived agent processes: load generators and workers, driven over pipes by the harness.

Processes are started once per invocation (spawn: no driver state is inherited) and every arm's
client is opened and warmed up in each of them before the first measured run, so no run pays
for imports, connections or statement preparation. Each process measures its own CPU time
(user + system, all threads, ``resource.getrusage``) over exactly the span it was busy for a
run and reports it; idle agents block on their pipe and cost nothing.

A load agent runs ``threads`` threads, each saving its own check-ins (its own range of sequence
numbers); raw and single_postgres threads each have their own client (connections, pipelines),
persistio's threads share one store. Every agent reports which sequence numbers were
acknowledged (and which failed), so the harness knows what every store must hold.
"""

from __future__ import annotations

import math
import resource
import threading
import time
import traceback
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .arms import Client, Worker, open_client, open_worker
from .drivers import quiet_driver_logs
from .settings import Endpoints
from .workload import Ranges, add_range, make_checkins

WARMUP_SEQ = 1 << 60  # warm-up ids: far from any run's, and truncated before the first run
OVERRUN = 2.0  # an open-loop phase may run this many times its length before it gives up
THREAD_STRIDE = 100_000_000  # seq numbers per thread within one process's range
MAX_ERRORS = 10  # a measured phase gives up after this many failed saves (not the outage)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class LoadSpec:
    arm: str
    workload: str
    durability: str
    batch: int
    seq: int  # first id number of this process's check-ins
    start_at: float  # time.time() at which every process starts together
    seconds: float
    requests: int  # per thread; closed loop stops at either limit
    rate: float | None = None  # open loop: this process's target, saves/s; None = closed loop
    threads: int = 1
    # the outage phase: failures and buffered/dropped receipts are allowed (never give up),
    # and every request's scheduled and acknowledged times are kept for the timeline
    outage: bool = False


@dataclass
class LoadResult:
    saves: int = 0
    errors: int = 0
    first_error: str | None = None
    unsent: int = 0  # open loop: requests never sent because the arm fell too far behind
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    began: float = 0.0
    ended: float = 0.0
    cpu_s: float = 0.0
    acked: Ranges = field(default_factory=list)  # (first seq, count) acknowledged
    failed: Ranges = field(default_factory=list)  # raised: written or not, nobody knows
    degraded: int = 0  # persistio receipts buffered or dropped (outage phase only)
    # outage phase: per request, when it was due and when it was acknowledged (NaN: failed)
    scheduled_at: array[float] = field(default_factory=lambda: array("d"))
    acked_at: array[float] = field(default_factory=lambda: array("d"))

    def merge(self, other: LoadResult) -> None:
        self.saves += other.saves
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.unsent += other.unsent
        self.latencies_ms.extend(other.latencies_ms)
        self.acked += other.acked
        self.failed += other.failed
        self.degraded += other.degraded
        self.scheduled_at.extend(other.scheduled_at)
        self.acked_at.extend(other.acked_at)


@dataclass
class WorkResult:
    cpu_s: float
    delivered: list[bytes]
    backlog: int
    error: str | None


@dataclass(frozen=True)
class Failure:
    message: str


class Agent:
    def __init__(self, endpoints: Endpoints, tag: str) -> None:
        self.endpoints = endpoints
        self.tag = tag
        self.clients: dict[tuple[str, str], list[Client]] = {}
        self.workers: dict[tuple[str, str], Worker] = {}
        self._work: tuple[Worker, threading.Thread, threading.Event, list[bytes], float] | None
        self._work = None
        self._work_error: str | None = None

    def handle(self, message: tuple[Any, ...]) -> Any:
        match message:
            case ("warm", str(arm), str(workload), int(seq), int(threads)):
                return self.warm(arm, workload, seq, threads)
            case ("load", LoadSpec() as spec):
                return self.load(spec)
            case ("work", str(arm), str(workload)):
                return self.start_work(arm, workload)
            case ("progress",):
                return self.progress()
            case ("stop",):
                return self.stop_work()
        raise ValueError(f"unknown message {message!r}")

    def clients_for(self, arm: str, workload: str, threads: int) -> list[Client]:
        """One client per thread, or one shared by all when it is thread-safe."""
        have = self.clients.setdefault((arm, workload), [])
        if not have:
            have.append(open_client(arm, workload, self.endpoints, self.tag))
        if have[0].thread_safe:
            return [have[0]] * threads
        while len(have) < threads:
            have.append(open_client(arm, workload, self.endpoints, f"{self.tag}-t{len(have)}"))
        return have[:threads]

    def warm(self, arm: str, workload: str, seq: int, threads: int) -> int:
        """Connect and prepare (psycopg prepares a statement on its 5th run) in both modes."""
        written = 0
        for client in dict.fromkeys(self.clients_for(arm, workload, threads)):
            for durability in ("strict", "relaxed"):
                client.configure(durability, outage=False)
                for _ in range(6):
                    client.save(make_checkins(workload, seq, 1))
                    seq += 1
                for _ in range(2):
                    client.save(make_checkins(workload, seq, 100))
                    seq += 100
                written += 6 + 2 * 100
        return written

    def load(self, spec: LoadSpec) -> LoadResult:
        clients = self.clients_for(spec.arm, spec.workload, spec.threads)
        for client in dict.fromkeys(clients):
            client.configure(spec.durability, spec.outage)
        results = [LoadResult() for _ in clients]
        time.sleep(max(0.0, spec.start_at - time.time() - 0.05))
        cpu0 = cpu_seconds()
        if len(clients) == 1:
            _drive(clients[0], spec, spec.seq, spec.rate, results[0])
        else:
            rate = None if spec.rate is None else spec.rate / len(clients)
            threads = [
                threading.Thread(
                    target=_drive,
                    args=(client, spec, spec.seq + i * THREAD_STRIDE, rate, results[i]),
                    name=f"bench-load-{i}",
                )
                for i, client in enumerate(clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        total = results[0]
        for r in results[1:]:
            total.merge(r)
        total.began = min(r.began for r in results)
        total.ended = max(r.ended for r in results)
        total.cpu_s = cpu_seconds() - cpu0
        return total

    def start_work(self, arm: str, workload: str) -> bool:
        if (arm, workload) not in self.workers:
            self.workers[(arm, workload)] = open_worker(arm, workload, self.endpoints, self.tag)
        worker = self.workers[(arm, workload)]
        stop, delivered = threading.Event(), list[bytes]()
        self._work_error = None

        def run() -> None:
            try:
                worker.run(stop, delivered)
            except Exception as exc:
                self._work_error = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=run, name=f"bench-{arm}-worker", daemon=True)
        self._work = (worker, thread, stop, delivered, cpu_seconds())
        thread.start()
        return True

    def progress(self) -> tuple[int, int]:
        """(notifications delivered so far, work held locally): while the worker runs."""
        if self._work is None:
            return (0, 0)
        worker, _, _, delivered, _ = self._work
        return (len(delivered), worker.backlog())

    def stop_work(self) -> WorkResult:
        if self._work is None:
            return WorkResult(0.0, [], 0, None)
        worker, thread, stop, delivered, cpu0 = self._work
        stop.set()
        thread.join()
        self._work = None
        return WorkResult(cpu_seconds() - cpu0, delivered, worker.backlog(), self._work_error)

    def close(self) -> None:
        if self._work is not None:
            self.stop_work()
        for clients in self.clients.values():
            for c in clients:
                c.close()
        for w in self.workers.values():
            w.close()


def _drive(
    client: Client, spec: LoadSpec, seq: int, rate: float | None, result: LoadResult
) -> None:
    """One thread's closed or open loop."""
    time.sleep(max(0.0, spec.start_at - time.time()))
    result.began = time.time()
    wall0 = result.began
    t0 = time.perf_counter()
    end = t0 + spec.seconds
    batch = spec.batch
    interval = batch / rate if rate else 0.0
    for k in range(spec.requests):
        now = time.perf_counter()
        if rate is None:
            if now >= end:
                break
            scheduled = now
        else:
            # open loop: latency counts from when the request was due, not when it went out
            scheduled = t0 + k * interval
            if scheduled >= end:
                break
            if now < scheduled:
                time.sleep(scheduled - now)
            elif now > t0 + OVERRUN * spec.seconds:
                _give_up(result, t0, k, spec, interval, now)
                break
        checkins = make_checkins(spec.workload, seq, batch)
        first, seq = seq, seq + batch
        try:
            result.degraded += client.save(checkins)
        except Exception as exc:
            result.errors += 1
            result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
            add_range(result.failed, first, batch)
            if spec.outage:
                result.scheduled_at.append(wall0 + (scheduled - t0))
                result.acked_at.append(math.nan)
                continue
            if result.errors >= MAX_ERRORS:
                break
            continue
        done = time.perf_counter()
        result.latencies_ms.append((done - scheduled) * 1000)
        result.saves += batch
        add_range(result.acked, first, batch)
        if spec.outage:
            result.scheduled_at.append(wall0 + (scheduled - t0))
            result.acked_at.append(wall0 + (done - t0))
    result.ended = time.time()


def _give_up(
    result: LoadResult, t0: float, k: int, spec: LoadSpec, interval: float, now: float
) -> None:
    """The arm fell too far behind its target: record the requests never sent with the latency
    they have at least accrued, so a system that cannot keep up never looks fast."""
    scheduled = t0 + k * interval
    while scheduled < t0 + spec.seconds:
        result.latencies_ms.append((now - scheduled) * 1000)
        result.unsent += 1
        scheduled += interval


def agent_main(endpoints: Endpoints, tag: str, conn: Connection) -> None:
    """The agent process: answer each message on ``conn`` until it sends None."""
    quiet_driver_logs()
    agent = Agent(endpoints, tag)
    try:
        while True:
            message = conn.recv()
            if message is None:
                break
            try:
                reply = agent.handle(message)
            except Exception as exc:
                reply = Failure(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            conn.send(reply)
    except (EOFError, KeyboardInterrupt):
        pass  # the harness went away, or ^C reached the whole process group
    finally:
        agent.close()
