"""The review queue and the reviewer's verdicts.

The queue is one volatile ``ReviewEntry`` per image (key: image id, TTL a day; rebuilt from an
amorphous log on a miss) plus an amorphous index per camera. Why not one volatile queue object
per camera holding a list of ids? Every consumer thread would read-modify-write the same value,
and with last-write-wins (no compare-and-set in persistio) concurrent detections would drop each
other's ids. Per-image entries are written by exactly one item each, so nothing is lost; the
index only lists candidates. An image is pending while its entry is fresh, not marked done, and
has no verdict: the ACID verdict is the truth, so a redelivered detection that re-queues a
reviewed image, or a lost "done" marker, never shows it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

import persistio as pio

from .models import AlarmImage, CameraRecord, ImageRecord, ReviewEntry, ReviewRef, Verdict

log = logging.getLogger("camera_alarms")

S = TypeVar("S")
MAX_ROWS = 10_000  # persistio's query() limit; it has no paging, so a partition is read whole


def query_as(
    store: pio.Persistio, model: type, intent: str, stored: type[S], **partition: Any
) -> list[S]:
    """``store.query`` for an intent with ``project=``: it returns the projected type, while
    persistio types the result as the model's."""
    found: list[Any] = store.query(model, intent, limit=MAX_ROWS, **partition)
    if len(found) == MAX_ROWS:
        log.warning("%s %s: read the first %d rows only", intent, partition, MAX_ROWS)
    return [_checked(stored, item) for item in found]


def get_as(store: pio.Persistio, model: type, intent: str, stored: type[S], **key: Any) -> S | None:
    found: Any = store.get(model, intent, **key)
    return None if found is None else _checked(stored, found)


def _checked(stored: type[S], item: Any) -> S:
    if not isinstance(item, stored):
        raise TypeError(f"expected a {stored.__name__}, got {type(item).__name__}")
    return item


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
        for ref in query_as(store, ReviewEntry, "cam_review_index", ReviewRef, camera=camera):
            entry = store.get(ReviewEntry, "cam_review", image_id=ref.image_id)
            if entry is None or entry.state != "pending" or entry.stale(at):
                continue  # expired unreviewed, or done
            if verdict_of(store, ref.image_id) is None:
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
    record = get_as(store, AlarmImage, "cam_images", ImageRecord, image_id=image_id)
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
        # persistio cannot delete a volatile key: overwrite it (and its log) with a "done" marker
        store.save(msgspec.structs.replace(entry, state="done"))
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
