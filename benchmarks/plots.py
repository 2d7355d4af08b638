"""PNG plots (matplotlib, Agg: no display needed): throughput, CPU per save, latency CDFs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .arms import ARMS
from .results import RunRecord

COLORS = {"single_postgres": "#4c72b0", "raw_tiered": "#dd8452", "persistio": "#55a868"}


def write_plots(
    records: Sequence[RunRecord], summary: Sequence[dict[str, Any]], out: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: no display on a server
    out.mkdir(parents=True, exist_ok=True)
    return [
        _bars(
            summary,
            "saves_per_s",
            "acknowledged saves/s (median of rounds)",
            out / "throughput.png",
        ),
        _bars(summary, "cpu_s_per_1k", "client + worker CPU s per 1,000 saves", out / "cpu.png"),
        _cdf(records, out / "latency_cdf.png"),
    ]


def _configs(summary: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    return sorted({(r["batch"], r["concurrency"]) for r in summary})


def _durabilities(items: Sequence[Any], get: Any) -> list[str]:
    found = {get(i) for i in items}
    return [d for d in ("strict", "relaxed") if d in found]


def _bars(summary: Sequence[dict[str, Any]], metric: str, label: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    durabilities = _durabilities(summary, lambda r: r["durability"])
    configs = _configs(summary)
    fig, axes = plt.subplots(
        1, len(durabilities), figsize=(6 * len(durabilities), 4.2), squeeze=False
    )
    width = 0.8 / len(ARMS)
    for ax, durability in zip(axes[0], durabilities, strict=True):
        for i, arm in enumerate(ARMS):
            values = []
            for batch, conc in configs:
                row = next(
                    (
                        r
                        for r in summary
                        if (r["durability"], r["batch"], r["concurrency"], r["arm"])
                        == (durability, batch, conc, arm)
                    ),
                    None,
                )
                values.append(row[metric] if row and row[metric] is not None else 0.0)
            xs = [x + (i - (len(ARMS) - 1) / 2) * width for x in range(len(configs))]
            ax.bar(xs, values, width, label=arm, color=COLORS[arm])
        ax.set_xticks(range(len(configs)), [f"batch {b}\n{c} proc" for b, c in configs])
        ax.set_yscale("log")
        ax.set_title(f"{durability} durability")
        ax.set_ylabel(label)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0][0].legend()
    fig.text(0.5, 0.01, "a missing bar = an incorrect run (no number reported)", ha="center")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cdf(records: Sequence[RunRecord], path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    durabilities = _durabilities(records, lambda r: r.durability)
    configs = sorted({(r.batch, r.concurrency) for r in records})
    fig, axes = plt.subplots(
        len(durabilities),
        len(configs),
        figsize=(4 * len(configs), 3.3 * len(durabilities)),
        squeeze=False,
    )
    for row, durability in zip(axes, durabilities, strict=True):
        for ax, (batch, conc) in zip(row, configs, strict=True):
            for arm in ARMS:
                runs = [
                    r
                    for r in records
                    if (r.durability, r.batch, r.concurrency, r.arm)
                    == (durability, batch, conc, arm)
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
            ax.set_title(f"{durability}, batch {batch}, {conc} proc", fontsize=9)
            ax.set_xlabel("ack latency from scheduled start, ms")
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of requests")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
