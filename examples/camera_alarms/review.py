"""The review queue and the reviewer's verdicts.

The queue is one volatile ``ReviewEntry`` per image (key: image id, TTL a day; rebuilt from an
amorphous log on a miss) plus an amorphous index per camera. Why not one volatile queue object
per camera holding a list of ids? Every consumer thread would read-modify-write the same value,
and with last-write-wins (volatile values have no compare-and-set) concurrent detections would
drop each other's ids. Per-image entries are written by exactly one item each, so nothing is
lost; the index only lists candidates. An image is pending while its entry is fresh, not
deleted, and has no verdict: the ACID verdict is the truth, so a redelivered detection that
re-queues a reviewed image never shows it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import persistio as pio

from .models import AlarmImage, CameraRecord, ImageRecord, ReviewEntry, ReviewRef, Verdict

S = TypeVar("S")


def query_as(
    store: pio.Persistio, model: type, intent: str, stored: type[S], **partition: Any
) -> list[S]:
    """Every row of one partition of an intent that stores ``stored`` (its ``project=``),
    newest first, read page by page: no partition is too big to read whole."""
    pages = store.pages(model, intent, as_type=stored, page_size=1_000, **partition)
    return [row for page in pages for row in page]


def cameras(store: pio.Persistio, site: str) -> list[str]:
    found = query_as(store, AlarmImage, "cam_cameras", CameraRecord, site=site)
    return sorted(c.camera for c in found)


def images(store: pio.Persistio, site: str) -> list[ImageRecord]:
    """Every alarm image of a site, oldest ingest first."""
    found = [
        record
        for camera in cameras(store, site)
        for record in query_as(store, AlarmImage, "cam_camera_images", ImageRecord, camera=camera)
    ]
    return sorted(found, key=lambda r: (r.ingested_at, r.image_id))


def verdict_of(store: pio.Persistio, image_id: str) -> Verdict | None:
    return store.get(Verdict, "cam_verdicts", image_id=image_id)


def pending(store: pio.Persistio, site: str) -> list[ReviewEntry]:
    """What a reviewer still has to look at: likely persons first, then audits; oldest first
    within each, so nothing expires unseen while newer alarms keep arriving."""
    entries: list[ReviewEntry] = []
    at = datetime.now(UTC)
    for camera in cameras(store, site):
        refs = query_as(store, ReviewEntry, "cam_review_index", ReviewRef, camera=camera)
        keys = [{"image_id": ref.image_id} for ref in refs]
        # two round trips per camera, however many entries it has
        found = store.get_many(ReviewEntry, "cam_review", keys)
        verdicts = store.get_many(Verdict, "cam_verdicts", keys)
        for entry, verdict in zip(found, verdicts, strict=True):
            if entry is None or entry.state != "pending" or entry.stale(at):
                continue  # expired unreviewed, or done
            if verdict is None:
                entries.append(entry)
    return sorted(entries, key=lambda e: (e.reason != "person", e.queued_at, e.image_id))


def next_pending(store: pio.Persistio, site: str) -> ReviewEntry | None:
    found = pending(store, site)
    return found[0] if found else None


def mark(store: pio.Persistio, image_id: str, person: bool, reviewer: str) -> Verdict:
    """Record a reviewer's verdict (committed before this returns) and close the queue entry.

    Any image can be marked, queued or not: a reviewer may audit what no detector flagged.

    Raises:
        persistio.NotFound: no alarm image has this id.
    """
    record = store.get(AlarmImage, "cam_images", as_type=ImageRecord, image_id=image_id)
    if record is None:
        raise pio.NotFound(f"no alarm image with id {image_id!r}")
    entry = store.get(ReviewEntry, "cam_review", image_id=image_id)
    verdict = Verdict(
        image_id=image_id,
        site=record.site,
        camera=record.camera,
        person=person,
        reviewer=reviewer,
        decided_at=datetime.now(UTC),
        queued_at=None if entry is None else entry.queued_at,
    )
    store.save(verdict)  # Acid, on_outage="fail": raises rather than lose a human's work
    if entry is not None:
        # the entry, its log row and its index row; a replay of the entry's save (older than
        # the delete) cannot queue it again, and a later detection is skipped by its verdict
        store.delete(entry)
    return verdict


def mark_from_truth(
    store: pio.Persistio, site: str, truth: Mapping[str, bool], reviewer: str = "ground-truth"
) -> list[Verdict]:
    """Play the reviewer from a ground-truth file (the demo): mark every pending entry whose
    filename the truth knows."""
    return [
        mark(store, entry.image_id, truth[entry.filename], reviewer)
        for entry in pending(store, site)
        if entry.filename in truth
    ]
