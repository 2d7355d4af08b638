"""One run's record, its correctness check, and the statistics and tables built from runs."""

from __future__ import annotations

import math
import statistics
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .arms import ARMS, PIO, RAW, SINGLE, Check
from .serverload import Load, as_json
from .workload import ALL_ACID, SEED, Ranges, expected, seq_of, seqs

TARGETS = {
    "pio_vs_raw_throughput": 0.9,  # persistio saves/s >= 0.9 x raw_tiered, every configuration
    "pio_vs_raw_cpu": 1.2,  # persistio CPU per save <= 1.2 x raw_tiered
    "pio_vs_raw_threads": 2.0,  # 8 threads in one process, batch 1: persistio >= 2 x raw
    "pio_vs_raw_threads_p99": 1.0,  # ... with an ack p99 no worse than raw's
    "pio_save_many_seed": 20_000.0,  # save_many(100), seed, one process: saves/s
}
SERVER_FIELDS = (
    "pg_commits_per_1k",
    "pg_wal_bytes_per_save",
    "pg_cpu_s_per_1k",
    "pg_statements_per_1k",
    "pg_exec_ms_per_1k",
    "redis_cmds_per_save",
)


@dataclass
class Reconciled:
    """What the stores hold against what the acknowledged check-ins imply."""

    lost: int = 0  # acknowledged, but missing from a store (or never delivered)
    duplicated: int = 0  # more rows or deliveries than even the failed saves could explain
    expected: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def reconcile(
    workload: str,
    acked: Ranges,
    failed: Ranges,
    check: Check,
    delivered: Sequence[bytes] | None,
) -> Reconciled:
    """Every store must hold what the acknowledged check-ins imply; a save that raised may or
    may not have been written (nobody can know), so it widens what is allowed, no more.

    Counts per store are compared (``workload.expected``); notifications are compared by id:
    every acknowledged check-in delivered exactly once.
    """
    ok = set(seqs(acked))
    maybe = set(seqs(failed)) - ok
    low = expected(workload, ok)
    high = expected(workload, ok | maybe) if maybe else low
    out = Reconciled(expected=low)
    for logical, n in check.rows.items():
        where = check.where.get(logical, logical)
        if n < low[logical]:
            out.lost += low[logical] - n
            out.problems.append(f"{logical} ({where}): {n} rows, expected {low[logical]}")
        elif n > high[logical]:
            out.duplicated += n - high[logical]
            out.problems.append(f"{logical} ({where}): {n} rows, expected {high[logical]}")
    for place, n in check.leftovers.items():
        if n:
            out.problems.append(f"{place}: {n} left over")
    if delivered is None:  # notifications not judged here
        return out
    got = Counter(seq_of(uuid.UUID(bytes=b)) for b in delivered)
    missing = len(ok - got.keys())
    repeats = sum(c - 1 for c in got.values() if c > 1)
    strays = len(got.keys() - ok - maybe)
    if missing:
        out.lost += missing
        out.problems.append(f"notifier: {missing} acknowledged check-ins never delivered")
    if repeats:
        out.duplicated += repeats
        out.problems.append(f"notifier: {repeats} duplicate deliveries")
    if strays:
        out.duplicated += strays
        out.problems.append(f"notifier: {strays} deliveries of check-ins never saved")
    return out


@dataclass
class RunRecord:
    """One arm at one configuration and durability in one round: both of its phases."""

    arm: str
    batch: int
    concurrency: int  # load processes
    durability: str
    round: int
    workload: str = ALL_ACID
    threads: int = 1  # saving threads per load process
    saves: int = 0  # acknowledged, both phases
    saves_per_s: float | None = None  # closed-loop phase
    offered_rate: float | None = None  # open-loop phase, saves/s, all processes
    latencies_ms: list[float] = field(default_factory=list)  # open-loop phase, per request
    unsent: int = 0
    all_done_s: float | None = None  # closed phase: last ack -> every deferred task done
    all_done_open_s: float | None = None
    client_cpu_s: float = 0.0  # the load processes, both phases
    worker_cpu_s: float = 0.0  # the worker processes, both phases, idle polling included
    delivered: list[bytes] = field(default_factory=list)
    acked: Ranges = field(default_factory=list)
    failed: Ranges = field(default_factory=list)
    check: Check | None = None
    expected: dict[str, int] = field(default_factory=dict)
    server: Load | None = None  # closed phase: the servers' load per save
    ceiling: dict[str, float | None] = field(default_factory=dict)  # see ``ceiling_share``
    problems: list[str] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        return self.client_cpu_s + self.worker_cpu_s

    def per_1k(self, cpu: float) -> float | None:
        return cpu / self.saves * 1000 if self.saves else None

    @property
    def correct(self) -> bool:
        return not self.problems

    def verify(self) -> None:
        """Every store holds what the acknowledged saves imply; nothing is left over."""
        if self.check is None:
            self.problems.append("no end-of-run check")
            return
        found = reconcile(self.workload, self.acked, self.failed, self.check, self.delivered)
        self.expected = found.expected
        self.problems += found.problems
        if self.saves == 0:
            self.problems.append("no save was acknowledged")

    def to_json(self) -> dict[str, Any]:
        ok = self.correct
        pct = percentiles(self.latencies_ms) if ok else {}
        server = as_json(self.server)
        return {
            "arm": self.arm,
            "workload": self.workload,
            "batch": self.batch,
            "concurrency": self.concurrency,
            "threads": self.threads,
            "durability": self.durability,
            "round": self.round,
            "saves_per_s": _num(self.saves_per_s, ok),
            "ack_p50_ms": pct.get("p50"),
            "ack_p99_ms": pct.get("p99"),
            "ack_p999_ms": pct.get("p999"),
            "all_done_s": _num(self.all_done_s, ok),
            "cpu_s_per_1k": _num(self.per_1k(self.cpu_s), ok),
            **{k: _num(v, ok) for k, v in server.items()},
            "correct": ok,
            "saves": self.saves,
            "offered_rate": _num(self.offered_rate, True),
            "latency_samples": len(self.latencies_ms),
            "unsent": self.unsent,
            "all_done_open_s": _num(self.all_done_open_s, ok),
            "cpu_client_s_per_1k": _num(self.per_1k(self.client_cpu_s), ok),
            "cpu_worker_s_per_1k": _num(self.per_1k(self.worker_cpu_s), ok),
            "server_window_s": None if self.server is None else self.server.window_s,
            **{k: _num(v, ok) for k, v in self.ceiling.items()},
            "problems": self.problems,
            "check": None
            if self.check is None
            else {**vars(self.check), "expected": self.expected},
        }


def _num(value: float | None, ok: bool) -> float | None:
    return None if value is None or not ok else round(value, 4)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest sample with at least ``q`` of the samples at or below it."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def percentiles(samples: Iterable[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {}
    return {
        name: round(percentile(ordered, q), 3)
        for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))
    }


# -- the ceiling: what a run's Redis and PostgreSQL work alone could reach ---------------------


def ceiling_share(
    saves_per_s: float | None,
    server: dict[str, Any],
    ceilings: dict[str, Any],
    durability: str,
    savers: int,
) -> dict[str, float | None]:
    """Saves/s the servers alone could carry for this run's work, and the share reached.

    Ops per save are measured, not assumed: PostgreSQL = write commits per save
    (``pg_commits_per_1k / 1000``), against ``pgbench``'s one-row INSERT transactions per second
    at the same number of clients (1, else 8); Redis = commands per save
    (``redis_cmds_per_save``, a script call and each command it runs counting one), against
    ``redis-benchmark``'s pipelined XADDs per second under the same ``appendfsync``. The
    ceiling is the lower of the two (an arm that does not use a server is not bounded by it).
    """
    pg_tps = (ceilings.get("postgres") or {}).get("insert_c1" if savers == 1 else "insert_c8")
    redis_ops = ((ceilings.get("redis") or {}).get(durability) or {}).get("xadd")
    bounds: dict[str, float] = {}
    commits = server.get("pg_commits_per_1k")
    if pg_tps and commits:
        bounds["postgres"] = pg_tps / (commits / 1000)
    commands = server.get("redis_cmds_per_save")
    if redis_ops and commands:
        bounds["redis"] = redis_ops / commands
    if not bounds:
        return {"ceiling_saves_per_s": None, "share_of_ceiling": None}
    ceiling = min(bounds.values())
    share = None if not saves_per_s else saves_per_s / ceiling
    return {
        "ceiling_saves_per_s": round(ceiling, 1),
        "share_of_ceiling": None if share is None else round(share, 4),
    }


def apply_ceilings(records: Sequence[RunRecord], ceilings: dict[str, Any]) -> None:
    for r in records:
        r.ceiling = ceiling_share(
            r.saves_per_s, as_json(r.server), ceilings, r.durability, r.concurrency * r.threads
        )


# -- summary ----------------------------------------------------------------------------------

Key = tuple[str, str, int, int, int, str]  # workload, durability, batch, concurrency, threads, arm


def summarize(
    records: Sequence[RunRecord], ceilings: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One row per (workload, durability, batch, concurrency, threads, arm): medians over
    rounds, latency percentiles over every round's samples pooled. Any incorrect round voids
    the row."""
    groups: dict[Key, list[RunRecord]] = {}
    for r in records:
        key = (r.workload, r.durability, r.batch, r.concurrency, r.threads, r.arm)
        groups.setdefault(key, []).append(r)
    rows = []
    for (workload, durability, batch, concurrency, threads, arm), runs in sorted(
        groups.items(), key=_order
    ):
        ok = all(r.correct for r in runs)
        pct = percentiles(x for r in runs for x in r.latencies_ms) if ok else {}

        def median(values: list[float | None], ok: bool = ok) -> float | None:
            found = [v for v in values if v is not None]
            return round(statistics.median(found), 4) if ok and found else None

        servers = [as_json(r.server) for r in runs]
        row: dict[str, Any] = {
            "arm": arm,
            "workload": workload,
            "batch": batch,
            "concurrency": concurrency,
            "threads": threads,
            "durability": durability,
            "rounds": len(runs),
            "incorrect_rounds": sum(not r.correct for r in runs),
            "saves_per_s": median([r.saves_per_s for r in runs]),
            "ack_p50_ms": pct.get("p50"),
            "ack_p99_ms": pct.get("p99"),
            "ack_p999_ms": pct.get("p999"),
            "latency_samples": sum(len(r.latencies_ms) for r in runs),
            "all_done_s": median([r.all_done_s for r in runs]),
            "cpu_s_per_1k": median([r.per_1k(r.cpu_s) for r in runs]),
            "cpu_client_s_per_1k": median([r.per_1k(r.client_cpu_s) for r in runs]),
            **{f: median([s[f] for s in servers]) for f in SERVER_FIELDS},
            "correct": ok,
        }
        row.update(
            ceiling_share(
                row["saves_per_s"], row, ceilings or {}, durability, concurrency * threads
            )
        )
        rows.append(row)
    return rows


def _order(item: tuple[Key, list[RunRecord]]) -> tuple[int, int, int, int, int, int]:
    workload, durability, batch, concurrency, threads, arm = item[0]
    return (
        workload != SEED,
        durability != "strict",
        batch,
        threads,
        concurrency,
        ARMS.index(arm),
    )


def targets(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, per (workload, durability, batch, concurrency, threads), as ratios
    of medians; plus tiered vs single_postgres as figures (no target)."""
    by: dict[tuple[str, str, int, int, int], dict[str, dict[str, Any]]] = {}
    for s in summary:
        key = (s["workload"], s["durability"], s["batch"], s["concurrency"], s["threads"])
        by.setdefault(key, {})[s["arm"]] = s
    out = []
    for (workload, durability, batch, concurrency, threads), arms in by.items():

        def get(arm: str, metric: str, arms: dict[str, dict[str, Any]] = arms) -> Any:
            return arms[arm][metric] if arm in arms else None

        row: dict[str, Any] = {
            "workload": workload,
            "durability": durability,
            "batch": batch,
            "concurrency": concurrency,
            "threads": threads,
            "pio_vs_raw_throughput": _ratio(get(PIO, "saves_per_s"), get(RAW, "saves_per_s")),
            "pio_vs_raw_cpu": _ratio(get(PIO, "cpu_s_per_1k"), get(RAW, "cpu_s_per_1k")),
            "pio_vs_raw_p99": _ratio(get(PIO, "ack_p99_ms"), get(RAW, "ack_p99_ms")),
            "raw_vs_single_throughput": _ratio(get(RAW, "saves_per_s"), get(SINGLE, "saves_per_s")),
            "pio_vs_single_throughput": _ratio(get(PIO, "saves_per_s"), get(SINGLE, "saves_per_s")),
            "pio_saves_per_s": get(PIO, "saves_per_s"),
        }
        met: dict[str, bool | None] = {
            "pio_vs_raw_throughput": _at_least(
                row["pio_vs_raw_throughput"], TARGETS["pio_vs_raw_throughput"]
            ),
            "pio_vs_raw_cpu": _at_most(row["pio_vs_raw_cpu"], TARGETS["pio_vs_raw_cpu"]),
        }
        if threads > 1 and batch == 1:
            met["pio_vs_raw_threads"] = _at_least(
                row["pio_vs_raw_throughput"], TARGETS["pio_vs_raw_threads"]
            )
            met["pio_vs_raw_threads_p99"] = _at_most(
                row["pio_vs_raw_p99"], TARGETS["pio_vs_raw_threads_p99"]
            )
        if workload == SEED and batch == 100 and concurrency == 1 and threads == 1:
            met["pio_save_many_seed"] = _at_least(
                row["pio_saves_per_s"], TARGETS["pio_save_many_seed"]
            )
        row["met"] = met
        out.append(row)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _config(r: dict[str, Any]) -> str:
    return (
        f"| {r['workload']} | {r['durability']} | {r['batch']} | {r['concurrency']} "
        f"| {r['threads']} "
    )


def markdown(
    summary: Sequence[dict[str, Any]],
    goals: Sequence[dict[str, Any]],
    outages: Sequence[dict[str, Any]] = (),
) -> str:
    """The README's tables: results, the servers' load per check-in, targets, outages."""
    head = "| workload | durability | batch | procs | threads "
    rule = "|---|---|---:|---:|---:"
    lines = [
        head + "| arm | saves/s | ack p50 ms | p99 ms | p99.9 ms | lat. n | all done s "
        "| CPU s/1k saves | correct |",
        rule + "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in summary:
        correct = "yes" if r["correct"] else f"**NO** ({r['incorrect_rounds']}/{r['rounds']})"
        lines.append(
            _config(r) + f"| {r['arm']} | {_cell(r['saves_per_s'], 0)} "
            f"| {_cell(r['ack_p50_ms'], 2)} | {_cell(r['ack_p99_ms'], 2)} "
            f"| {_cell(r['ack_p999_ms'], 2)} | {r['latency_samples']} "
            f"| {_cell(r['all_done_s'], 2)} | {_cell(r['cpu_s_per_1k'], 3)} | {correct} |"
        )
    lines += [
        "",
        head + "| arm | PG commits /1k saves | PG WAL bytes /save | PG CPU s /1k saves "
        "| PG statements /1k | Redis cmds /save | ceiling saves/s | share of ceiling |",
        rule + "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        share = r.get("share_of_ceiling")
        lines.append(
            _config(r) + f"| {r['arm']} | {_cell(r['pg_commits_per_1k'], 1)} "
            f"| {_cell(r['pg_wal_bytes_per_save'], 0)} | {_cell(r['pg_cpu_s_per_1k'], 3)} "
            f"| {_cell(r['pg_statements_per_1k'], 0)} | {_cell(r['redis_cmds_per_save'], 1)} "
            f"| {_cell(r.get('ceiling_saves_per_s'), 0)} "
            f"| {'—' if share is None else f'{share:.1%}'} |"
        )
    lines += [
        "",
        head + "| persistio/raw saves/s (>= 0.9; 8 threads: >= 2) | persistio/raw CPU (<= 1.2) "
        "| persistio/raw p99 (8 threads: <= 1) | raw/single saves/s | persistio/single saves/s "
        "| persistio saves/s (seed save_many(100): >= 20,000) |",
        rule + "|---:|---:|---:|---:|---:|---:|",
    ]
    for g in goals:
        met = g["met"]
        throughput = _goal(g, met, "pio_vs_raw_throughput")
        if "pio_vs_raw_threads" in met:
            throughput = _goal(g, met, "pio_vs_raw_throughput", "pio_vs_raw_threads")
        lines.append(
            _config(g) + f"| {throughput} | {_goal(g, met, 'pio_vs_raw_cpu')} "
            f"| {_goal(g, met, 'pio_vs_raw_p99', 'pio_vs_raw_threads_p99')} "
            f"| {_goal(g, met, 'raw_vs_single_throughput')} "
            f"| {_goal(g, met, 'pio_vs_single_throughput')} "
            f"| {_goal(g, met, 'pio_saves_per_s', 'pio_save_many_seed', digits=0)} |"
        )
    if outages:
        lines += [
            "",
            "| workload | arm | offered saves/s | acked share during the pause | ack p99 during "
            "ms | converged after resume s | lost | duplicated | buffered/dropped receipts |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for o in outages:
            share = o["acked_share_during"]
            lines.append(
                f"| {o['workload']} | {o['arm']} | {_cell(o['offered_rate'], 0)} "
                f"| {'—' if share is None else f'{share:.1%}'} "
                f"| {_cell(o['ack_p99_during_ms'], 1)} | {_cell(o['converged_after_s'], 2)} "
                f"| {_cell(o['lost'])} | {_cell(o['duplicated'])} | {o['degraded']} |"
            )
    return "\n".join(lines) + "\n"


def _goal(
    row: dict[str, Any],
    met: dict[str, bool | None],
    name: str,
    verdict_name: str | None = None,
    digits: int = 2,
) -> str:
    value = row[name]
    if value is None:
        return "—"
    verdict = met.get(verdict_name or name)
    mark = "" if verdict is None else (" ✓" if verdict else " ✗")
    return f"{value:,.{digits}f}{mark}"
