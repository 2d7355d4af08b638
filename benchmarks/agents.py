"""Long-lived agent processes: load generators and workers, driven over pipes by the harness.

Processes are started once per invocation (spawn: no driver state is inherited) and every arm's
client is opened and warmed up in each of them before the first measured run, so no run pays
for imports, connections or statement preparation. Each process measures its own CPU time
(user + system, all threads, ``resource.getrusage``) over exactly the span it was busy for a
run and reports it; idle agents block on their pipe and cost nothing.
"""

from __future__ import annotations

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
from .workload import make_checkins

WARMUP_SEQ = 1 << 60  # warm-up ids: far from any run's, and truncated before the first run
OVERRUN = 2.0  # an open-loop phase may run this many times its length before it gives up


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class LoadSpec:
    arm: str
    durability: str
    batch: int
    seq: int  # first id number of this process's check-ins
    start_at: float  # time.time() at which every process starts together
    seconds: float
    requests: int  # per process; closed loop stops at either limit
    rate: float | None = None  # open loop: this process's target, saves/s; None = closed loop


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
        self.clients: dict[str, Client] = {}
        self.workers: dict[str, Worker] = {}
        self._work: tuple[str, threading.Thread, threading.Event, list[bytes], float] | None = None
        self._work_error: str | None = None

    def handle(self, message: tuple[Any, ...]) -> Any:
        match message:
            case ("warm", str(arm), int(seq)):
                return self.warm(arm, seq)
            case ("load", LoadSpec() as spec):
                return self.load(spec)
            case ("work", str(arm)):
                return self.start_work(arm)
            case ("stop",):
                return self.stop_work()
        raise ValueError(f"unknown message {message!r}")

    def client(self, arm: str) -> Client:
        if arm not in self.clients:
            self.clients[arm] = open_client(arm, self.endpoints, self.tag)
        return self.clients[arm]

    def warm(self, arm: str, seq: int) -> int:
        """Connect and prepare (psycopg prepares a statement on its 5th run) in both modes."""
        client = self.client(arm)
        for durability in ("strict", "relaxed"):
            client.set_durability(durability)
            for _ in range(6):
                client.save(make_checkins(seq, 1))
                seq += 1
            for _ in range(2):
                client.save(make_checkins(seq, 100))
                seq += 100
        return 2 * (6 + 2 * 100)

    def load(self, spec: LoadSpec) -> LoadResult:
        client = self.client(spec.arm)
        client.set_durability(spec.durability)
        result = LoadResult()
        time.sleep(max(0.0, spec.start_at - time.time()))
        cpu0, result.began = cpu_seconds(), time.time()
        t0 = time.perf_counter()
        end = t0 + spec.seconds
        seq, batch = spec.seq, spec.batch
        interval = batch / spec.rate if spec.rate else 0.0
        for k in range(spec.requests):
            now = time.perf_counter()
            if spec.rate is None:
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
            checkins = make_checkins(seq, batch)
            seq += batch
            try:
                client.save(checkins)
            except Exception as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
                if result.errors >= 10:
                    break
                continue
            result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
            result.saves += batch
        result.ended = time.time()
        result.cpu_s = cpu_seconds() - cpu0
        return result

    def start_work(self, arm: str) -> bool:
        if arm not in self.workers:
            self.workers[arm] = open_worker(arm, self.endpoints, self.tag)
        worker = self.workers[arm]
        stop, delivered = threading.Event(), list[bytes]()
        self._work_error = None

        def run() -> None:
            try:
                worker.run(stop, delivered)
            except Exception as exc:
                self._work_error = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=run, name=f"bench-{arm}-worker", daemon=True)
        self._work = (arm, thread, stop, delivered, cpu_seconds())
        thread.start()
        return True

    def stop_work(self) -> WorkResult:
        if self._work is None:
            return WorkResult(0.0, [], 0, None)
        arm, thread, stop, delivered, cpu0 = self._work
        stop.set()
        thread.join()
        self._work = None
        backlog = self.workers[arm].backlog()
        return WorkResult(cpu_seconds() - cpu0, delivered, backlog, self._work_error)

    def close(self) -> None:
        if self._work is not None:
            self.stop_work()
        for c in self.clients.values():
            c.close()
        for w in self.workers.values():
            w.close()


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
