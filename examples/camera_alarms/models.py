"""What the alarm pipeline stores, and *why*: one persistence intent per reason.

Intent names are global per tier in a process, so every name here starts with ``cam_``.

- An alarm image is saved once and fans out into query-shaped tables on the way in: its bytes
  (``cam_raw``), its metadata by id (``cam_images``) and by camera (``cam_camera_images``), the
  camera registry (``cam_cameras``), and a work item for the detectors (``cam_detect``) that
  carries the image's reference, never its bytes.
- Each detector's answer for an image is one row keyed by (image, detector) (``cam_results``), so
  a replayed or redelivered task rewrites the same row and nothing is ever counted twice.
- The review queue is one volatile entry per image (``cam_review``, stale unreviewed after a
  day), rebuilt on a miss from its amorphous log (``cam_review_log``), plus an append-only index
  per camera (``cam_review_index``) to enumerate it.
- The reviewer's verdict must not be lost or half-written: it is ACID (``cam_verdicts``).
- Alarms per camera per day are a counting system (``cam_alarms_daily``, a ``pio.Count``): the
  report reads one number per camera and day instead of every image row. Each image counts
  once, by its id, in the day it was captured, however often it is ingested or replayed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

import persistio as pio

PERSON = "person"  # the one label every detector maps its people-like labels to
REVIEW_TTL = timedelta(hours=24)  # an alarm nobody looked at within a day is stale
RAW_RETENTION = timedelta(days=90)  # bytes are the bulk of the data: keep a season, not forever
DAY = timedelta(days=1)


class Box(msgspec.Struct, frozen=True):
    """A detection's bounding box in pixels of the detector's working image."""

    x: int
    y: int
    w: int
    h: int


class Label(msgspec.Struct, frozen=True):
    """One thing a detector says it saw, with its confidence in [0, 1]."""

    name: str
    confidence: float
    box: Box | None = None


class ImageRecord(msgspec.Struct, frozen=True):
    """An alarm image's metadata, without its bytes (what listings and reports read)."""

    image_id: str
    site: str
    camera: str
    filename: str
    captured_at: datetime
    ingested_at: datetime
    size: int


class DetectionTask(msgspec.Struct, frozen=True):
    """The detectors' work item: a reference to the stored image, small enough for a stream."""

    image_id: str
    site: str
    camera: str
    ingested_at: datetime


class CameraRecord(msgspec.Struct, frozen=True):
    site: str
    camera: str


def to_record(image: AlarmImage) -> ImageRecord:
    return ImageRecord(
        image.image_id,
        image.site,
        image.camera,
        image.filename,
        image.captured_at,
        image.ingested_at,
        len(image.data),
    )


def to_task(image: AlarmImage) -> DetectionTask:
    return DetectionTask(image.image_id, image.site, image.camera, image.ingested_at)


def to_camera(image: AlarmImage) -> CameraRecord:
    return CameraRecord(image.site, image.camera)


@pio.persist(
    # REALTIME, not the amorphous default (deferred): the work item below must never reach a
    # detector before the bytes it points at are stored. If Cassandra is down the bytes go to
    # the spool and the consumer retries until the spool has been replayed.
    pio.Amorphous("cam_raw", partition=("image_id",), retain=RAW_RETENTION, priority=pio.REALTIME),
    pio.Amorphous("cam_images", partition=("image_id",), project=to_record),
    pio.Amorphous(
        "cam_camera_images", partition=("camera",), order=("image_id",), project=to_record
    ),
    pio.Amorphous("cam_cameras", partition=("site",), order=("camera",), project=to_camera),
    # alarms per camera per UTC day of capture; the image id (a content hash) is the identity,
    # so re-ingesting a file, or a replayed task, never counts an alarm twice
    pio.Count(
        "cam_alarms_daily",
        key=("site", "camera"),
        bucket=DAY,
        at="captured_at",
        identity=("image_id",),
    ),
    # Few deliveries: a detector that crashes on an image crashes again; retrying it five times
    # only delays the dead letter that a human must look at anyway.
    pio.Transitory(
        "cam_detect", project=to_task, max_deliveries=3, visibility=timedelta(minutes=2)
    ),
)
class AlarmImage(msgspec.Struct, frozen=True):
    """One motion alarm: the image a camera uploaded, as received."""

    image_id: str  # content hash of (camera, bytes): re-ingesting a file is the same image
    site: str
    camera: str
    filename: str
    captured_at: datetime  # the file's mtime: when the camera wrote it
    ingested_at: datetime
    data: bytes


@pio.persist(pio.Amorphous("cam_results", partition=("image_id",), order=("detector",)))
class Detection(msgspec.Struct, frozen=True):
    """One detector's answer for one image: the unit the histogram and accuracy count."""

    image_id: str
    detector: str
    site: str
    camera: str
    labels: list[Label]
    person_confidence: float  # max over PERSON labels, 0.0 when it saw no one
    ingested_at: datetime
    started_at: datetime  # when a worker picked the image up
    duration_s: float  # this detector's own run time
    width: int  # the working image the boxes refer to
    height: int


class ReviewRef(msgspec.Struct, frozen=True):
    camera: str
    image_id: str
    queued_at: datetime


def to_review_ref(entry: ReviewEntry) -> ReviewRef:
    return ReviewRef(entry.camera, entry.image_id, entry.queued_at)


def _is_pending(entry: ReviewEntry) -> bool:
    return entry.state == "pending"


@pio.persist(
    # The volatile entry is the fast copy; on a miss (Redis flushed, or an embedded store opened
    # by another process: embedded volatile data is in-process) persistio rebuilds it from the
    # amorphous log. A rebuild restarts the key's TTL, so readers also check queued_at.
    pio.Volatile("cam_review", key=("image_id",), ttl=REVIEW_TTL, rebuild_from="cam_review_log"),
    pio.Amorphous("cam_review_log", partition=("image_id",), priority=pio.HIGH),
    # The index is written only when an entry is queued. A verdict deletes the entry with its
    # log and index rows (store.delete); readers also skip rows whose entry expired or has a
    # verdict.
    pio.Amorphous(
        "cam_review_index",
        partition=("camera",),
        order=("image_id",),
        project=to_review_ref,
        when=_is_pending,
        priority=pio.HIGH,
    ),
)
class ReviewEntry(msgspec.Struct, frozen=True):
    """An image waiting for a human, with what each detector thought of it."""

    image_id: str
    site: str
    camera: str
    filename: str
    reason: str  # "person": a detector is confident; "audit": a sampled negative (for recall)
    confidences: dict[str, float]  # detector -> person confidence
    ingested_at: datetime
    queued_at: datetime
    state: str = "pending"  # or "done"

    def stale(self, at: datetime) -> bool:
        return at >= self.queued_at + REVIEW_TTL


@pio.persist(pio.Acid("cam_verdicts", key=("image_id",)))
class Verdict(msgspec.Struct, frozen=True):
    """A reviewer's decision: the ground truth every detector is measured against."""

    image_id: str
    site: str
    camera: str
    person: bool
    reviewer: str
    decided_at: datetime
    queued_at: datetime | None = None  # None when the image was marked without being queued


# What the pipeline's stores cover (Persistio(models=...)): a process that also runs another app
# keeps that app's models out of the pipeline's setup, status and workers.
MODELS = (AlarmImage, Detection, ReviewEntry, Verdict)
