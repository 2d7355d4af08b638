"""PNG plots (matplotlib, Agg: no display needed): throughput, CPU per save, PostgreSQL load per
check-in, latency CDFs and the outage timeline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .arms import ARMS
from .results import RunRecord
from .workload import WORKLOADS

COLORS = {"single_postgres": "#4c72b0", "raw_tiered": "#dd8452", "persistio": "#55a868"}
STYLES = {"single_postgres": "-", "raw_tiered": "--", "persistio": ":"}  # lines can coincide
DURABILITIES = ("strict", "relaxed")

Config = tuple[int, int, int]  # batch, processes, threads


def write_plots(
    records: Sequence[RunRecord],
    summary: Sequence[dict[str, Any]],
    outages: Sequence[dict[str, Any]],
    out: Path,
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: no display on a server
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        _bars(
            summary,
            "saves_per_s",
            "acknowledged saves/s (median of rounds)",
            out / "throughput.png",
        ),
        _bars(summary, "cpu_s_per_1k", "client + worker CPU s per 1,000 saves", out / "cpu.png"),
        _pg_load(summary, out / "pg_load.png"),
        _cdf(records, out / "latency_cdf.png"),
    ]
    if outages:
        paths.append(_outage(outages, out / "outage.png"))
    return paths


def _configs(rows: Sequence[dict[str, Any]]) -> list[Config]:
    return sorted(
        {(r["batch"], r["concurrency"], r["threads"]) for r in rows},
        key=lambda c: (c[0], c[2], c[1]),
    )


def _label(config: Config) -> str:
    batch, procs, threads = config
    who = f"{threads} threads" if threads > 1 else f"{procs} proc"
    return f"batch {batch}\n{who}"


def _present(values: Sequence[str], found: set[str]) -> list[str]:
    return [v for v in values if v in found]


def _row(
    summary: Sequence[dict[str, Any]], workload: str, durability: str, config: Config, arm: str
) -> dict[str, Any] | None:
    for r in summary:
        if (
            r["workload"] == workload
            and r["durability"] == durability
            and (r["batch"], r["concurrency"], r["threads"]) == config
            and r["arm"] == arm
        ):
            return r
    return None


def _grouped(
    ax: Any, groups: Sequence[Any], value: Callable[[Any, str], float | None], labels: list[str]
) -> None:
    width = 0.8 / len(ARMS)
    for i, arm in enumerate(ARMS):
        values = [value(g, arm) or 0.0 for g in groups]
        xs = [x + (i - (len(ARMS) - 1) / 2) * width for x in range(len(groups))]
        ax.bar(xs, values, width, label=arm, color=COLORS[arm])
    ax.set_xticks(range(len(groups)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.grid(axis="y", which="both", alpha=0.3)


def _bars(summary: Sequence[dict[str, Any]], metric: str, label: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    workloads = _present(WORKLOADS, {r["workload"] for r in summary})
    durabilities = _present(DURABILITIES, {r["durability"] for r in summary})
    configs = _configs(summary)
    fig, axes = plt.subplots(
        len(workloads),
        len(durabilities),
        figsize=(6.5 * len(durabilities), 4.2 * len(workloads)),
        squeeze=False,
    )
    for row, workload in zip(axes, workloads, strict=True):
        for ax, durability in zip(row, durabilities, strict=True):

            def value(
                config: Config, arm: str, w: str = workload, d: str = durability
            ) -> float | None:
                found = _row(summary, w, d, config, arm)
                return None if found is None else found[metric]

            _grouped(ax, configs, value, [_label(c) for c in configs])
            ax.set_title(f"{workload} workload, {durability} durability")
            ax.set_ylabel(label)
    axes[0][0].legend()
    fig.text(0.5, 0.01, "a missing bar = an incorrect run (no number reported)", ha="center")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


PG_METRICS = (
    ("pg_commits_per_1k", "PostgreSQL write commits per 1,000 check-ins"),
    ("pg_wal_bytes_per_save", "PostgreSQL WAL bytes per check-in"),
    ("pg_cpu_s_per_1k", "PostgreSQL CPU s per 1,000 check-ins"),
)


def _pg_load(summary: Sequence[dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    workloads = _present(WORKLOADS, {r["workload"] for r in summary})
    durabilities = _present(DURABILITIES, {r["durability"] for r in summary})
    groups = [(d, c) for d in durabilities for c in _configs(summary)]
    labels = [f"{d}\n{_label(c)}" for d, c in groups]
    fig, axes = plt.subplots(
        len(PG_METRICS),
        len(workloads),
        figsize=(max(7.0, 0.9 * len(groups)) * len(workloads), 3.6 * len(PG_METRICS)),
        squeeze=False,
    )
    for row, (metric, title) in zip(axes, PG_METRICS, strict=True):
        for ax, workload in zip(row, workloads, strict=True):

            def value(
                group: tuple[str, Config], arm: str, w: str = workload, m: str = metric
            ) -> float | None:
                found = _row(summary, w, group[0], group[1], arm)
                return None if found is None else found[m]

            _grouped(ax, groups, value, labels)
            ax.set_title(f"{workload}: {title}", fontsize=10)
    axes[0][0].legend(fontsize=8)
    fig.text(
        0.5,
        0.005,
        "closed-loop phase, from before its workers start until its deferred work is done; "
        "missing bar = not measured or 0",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cdf(records: Sequence[RunRecord], path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    rows = [
        (w, d)
        for w in _present(WORKLOADS, {r.workload for r in records})
        for d in _present(DURABILITIES, {r.durability for r in records})
    ]
    configs = sorted(
        {(r.batch, r.concurrency, r.threads) for r in records}, key=lambda c: (c[0], c[2], c[1])
    )
    fig, axes = plt.subplots(
        len(rows), len(configs), figsize=(4 * len(configs), 3.3 * len(rows)), squeeze=False
    )
    for axrow, (workload, durability) in zip(axes, rows, strict=True):
        for ax, config in zip(axrow, configs, strict=True):
            for arm in ARMS:
                runs = [
                    r
                    for r in records
                    if (r.workload, r.durability, r.arm) == (workload, durability, arm)
                    and (r.batch, r.concurrency, r.threads) == config
                ]
                if not runs or not all(r.correct for r in runs):
                    continue  # an incorrect run is never drawn as a number
                samples = sorted(x for r in runs for x in r.latencies_ms)
                if samples:
                    ys = [(i + 1) / len(samples) for i in range(len(samples))]
                    ax.step(samples, ys, where="post", label=arm, color=COLORS[arm])
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())  # log minor labels overlap
            ax.set_title(
                f"{workload}, {durability}, {_label(config).replace(chr(10), ', ')}", fontsize=9
            )
            ax.set_xlabel("ack latency from scheduled start, ms")
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of requests")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _outage(outages: Sequence[dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    workloads = _present(WORKLOADS, {o["workload"] for o in outages})
    fig, axes = plt.subplots(1, len(workloads), figsize=(7 * len(workloads), 4), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        span: tuple[float, float] | None = None
        for o in outages:
            if o["workload"] != workload or not o["acks_per_s"]:
                continue
            ys = [*o["acks_per_s"], o["acks_per_s"][-1]]  # the last second drawn too
            xs = list(range(len(ys)))
            ax.step(
                xs,
                ys,
                where="post",
                label=o["arm"],
                color=COLORS[o["arm"]],
                linestyle=STYLES[o["arm"]],
                linewidth=1.8,
            )
            if o["pause_at_s"] is not None and o["resume_at_s"] is not None:
                span = (o["pause_at_s"], o["resume_at_s"])
        if span:
            ax.axvspan(*span, color="grey", alpha=0.2, label="PostgreSQL paused")
        ax.set_title(f"{workload}: acknowledged check-ins per second")
        ax.set_xlabel("seconds from the start of the load")
        ax.set_ylabel("acks/s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
