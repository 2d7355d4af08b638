"""One run's record, its correctness check, and the statistics and tables built from runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .arms import ARMS, PIO, RAW, SINGLE, Check

TARGETS = {
    "pio_vs_raw_throughput": 0.9,  # persistio saves/s >= 0.9 x raw_tiered
    "pio_vs_raw_cpu": 1.2,  # persistio CPU per save <= 1.2 x raw_tiered
    "tiered_vs_single_batch1": 5.0,  # tiered ack throughput >= 5 x single_postgres, batch 1
}


@dataclass
class RunRecord:
    """One arm at one (batch, concurrency, durability) in one round: both of its phases."""

    arm: str
    batch: int
    concurrency: int
    durability: str
    round: int
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
    check: Check | None = None
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
        """Every store holds exactly one row per acknowledged save; nothing is left over."""
        if self.check is None:
            self.problems.append("no end-of-run check")
            return
        for store, n in self.check.rows.items():
            if n != self.saves:
                self.problems.append(f"{store}: {n} rows for {self.saves} saves")
        for place, n in self.check.leftovers.items():
            if n:
                self.problems.append(f"{place}: {n} left over")
        if len(self.delivered) != self.saves:
            self.problems.append(f"notifier: {len(self.delivered)} deliveries for {self.saves}")
        duplicates = len(self.delivered) - len(set(self.delivered))
        if duplicates:
            self.problems.append(f"notifier: {duplicates} duplicate deliveries")
        if self.saves == 0:
            self.problems.append("no save was acknowledged")

    def to_json(self) -> dict[str, Any]:
        ok = self.correct
        pct = percentiles(self.latencies_ms) if ok else {}
        return {
            "arm": self.arm,
            "batch": self.batch,
            "concurrency": self.concurrency,
            "durability": self.durability,
            "round": self.round,
            "saves_per_s": _num(self.saves_per_s, ok),
            "ack_p50_ms": pct.get("p50"),
            "ack_p99_ms": pct.get("p99"),
            "ack_p999_ms": pct.get("p999"),
            "all_done_s": _num(self.all_done_s, ok),
            "cpu_s_per_1k": _num(self.per_1k(self.cpu_s), ok),
            "correct": ok,
            "saves": self.saves,
            "offered_rate": _num(self.offered_rate, True),
            "latency_samples": len(self.latencies_ms),
            "unsent": self.unsent,
            "all_done_open_s": _num(self.all_done_open_s, ok),
            "cpu_client_s_per_1k": _num(self.per_1k(self.client_cpu_s), ok),
            "cpu_worker_s_per_1k": _num(self.per_1k(self.worker_cpu_s), ok),
            "problems": self.problems,
            "check": None if self.check is None else vars(self.check),
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


Key = tuple[str, int, int, str]  # durability, batch, concurrency, arm


def summarize(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per (durability, batch, concurrency, arm): medians over rounds, latency
    percentiles over every round's samples pooled. Any incorrect round voids the row."""
    groups: dict[Key, list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.durability, r.batch, r.concurrency, r.arm), []).append(r)
    rows = []
    for (durability, batch, concurrency, arm), runs in sorted(groups.items(), key=_order):
        ok = all(r.correct for r in runs)
        pct = percentiles(x for r in runs for x in r.latencies_ms) if ok else {}

        def median(values: list[float | None], ok: bool = ok) -> float | None:
            found = [v for v in values if v is not None]
            return round(statistics.median(found), 4) if ok and found else None

        rows.append(
            {
                "arm": arm,
                "batch": batch,
                "concurrency": concurrency,
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
                "correct": ok,
            }
        )
    return rows


def _order(item: tuple[Key, list[RunRecord]]) -> tuple[int, int, int, int]:
    durability, batch, concurrency, arm = item[0]
    return (durability != "strict", batch, concurrency, ARMS.index(arm))


def targets(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, per (durability, batch, concurrency), as ratios of medians."""
    by: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}
    for s in summary:
        by.setdefault((s["durability"], s["batch"], s["concurrency"]), {})[s["arm"]] = s
    out = []
    for (durability, batch, concurrency), arms in by.items():
        thr = {a: arms[a]["saves_per_s"] for a in arms}
        cpu = {a: arms[a]["cpu_s_per_1k"] for a in arms}
        row: dict[str, Any] = {
            "durability": durability,
            "batch": batch,
            "concurrency": concurrency,
            "pio_vs_raw_throughput": _ratio(thr.get(PIO), thr.get(RAW)),
            "pio_vs_raw_cpu": _ratio(cpu.get(PIO), cpu.get(RAW)),
            "raw_vs_single_throughput": _ratio(thr.get(RAW), thr.get(SINGLE)),
            "pio_vs_single_throughput": _ratio(thr.get(PIO), thr.get(SINGLE)),
        }
        met = {
            "pio_vs_raw_throughput": _at_least(
                row["pio_vs_raw_throughput"], TARGETS["pio_vs_raw_throughput"]
            ),
            "pio_vs_raw_cpu": _at_most(row["pio_vs_raw_cpu"], TARGETS["pio_vs_raw_cpu"]),
        }
        if batch == 1:
            for name in ("raw_vs_single_throughput", "pio_vs_single_throughput"):
                met[name] = _at_least(row[name], TARGETS["tiered_vs_single_batch1"])
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


def markdown(summary: Sequence[dict[str, Any]], goals: Sequence[dict[str, Any]]) -> str:
    """The README's tables: results per configuration, then the targets."""
    lines = [
        "| durability | batch | procs | arm | saves/s | ack p50 ms | p99 ms | p99.9 ms "
        "| lat. n | all done s | CPU s/1k saves | correct |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in summary:
        correct = "yes" if r["correct"] else f"**NO** ({r['incorrect_rounds']}/{r['rounds']})"
        lines.append(
            f"| {r['durability']} | {r['batch']} | {r['concurrency']} | {r['arm']} "
            f"| {_cell(r['saves_per_s'], 0)} | {_cell(r['ack_p50_ms'], 2)} "
            f"| {_cell(r['ack_p99_ms'], 2)} | {_cell(r['ack_p999_ms'], 2)} "
            f"| {r['latency_samples']} | {_cell(r['all_done_s'], 2)} "
            f"| {_cell(r['cpu_s_per_1k'], 3)} | {correct} |"
        )
    lines += [
        "",
        "| durability | batch | procs | persistio/raw saves/s (>= 0.9) | persistio/raw CPU "
        "(<= 1.2) | raw/single saves/s | persistio/single saves/s (>= 5 at batch 1) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g in goals:
        met = g["met"]
        lines.append(
            f"| {g['durability']} | {g['batch']} | {g['concurrency']} "
            f"| {_goal(g, met, 'pio_vs_raw_throughput')} | {_goal(g, met, 'pio_vs_raw_cpu')} "
            f"| {_goal(g, met, 'raw_vs_single_throughput')} "
            f"| {_goal(g, met, 'pio_vs_single_throughput')} |"
        )
    return "\n".join(lines) + "\n"


def _goal(row: dict[str, Any], met: dict[str, bool | None], name: str) -> str:
    value = row[name]
    if value is None:
        return "—"
    verdict = met.get(name)
    mark = "" if verdict is None else (" ✓" if verdict else " ✗")
    return f"{value:.2f}{mark}"
