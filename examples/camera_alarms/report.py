"""Measurements from what is stored: confidence histograms, accuracy per detector, lag per stage.

Alarms per camera per day are read from a ``pio.Count`` (``cam_alarms_daily``): one number per
camera and day, whatever the number of images, exact under replay (each image counts once, by
its id, in the day it was captured).

The confidence histogram stays computed from rows: the stored fact is one row per (image,
detector) (``cam_results``, keyed, last write wins). A re-detection with a new model version
moves an image from one confidence bucket to another; a Count keys its contributions by bucket,
so the old bucket would keep the image. Counting the rows when the report runs is exact, and
cheap at this volume.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import persistio as pio

from .models import PERSON, AlarmImage, Detection, ImageRecord, Verdict
from .review import cameras, images, verdict_of

BUCKETS = 10  # confidence buckets of width 0.1: [0, 0.1), ..., [0.9, 1.0]


@dataclass(frozen=True)
class Accuracy:
    """One detector against the reviewers' verdicts (images without a verdict do not count)."""

    detector: str
    tp: int
    fp: int
    fn: int
    tn: int
    missing: int  # reviewed images this detector has no result for (e.g. dead-lettered)

    @property
    def reviewed(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float | None:
        flagged = self.tp + self.fp
        return self.tp / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        persons = self.tp + self.fn
        return self.tp / persons if persons else None


@dataclass
class ReportData:
    site: str
    threshold: float
    images: list[ImageRecord]
    detections: list[Detection]
    verdicts: dict[str, Verdict]
    detectors: list[str] = field(default_factory=list)
    histogram: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    accuracy: list[Accuracy] = field(default_factory=list)
    lags: dict[str, list[float]] = field(default_factory=dict)
    # camera -> (UTC day, alarms captured that day), read from the counts
    alarms: dict[str, list[tuple[date, int]]] = field(default_factory=dict)


def bucket(confidence: float, buckets: int = BUCKETS) -> int:
    return min(buckets - 1, max(0, int(confidence * buckets)))


def histogram(
    detections: list[Detection], buckets: int = BUCKETS
) -> dict[str, dict[str, list[int]]]:
    """detector -> label -> images per confidence bucket.

    Each (detector, image) counts once per label, at that label's highest confidence in the
    image. Every image counts for PERSON, at 0.0 when the detector saw no one: the mass at 0 is
    what "not confident at all" looks like, and where the false negatives hide.
    """
    latest = {(d.detector, d.image_id): d for d in detections}  # one row per key, by design
    counts: dict[str, dict[str, list[int]]] = {}
    for (detector, _image), row in sorted(latest.items()):
        best: dict[str, float] = {PERSON: 0.0}
        for label in row.labels:
            best[label.name] = max(best.get(label.name, 0.0), label.confidence)
        per_label = counts.setdefault(detector, {})
        for name, confidence in best.items():
            per_label.setdefault(name, [0] * buckets)[bucket(confidence, buckets)] += 1
    return counts


def accuracy(
    detections: list[Detection], verdicts: dict[str, Verdict], threshold: float
) -> list[Accuracy]:
    by_key = {(d.detector, d.image_id): d for d in detections}
    found: list[Accuracy] = []
    for detector in sorted({d.detector for d in detections}):
        tp = fp = fn = tn = missing = 0
        for image_id, verdict in verdicts.items():
            row = by_key.get((detector, image_id))
            if row is None:
                missing += 1
                continue
            said_person = row.person_confidence >= threshold
            if said_person and verdict.person:
                tp += 1
            elif said_person:
                fp += 1
            elif verdict.person:
                fn += 1
            else:
                tn += 1
        found.append(Accuracy(detector, tp, fp, fn, tn, missing))
    return found


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def lags(
    records: list[ImageRecord], detections: list[Detection], verdicts: dict[str, Verdict]
) -> dict[str, list[float]]:
    """Seconds spent in each stage, one value per image (per detector for detection)."""
    found: dict[str, list[float]] = {"camera -> ingest": [], "ingest -> detection start": []}
    started: dict[str, Detection] = {}
    for d in detections:
        started.setdefault(d.image_id, d)
        found.setdefault(f"detect ({d.detector})", []).append(d.duration_s)
    for record in records:
        found["camera -> ingest"].append(_seconds(record.ingested_at, record.captured_at))
        first = started.get(record.image_id)
        if first is not None:
            found["ingest -> detection start"].append(
                _seconds(first.started_at, record.ingested_at)
            )
    by_id = {r.image_id: r for r in records}
    found["ingest -> review queue"] = []
    found["review queue -> verdict"] = []
    for v in verdicts.values():
        if v.queued_at is None or v.image_id not in by_id:
            continue  # marked without being queued: no queue stage to measure
        found["ingest -> review queue"].append(_seconds(v.queued_at, by_id[v.image_id].ingested_at))
        found["review queue -> verdict"].append(_seconds(v.decided_at, v.queued_at))
    return {stage: values for stage, values in found.items() if values}


def alarms_per_day(
    store: pio.Persistio, site: str, cameras: list[str], first: date, last: date
) -> dict[str, list[tuple[date, int]]]:
    """Alarms per camera per UTC day from ``first`` to ``last``, zeros included: one bucket
    read per camera and day, never a read of the images."""
    since = datetime.combine(first, time(), UTC)
    until = datetime.combine(last, time(), UTC) + timedelta(days=1)
    return {
        camera: [
            (start.date(), int(n))
            for start, n in store.counts(
                AlarmImage, "cam_alarms_daily", since=since, until=until, site=site, camera=camera
            )
        ]
        for camera in cameras
    }


def gather(store: pio.Persistio, site: str, threshold: float = 0.5) -> ReportData:
    """Read everything the report needs from the stores (the verdicts from the ACID table)."""
    records = images(store, site)
    detections = [
        d for r in records for d in store.query(Detection, "cam_results", image_id=r.image_id)
    ]
    verdicts = {r.image_id: v for r in records if (v := verdict_of(store, r.image_id)) is not None}
    data = ReportData(site, threshold, records, detections, verdicts)
    data.detectors = sorted({d.detector for d in detections})
    data.histogram = histogram(detections)
    data.accuracy = accuracy(detections, verdicts, threshold)
    data.lags = lags(records, detections, verdicts)
    if records:
        days = [r.captured_at.astimezone(UTC).date() for r in records]
        data.alarms = alarms_per_day(store, site, cameras(store, site), min(days), max(days))
    return data


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def accuracy_table(rows: list[Accuracy]) -> str:
    lines = [
        "| detector | reviewed | TP | FP | FN | TN | precision | recall | no result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {a.detector} | {a.reviewed} | {a.tp} | {a.fp} | {a.fn} | {a.tn} "
        f"| {_ratio(a.precision)} | {_ratio(a.recall)} | {a.missing} |"
        for a in rows
    ]
    return "\n".join(lines)


def histogram_table(data: ReportData) -> str:
    edges = [f"{i / BUCKETS:.1f}" for i in range(BUCKETS)]
    lines = [
        "| detector | " + " | ".join(edges) + " |",
        "|---|" + "---:|" * BUCKETS,
    ]
    for detector in data.detectors:
        counts = data.histogram.get(detector, {}).get(PERSON, [0] * BUCKETS)
        lines.append(f"| {detector} | " + " | ".join(str(c) for c in counts) + " |")
    return "\n".join(lines)


def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile (the value itself, no interpolation, for few samples)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def lag_table(data: ReportData) -> str:
    lines = ["| stage | n | median s | p95 s |", "|---|---:|---:|---:|"]
    for stage, values in data.lags.items():
        median = statistics.median(values)
        lines.append(f"| {stage} | {len(values)} | {median:.3f} | {p95(values):.3f} |")
    return "\n".join(lines)


def alarms_table(data: ReportData) -> str:
    days = [d for d, _ in next(iter(data.alarms.values()), [])]
    lines = [
        "| camera | " + " | ".join(d.isoformat() for d in days) + " | total |",
        "|---|" + "---:|" * (len(days) + 1),
    ]
    for camera, series in sorted(data.alarms.items()):
        counts = [n for _, n in series]
        lines.append(f"| {camera} | " + " | ".join(map(str, counts)) + f" | {sum(counts)} |")
    return "\n".join(lines)


def markdown(data: ReportData, plots: dict[str, str]) -> str:
    persons = sum(v.person for v in data.verdicts.values())
    parts = [
        f"# Camera alarms report: site `{data.site}`",
        "",
        f"{len(data.images)} alarm images, {len(data.verdicts)} with a reviewer's verdict "
        f"({persons} with a person). A detector says *person* when its person confidence is "
        f">= {data.threshold}.",
        "",
        "## Alarms per camera per day (UTC day of capture, from the counts)",
        "",
        alarms_table(data),
        "",
        "## Accuracy per detector (against the verdicts)",
        "",
        accuracy_table(data.accuracy),
        "",
        "## Person confidence per image, per detector (images per bucket)",
        "",
        histogram_table(data),
        "",
        "## Pipeline lag per stage",
        "",
        lag_table(data),
        "",
        "## Plots",
        "",
        *[f"![{title}]({name})" for title, name in plots.items()],
        "",
    ]
    return "\n".join(parts)


def write_report(store: pio.Persistio, out_dir: Path, site: str, threshold: float) -> ReportData:
    """Write the PNG plots and ``report.md`` into ``out_dir``; returns the numbers used."""
    from .plots import write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    data = gather(store, site, threshold)
    plots = write_plots(data, out_dir)
    (out_dir / "report.md").write_text(markdown(data, plots))
    return data
