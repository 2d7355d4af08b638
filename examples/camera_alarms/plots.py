"""PNG plots of a report (matplotlib's Agg canvas, no pyplot: no global state, no display)."""

from __future__ import annotations

import statistics
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .models import PERSON
from .report import BUCKETS, ReportData, bucket, p95

VERDICT_COLORS = {"person": "#2b8a3e", "empty": "#c92a2a", "unreviewed": "#adb5bd"}


def person_buckets_by_verdict(data: ReportData) -> dict[str, dict[str, list[int]]]:
    """detector -> verdict ("person", "empty", "unreviewed") -> images per person bucket."""
    found: dict[str, dict[str, list[int]]] = {
        d: {k: [0] * BUCKETS for k in VERDICT_COLORS} for d in data.detectors
    }
    latest = {(d.detector, d.image_id): d for d in data.detections}
    for (detector, image_id), row in latest.items():
        verdict = data.verdicts.get(image_id)
        kind = "unreviewed" if verdict is None else ("person" if verdict.person else "empty")
        found[detector][kind][bucket(row.person_confidence)] += 1
    return found


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)


def confidence_plot(data: ReportData, path: Path) -> None:
    split = person_buckets_by_verdict(data)
    rows = max(1, len(data.detectors))
    figure = Figure(figsize=(7.5, 1.9 * rows + 0.8), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    centers = [(i + 0.5) / BUCKETS for i in range(BUCKETS)]
    for ax, detector in zip(axes, data.detectors, strict=False):
        bottom = [0] * BUCKETS
        for kind, color in VERDICT_COLORS.items():
            counts = split[detector][kind]
            ax.bar(centers, counts, width=0.09, bottom=bottom, color=color, label=kind)
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
        ax.axvline(data.threshold, color="black", linestyle="--", linewidth=1)
        ax.set_ylabel("images")
        ax.set_title(f"{detector}: {PERSON} confidence", fontsize=10, loc="left")
    axes[0].legend(title="verdict", fontsize=8, title_fontsize=8, loc="upper right")
    axes[-1].set_xlim(0, 1)
    axes[-1].set_xlabel("person confidence (dashed: decision threshold)")
    figure.suptitle("Confidence distribution per detector")
    _save(figure, path)


def accuracy_plot(data: ReportData, path: Path) -> None:
    figure = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = figure.subplots()
    names = [a.detector for a in data.accuracy]
    xs = list(range(len(names)))
    precision = [a.precision or 0.0 for a in data.accuracy]
    recall = [a.recall or 0.0 for a in data.accuracy]
    ax.bar([x - 0.2 for x in xs], precision, width=0.4, label="precision", color="#1971c2")
    ax.bar([x + 0.2 for x in xs], recall, width=0.4, label="recall", color="#f08c00")
    for x, a in zip(xs, data.accuracy, strict=True):
        ax.annotate(
            f"FN {a.fn}, FP {a.fp}", (x, 1.02), ha="center", fontsize=8, annotation_clip=False
        )
    ax.set_xticks(xs, names)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("against reviewers' verdicts")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"Precision and recall per detector (threshold {data.threshold})")
    _save(figure, path)


def lag_plot(data: ReportData, path: Path) -> None:
    stages = list(data.lags)
    figure = Figure(figsize=(7.5, 0.45 * len(stages) + 1.4), layout="constrained")
    ax = figure.subplots()
    floor = 1e-4  # log axis: sub-0.1 ms stages (and clock skew below zero) sit on the floor
    medians = [max(floor, statistics.median(data.lags[s])) for s in stages]
    tail = [max(floor, p95(data.lags[s])) for s in stages]
    ys = list(range(len(stages)))
    ax.barh(ys, medians, color="#5c7cfa", label="median")
    ax.scatter(tail, ys, color="black", marker="|", s=200, label="p95", zorder=3)
    ax.set_yticks(ys, stages)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Pipeline lag per stage")
    _save(figure, path)


def write_plots(data: ReportData, out_dir: Path) -> dict[str, str]:
    """Write the plots; returns title -> file name (relative to ``out_dir``)."""
    plots = {
        "Confidence distribution per detector": "confidence.png",
        "Precision and recall per detector": "accuracy.png",
        "Pipeline lag per stage": "lag.png",
    }
    confidence_plot(data, out_dir / plots["Confidence distribution per detector"])
    accuracy_plot(data, out_dir / plots["Precision and recall per detector"])
    if data.lags:
        lag_plot(data, out_dir / plots["Pipeline lag per stage"])
    else:
        del plots["Pipeline lag per stage"]
    return plots
