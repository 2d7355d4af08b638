"""The outage phase: PostgreSQL paused for 15 s under open-loop load, per arm and workload.

For each workload, the offered load is ``latency_load`` (60 %) x the slowest arm's closed-loop
saves/s at batch 1, one process, one thread (from this invocation's runs, else measured here).
Each arm in turn: reset its stores, start its workers, then one process saves at that rate for
``before`` seconds, PostgreSQL's processes are paused (``SIGSTOP`` of the postmaster and its
children) for ``pause`` seconds and resumed (``SIGCONT``, in a ``finally``, and by a watchdog
process if the harness dies or hangs). No request is scheduled after the resume: a check-in
that was due during the pause but not yet sent (an arm blocked on PostgreSQL) is still sent,
late, and its latency counts from when it was due.

Measured per arm and workload:

- ``acked_share_during``: of the check-ins due during the pause, the share acknowledged before
  the resume;
- ``ack_p99_during_ms``: p99 latency (from when due) of those of them acknowledged at all;
- ``converged_after_s``: from the resume until every acknowledged check-in is in every store
  (nothing pending, every count right, every notification delivered);
- ``lost``, ``duplicated``: the end-of-run check (``results.reconcile``). A save that raised
  (persistio's acid ``on_outage="fail"`` in all_acid) is not acknowledged: correct behaviour,
  not a failure; a persistio receipt with buffered or dropped intents is allowed (it is what
  buffering is for) as long as nothing is lost in the end.

Errors during the pause never stop the load loop (``LoadSpec.outage``).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .agents import LoadResult
from .results import RunRecord, percentile, reconcile
from .runner import DONE_TIMEOUT, Config, Runner, median_rate, phase_problems
from .serverload import PgProcesses
from .workload import Ranges

if TYPE_CHECKING:
    from .arms import Check

CONVERGE_POLL = 0.25
WATCHDOG_MARGIN = 20.0  # the watchdog resumes PostgreSQL this long after the pause should end


@dataclass(frozen=True)
class OutageSize:
    before: float = 3.0  # load before the pause, seconds
    pause: float = 15.0


@dataclass
class OutageRecord:
    arm: str
    workload: str
    durability: str
    offered_rate: float | None = None
    acked_share_during: float | None = None
    ack_p99_during_ms: float | None = None
    converged_after_s: float | None = None
    lost: int | None = None
    duplicated: int | None = None
    attempted_during: int = 0
    acked_during: int = 0
    saves: int = 0
    failed: int = 0
    degraded: int = 0  # persistio receipts with buffered or dropped intents
    pause_at_s: float | None = None  # from the start of the load
    resume_at_s: float | None = None
    acks_per_s: list[int] = field(default_factory=list)  # per second from the start
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


class Pause:
    """SIGSTOP a server's processes; ``resume`` SIGCONTs them (idempotent). A watchdog process,
    in a session of its own, SIGCONTs them anyway after ``limit`` seconds, so PostgreSQL never
    stays frozen behind a harness that died or hung."""

    def __init__(self, pids: Sequence[int], limit: float) -> None:
        self.pids = list(pids)
        self.paused = False
        self.watchdog = subprocess.Popen(
            [
                "/bin/sh",
                "-c",
                f"sleep {limit:.0f}; kill -CONT {' '.join(map(str, self.pids))} 2>/dev/null; true",
            ],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.paused = True
        for pid in self.pids:  # the postmaster first: it starts no new child while stopped
            _signal(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.pids:
            _signal(pid, signal.SIGCONT)
        self.paused = False

    def close(self) -> None:
        """Resume (always), then end the watchdog: it is ours, by its own handle."""
        self.resume()
        if self.watchdog.poll() is None:
            self.watchdog.terminate()
        self.watchdog.wait(timeout=10)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited
        os.kill(pid, sig)


def run_outages(
    runner: Runner, records: Sequence[RunRecord], durability: str, size: OutageSize
) -> list[OutageRecord]:
    processes = runner.meter.processes
    out: list[OutageRecord] = []
    for workload in runner.plan.workloads:
        rate = _rate(runner, records, workload, durability)
        for arm in runner.plan.arms:
            rec = OutageRecord(arm, workload, durability, offered_rate=rate)
            if processes is None:
                rec.problems.append("PostgreSQL is not local: it cannot be paused")
            elif rate is None:
                rec.problems.append("no correct closed-loop run to take the rate from")
            else:
                try:
                    _one(runner, rec, processes, rate, size)
                except Exception as exc:
                    rec.problems.append(f"harness: {type(exc).__name__}: {exc}")
            runner.say(_line(rec))
            out.append(rec)
    return out


def _rate(
    runner: Runner, records: Sequence[RunRecord], workload: str, durability: str
) -> float | None:
    """``latency_load`` x the slowest arm's saves/s at batch 1, one process, one thread."""
    rates: list[float] = []
    for arm in runner.plan.arms:
        runs = [
            r
            for r in records
            if (r.arm, r.workload, r.batch, r.concurrency, r.threads) == (arm, workload, 1, 1, 1)
        ]
        same = [r for r in runs if r.durability == durability] or runs
        rate = median_rate(same)
        if rate is None:  # not in this invocation's matrix: measure it now
            runner.stores[arm].reset(workload)
            phase = runner.phase(arm, workload, durability, Config(1, 1), rate=None)
            began = min((r.began for r in phase.loads), default=0.0)
            wall = max((r.ended for r in phase.loads), default=0.0) - began
            rate = phase.saves / wall if phase.saves and wall > 0 and not phase.problems else None
        if rate is None:
            return None
        rates.append(rate)
    return runner.plan.size.latency_load * min(rates) if rates else None


class PausedWindow:
    """In a thread: ``before`` s after ``start``, SIGSTOP PostgreSQL's processes (found at that
    moment: every backend the arm has opened by then), and SIGCONT them ``pause`` s later.
    Leaving the ``with`` block always resumes them, at once if it unwinds from an error."""

    def __init__(self, processes: PgProcesses, start: float, size: OutageSize) -> None:
        self.processes = processes
        self.start = start
        self.size = size
        self.marks: dict[str, float] = {}
        self._held: list[Pause] = []
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-outage", daemon=True)

    def _run(self) -> None:
        if self._cancel.wait(max(0.0, self.start + self.size.before - time.time())):
            return
        pids = self.processes.pids()
        if not pids:
            return
        pause = Pause(pids, limit=self.size.pause + WATCHDOG_MARGIN)
        self._held.append(pause)
        self.marks["pause"] = time.time()
        pause.stop()
        self._cancel.wait(self.size.pause)
        pause.resume()
        self.marks["resume"] = time.time()

    def __enter__(self) -> PausedWindow:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self._cancel.set()  # resume now, not after the pause
        end = self.start + self.size.before + self.size.pause + 5
        self._thread.join(timeout=max(0.0, end - time.time()))
        self._cancel.set()
        for pause in self._held:
            pause.close()  # SIGCONT, whatever happened; then the watchdog goes
        self.marks.setdefault("resume", time.time())


def _one(
    runner: Runner, rec: OutageRecord, processes: PgProcesses, rate: float, size: OutageSize
) -> None:
    assert runner.pool is not None
    pool = runner.pool
    stores = runner.stores[rec.arm]
    stores.reset(rec.workload)
    runner.admin.refresh_lock()
    config = Config(1, 1)
    specs = runner.specs(
        rec.arm,
        rec.workload,
        rec.durability,
        config,
        rate,
        seconds=size.before + size.pause,
        outage=True,
    )
    window = PausedWindow(processes, specs[0].start_at, size)
    loads: list[LoadResult] = []
    acked: Ranges = []
    failed: Ranges = []
    converged_at: float | None = None
    pool.start_work(rec.arm, rec.workload, runner.plan.workers(config))
    try:
        with window:
            loads = pool.load(specs, timeout=specs[0].seconds * 3 + 120)
        acked = [r for load in loads for r in load.acked]
        failed = [r for load in loads for r in load.failed]
        converged_at = _wait_converged(runner, rec, acked, failed)
    finally:
        work = pool.stop_work()
    rec.problems += phase_problems([], work, 0.0)
    if "pause" not in window.marks:
        rec.problems.append("PostgreSQL's processes not found (ss -Hltnp): no pause")
    delivered = [d for w in work for d in w.delivered]
    found = reconcile(rec.workload, acked, failed, stores.check(rec.workload), delivered)
    rec.lost, rec.duplicated = found.lost, found.duplicated
    rec.problems += found.problems
    rec.saves = sum(r.saves for r in loads)
    rec.failed = sum(r.errors for r in loads)
    rec.degraded = sum(r.degraded for r in loads)
    resumed = window.marks["resume"]
    if converged_at is None:
        rec.problems.append(f"not converged {DONE_TIMEOUT:.0f}s after the load ended")
    else:
        rec.converged_after_s = round(converged_at - resumed, 3)
    _timeline(rec, loads, specs[0].start_at, window.marks.get("pause"), resumed)


def _wait_converged(
    runner: Runner, rec: OutageRecord, acked: Ranges, failed: Ranges
) -> float | None:
    assert runner.pool is not None
    stores = runner.stores[rec.arm]
    deadline = time.time() + DONE_TIMEOUT
    while time.time() < deadline:
        if stores.pending(rec.workload) == 0:
            delivered, backlog = runner.pool.progress()
            check = stores.check(rec.workload)
            if backlog == 0 and _converged(rec.workload, acked, failed, check, delivered):
                return time.time()
        time.sleep(CONVERGE_POLL)
    return None


def _converged(workload: str, acked: Ranges, failed: Ranges, check: Check, delivered: int) -> bool:
    """No store short of what the acknowledged check-ins imply, nothing pending, and as many
    notifications delivered as acknowledged (their ids come back when the workers stop)."""
    found = reconcile(workload, acked, failed, check, None)
    return (
        found.lost == 0
        and not any(check.leftovers.values())
        and delivered >= sum(n for _, n in acked)
    )


def _timeline(
    rec: OutageRecord,
    loads: Sequence[LoadResult],
    start: float,
    paused: float | None,
    resumed: float,
) -> None:
    scheduled = [t for r in loads for t in r.scheduled_at]
    done = [t for r in loads for t in r.acked_at]
    if paused is None:
        rec.problems.append("the pause never happened")
        return
    rec.pause_at_s = round(paused - start, 3)
    rec.resume_at_s = round(resumed - start, 3)
    due = [(s, d) for s, d in zip(scheduled, done, strict=True) if paused <= s < resumed]
    rec.attempted_during = len(due)
    rec.acked_during = sum(1 for _, d in due if not math.isnan(d) and d < resumed)
    if due:
        rec.acked_share_during = round(rec.acked_during / len(due), 4)
    latencies = sorted((d - s) * 1000 for s, d in due if not math.isnan(d))
    if latencies:
        rec.ack_p99_during_ms = round(percentile(latencies, 0.99), 3)
    acks = [d - start for d in done if not math.isnan(d)]
    if acks:
        bins = [0] * (int(max(acks)) + 1)
        for a in acks:
            bins[max(0, int(a))] += 1
        rec.acks_per_s = bins


def _line(r: OutageRecord) -> str:
    share = "-" if r.acked_share_during is None else f"{r.acked_share_during:.1%}"
    p99 = "-" if r.ack_p99_during_ms is None else f"{r.ack_p99_during_ms:,.1f} ms"
    conv = "-" if r.converged_after_s is None else f"{r.converged_after_s:.2f}s"
    verdict = "ok" if not r.problems else "PROBLEMS: " + "; ".join(r.problems)
    return (
        f"  outage {r.workload:<8} {r.arm:<15} acked during {share:>6}  p99 during {p99:>12}  "
        f"converged after {conv:>7}  lost {r.lost} duplicated {r.duplicated}  {verdict}"
    )
