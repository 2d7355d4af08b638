"""Ingest (a folder, once or polled) and the detection consumer.

Ingest saves one ``AlarmImage`` per file: persistio writes its bytes to amorphous storage and a
work item holding only its id to the ``cam_detect`` stream. The consumer reads the bytes back,
runs every detector, saves one ``Detection`` per detector and queues the image for review when a
detector is confident (or when the image is drawn for the recall audit).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import persistio as pio

from .detectors import Detector
from .imaging import IMAGE_SUFFIXES, decode, fit, image_id
from .models import PERSON, AlarmImage, Detection, DetectionTask, Label, ReviewEntry

log = logging.getLogger("camera_alarms")


@dataclass(frozen=True)
class Settings:
    """The pipeline's knobs; the CLI exposes each one."""

    site: str = "default"
    # "Likely person" = some detector's person confidence >= threshold. Every detector's scale
    # puts its own library's default decision at 0.5 (see detectors.py).
    threshold: float = 0.5
    # Negatives no detector flags are never shown to a reviewer, so their false negatives would
    # stay invisible: a deterministic sample of them is queued as "audit" items to measure
    # recall. 1.0 reviews everything (the demo, to get exact numbers).
    audit_rate: float = 0.1
    work_size: int = 320  # longer side of the image the detectors see


class RawImageMissing(LookupError):
    """The work item arrived before its bytes (they are in the spool): retry later."""


def now() -> datetime:
    return datetime.now(UTC)


def image_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def ingest_file(store: pio.Persistio, path: Path, camera: str, site: str) -> str:
    """Save one image file as an alarm; returns its id (the same id for the same bytes)."""
    data = path.read_bytes()
    stat = path.stat()
    image = AlarmImage(
        image_id=image_id(camera, data),
        site=site,
        camera=camera,
        filename=path.name,
        captured_at=datetime.fromtimestamp(stat.st_mtime, UTC),
        ingested_at=now(),
        data=data,
    )
    store.save(image)
    return image.image_id


def ingest_dir(store: pio.Persistio, directory: Path, camera: str, site: str) -> list[str]:
    return [ingest_file(store, p, camera, site) for p in image_files(directory)]


def watch(
    store: pio.Persistio,
    directory: Path,
    camera: str,
    site: str,
    *,
    interval: float = 2.0,
    polls: int | None = None,
    stop: threading.Event | None = None,
) -> list[str]:
    """Poll ``directory`` and ingest each new image once; returns the ids ingested.

    A file is ingested only once its size and mtime are unchanged since the previous poll:
    cameras upload over FTP/SMB, and a half-written JPEG must not become an alarm. Restarting a
    watch re-ingests the folder, which is harmless: ids are content hashes, so the stored rows
    are the same and the detectors' results are rewritten in place, not duplicated.
    """
    stop = stop or threading.Event()
    last_seen: dict[Path, tuple[int, int]] = {}
    done: set[Path] = set()
    ingested: list[str] = []
    poll = 0
    while not stop.is_set() and (polls is None or poll < polls):
        poll += 1
        for path in image_files(directory):
            if path in done:
                continue
            stat = path.stat()
            signature = (stat.st_size, stat.st_mtime_ns)
            if last_seen.get(path) == signature:
                ingested.append(ingest_file(store, path, camera, site))
                done.add(path)
            last_seen[path] = signature
        if polls is None or poll < polls:
            stop.wait(interval)
    return ingested


def person_confidence(labels: Sequence[Label]) -> float:
    return max((label.confidence for label in labels if label.name == PERSON), default=0.0)


def audited(image: str, rate: float) -> bool:
    """A deterministic draw: a redelivered item makes the same choice as the first delivery."""
    draw = int(hashlib.sha256(image.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return draw < rate


class DetectionWorker:
    """The ``cam_detect`` consumer: runs the detectors and feeds the review queue."""

    def __init__(
        self, store: pio.Persistio, detectors: Sequence[Detector], settings: Settings
    ) -> None:
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique (they key the results): {names}")
        self.store = store
        self.detectors = list(detectors)
        self.settings = settings

    def register(self, batch: int = 8) -> DetectionWorker:
        # Small batches: one item takes a few hundred ms of CPU, and a claimed batch is
        # invisible to other workers until it is done.
        self.store.consumer("cam_detect", batch=batch)(self.handle)
        return self

    def handle(self, task: DetectionTask) -> None:
        started = now()
        raw = self.store.get(AlarmImage, "cam_raw", image_id=task.image_id)
        if raw is None:
            raise RawImageMissing(f"image {task.image_id} is not stored yet")
        image = fit(decode(raw.data), self.settings.work_size)
        height, width = image.shape[:2]
        confidences: dict[str, float] = {}
        for detector in self.detectors:
            t0 = time.perf_counter()
            labels = detector.detect(image)  # an exception here fails (retries) the whole item
            result = Detection(
                image_id=task.image_id,
                detector=detector.name,
                site=task.site,
                camera=task.camera,
                labels=labels,
                person_confidence=person_confidence(labels),
                ingested_at=task.ingested_at,
                started_at=started,
                duration_s=time.perf_counter() - t0,
                width=width,
                height=height,
            )
            # Saved per detector as it finishes: if a later detector crashes, the earlier
            # answers are kept, and a redelivery rewrites the same (image, detector) rows.
            self.store.save(result)
            confidences[detector.name] = result.person_confidence
        self._queue_for_review(task, raw.filename, confidences)

    def _queue_for_review(
        self, task: DetectionTask, filename: str, confidences: dict[str, float]
    ) -> None:
        likely = any(c >= self.settings.threshold for c in confidences.values())
        if likely:
            reason = "person"
        elif audited(task.image_id, self.settings.audit_rate):
            reason = "audit"
        else:
            return
        self.store.save(
            ReviewEntry(
                image_id=task.image_id,
                site=task.site,
                camera=task.camera,
                filename=filename,
                reason=reason,
                confidences=confidences,
                ingested_at=task.ingested_at,
                queued_at=now(),
            )
        )
