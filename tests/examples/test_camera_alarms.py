"""The camera-alarm reference app (examples/camera_alarms) on embedded stores and real servers.

Images are few and ~200 px (detectors' cost grows with pixels). Real mode uses Redis DB 6 (flushed
per test) and, as PostgreSQL and Cassandra are shared by the session, a fresh site and camera per
test: image ids hash the camera, so tests never meet."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import persistio as pio
from examples.camera_alarms import detectors, review
from examples.camera_alarms.cli import main
from examples.camera_alarms.demo_data import (
    GROUND_TRUTH,
    SAMPLES,
    read_ground_truth,
    write_demo_data,
)
from examples.camera_alarms.imaging import Image, image_id
from examples.camera_alarms.models import PERSON, AlarmImage, Box, Detection, DetectionTask, Label
from examples.camera_alarms.pipeline import DetectionWorker, Settings, ingest_dir, watch
from examples.camera_alarms.report import gather, histogram
from persistio.raw import decode_document

REAL_REDIS_DB = 6
SIZE = 200
DETECTORS = list(detectors.BUILTIN)
FEW = ["astronaut", "camera", "astronaut_at_dusk", "chelsea", "foliage", "headlights"]


@pytest.fixture(params=["embedded", "real"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cam_store(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Iterator[pio.Persistio]:
    urls: dict[str, Any] = {}
    if kind == "real":
        urls = request.getfixturevalue("real_store_urls")(REAL_REDIS_DB)
    with pio.Persistio(**urls, data_dir=tmp_path / "store") as store:
        store.setup()
        yield store


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("camera_alarm_images")
    write_demo_data(directory, size=SIZE, only=FEW)
    return directory


@pytest.fixture
def site() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def ids_by_file(directory: Path, camera: str) -> dict[str, str]:
    return {p.name: image_id(camera, p.read_bytes()) for p in sorted(directory.glob("*.jpg"))}


def test_pipeline_end_to_end(
    cam_store: pio.Persistio,
    kind: str,
    demo_dir: Path,
    site: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, camera = cam_store, f"cam_{site}"
    ids = ids_by_file(demo_dir, camera)
    truth = read_ground_truth(demo_dir / GROUND_TRUTH)

    # Given the demo folder ingested through the CLI
    assert main(["--site", site, "ingest", str(demo_dir), "--camera", camera], store=store) == 0

    # Then each image's bytes are in raw storage and one work item per image waits, carrying
    # a reference only (the work item type has no bytes field)
    for name, iid in ids.items():
        raw = store.get(AlarmImage, "cam_raw", image_id=iid)
        assert raw is not None
        assert raw.data == (demo_dir / name).read_bytes()
    assert "data" not in DetectionTask.__struct_fields__
    assert store.status()["streams"]["cam_detect"]["pending"] == len(ids)

    # When the detectors run (every negative audited, so every image reaches the queue)
    work = ["--site", site, "work", "--audit-rate", "1.0", "--work-size", str(SIZE)]
    assert main(work, store=store) == 0

    # Then nothing is pending or dead, and every detector answered for every image
    assert store.status()["streams"]["cam_detect"]["pending"] == 0
    assert store.status()["streams"]["cam_detect"]["dead_letters"] == 0
    for iid in ids.values():
        rows = store.query(Detection, "cam_results", image_id=iid)
        assert sorted(r.detector for r in rows) == sorted(DETECTORS)

    # When a reviewer takes the next image and marks it through the CLI
    queue = review.pending(store, site)
    assert sorted(e.image_id for e in queue) == sorted(ids.values())
    first = queue[0]
    capsys.readouterr()
    assert main(["--site", site, "review", "next"], store=store) == 0
    assert first.image_id in capsys.readouterr().out
    verdict = "person" if truth[first.filename] else "empty"
    assert main(["--site", site, "review", "mark", first.image_id, verdict], store=store) == 0

    # Then it leaves the queue; an unknown id is refused; the rest are marked from the truth
    assert first.image_id not in [e.image_id for e in review.pending(store, site)]
    assert main(["--site", site, "review", "mark", "nope", "empty"], store=store) == 1
    marked = review.mark_from_truth(store, site, truth)
    assert len(marked) == len(ids) - 1
    assert review.next_pending(store, site) is None

    # When the report is written
    out = tmp_path / "report"
    assert main(["--site", site, "report", str(out)], store=store) == 0

    # Then its PNGs exist and its accuracy table matches the verdicts the stores hold
    for png in ("confidence.png", "accuracy.png", "lag.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored_verdicts = read_verdicts(store, kind, request, site, ids)
    assert stored_verdicts == {iid: truth[name] for name, iid in ids.items()}
    rows = read_detections(store, kind, request, ids)
    data = gather(store, site)
    text = (out / "report.md").read_text()
    for detector in DETECTORS:
        tp, fp, fn, tn = expected_counts(rows, stored_verdicts, detector)
        got = next(a for a in data.accuracy if a.detector == detector)
        assert (got.tp, got.fp, got.fn, got.tn, got.missing) == (tp, fp, fn, tn, 0)
        assert f"| {detector} | {len(ids)} | {tp} | {fp} | {fn} | {tn} |" in text
    if kind == "real":
        assert_review_entries_expire(request, ids)


def read_verdicts(
    store: pio.Persistio, kind: str, request: pytest.FixtureRequest, site: str, ids: dict[str, str]
) -> dict[str, bool]:
    """The verdicts as stored: with psycopg in real mode, else through the store."""
    if kind == "real":
        conn = request.getfixturevalue("raw_pg")
        found = conn.execute(
            "SELECT image_id, person FROM cam_verdicts WHERE site = %s", (site,)
        ).fetchall()
        return {str(i): bool(p) for i, p in found}
    return {
        iid: v.person for iid in ids.values() if (v := review.verdict_of(store, iid)) is not None
    }


def read_detections(
    store: pio.Persistio, kind: str, request: pytest.FixtureRequest, ids: dict[str, str]
) -> list[Detection]:
    """The detection rows as stored: with cassandra-driver in real mode (the msgpack blobs)."""
    if kind != "real":
        return [
            d for iid in ids.values() for d in store.query(Detection, "cam_results", image_id=iid)
        ]
    session = request.getfixturevalue("raw_cassandra")
    keyspace = request.getfixturevalue("cassandra_keyspace")
    found: list[Detection] = []
    for iid in ids.values():
        result = session.execute(
            f"SELECT detector, object FROM {keyspace}.cam_results WHERE image_id = %s", (iid,)
        )
        for detector, blob in result:
            row = decode_document(blob, Detection)
            assert row.detector == detector
            found.append(row)
    return found


def expected_counts(
    rows: list[Detection], verdicts: dict[str, bool], detector: str
) -> tuple[int, int, int, int]:
    said = {r.image_id: r.person_confidence >= 0.5 for r in rows if r.detector == detector}
    pairs = [(said[i], truth) for i, truth in verdicts.items()]
    return (
        sum(s and t for s, t in pairs),
        sum(s and not t for s, t in pairs),
        sum(t and not s for s, t in pairs),
        sum(not s and not t for s, t in pairs),
    )


def assert_review_entries_expire(request: pytest.FixtureRequest, ids: dict[str, str]) -> None:
    import redis

    redis_url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + f"/{REAL_REDIS_DB}")
    try:
        for iid in ids.values():
            ttl = client.ttl(f"pio:v:cam_review:{{{iid}}}")
            assert 0 < ttl <= 24 * 3600
    finally:
        client.close()


def test_replays_never_double_count(cam_store: pio.Persistio, demo_dir: Path, site: str) -> None:
    store, camera = cam_store, f"cam_{site}"
    worker = DetectionWorker(
        store, detectors.build(DETECTORS), Settings(site, audit_rate=1.0, work_size=SIZE)
    ).register()

    # Given the folder ingested and detected, then ingested and detected again (a restarted
    # watch), and one work item delivered twice more (at-least-once redelivery)
    for _ in range(2):
        ingest_dir(store, demo_dir, camera, site)
        store.drain(timeout=30)
    task = DetectionTask(
        next(iter(ids_by_file(demo_dir, camera).values())), site, camera, datetime.now(UTC)
    )
    worker.handle(task)
    worker.handle(task)
    store.drain(timeout=30)

    # Then each image is listed once, each (detector, image) has one row, and each
    # detector's histogram counts every image exactly once
    data = gather(store, site)
    assert len(data.images) == len(FEW)
    assert len(data.detections) == len(FEW) * len(DETECTORS)
    for detector in DETECTORS:
        assert sum(data.histogram[detector][PERSON]) == len(FEW)
    assert len(review.pending(store, site)) == len(FEW)


class CrashOn:
    """A detector plug-in that crashes on images of one shape and sees a person in all others."""

    name = "crashy"

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def detect(self, image: Image) -> list[Label]:
        if image.shape == self.shape:
            raise RuntimeError("detector crashed on this image")
        return [Label(PERSON, 0.9)]


def test_a_detector_crash_dead_letters_that_item_and_the_rest_flow(
    cam_store: pio.Persistio, tmp_path: Path, site: str
) -> None:
    # Given three images, one of which a detector crashes on (its only distinct shape)
    store, camera = cam_store, f"cam_{site}"
    folder = tmp_path / "alarms"
    write_demo_data(folder, size=SIZE, only=["camera", "chelsea", "foliage"])
    ids = ids_by_file(folder, camera)
    crash = CrashOn((133, 200, 3))  # chelsea: 300x451 scaled to 200 wide
    hog = detectors.build(["hog_svm"])[0]
    DetectionWorker(store, [hog, crash], Settings(site, audit_rate=1.0, work_size=SIZE)).register()
    ingest_dir(store, folder, camera, site)

    # When the worker drains (each failure retried, then dead-lettered after max_deliveries)
    store.drain(timeout=30)

    # Then exactly that item is dead, nothing is pending, and the other images flowed through
    stream = store.status()["streams"]["cam_detect"]
    assert (stream["dead_letters"], stream["pending"]) == (1, 0)
    for name, iid in ids.items():
        got = sorted(d.detector for d in store.query(Detection, "cam_results", image_id=iid))
        # the crashed item keeps the answers saved before the crash, and nothing after it
        assert got == (["hog_svm"] if name == "chelsea.jpg" else ["crashy", "hog_svm"])
    queued = {e.filename for e in review.pending(store, site)}
    assert queued == {"camera.jpg", "foliage.jpg"}


def test_watch_ingests_stable_files_and_a_restart_keeps_the_queue(
    tmp_path: Path, site: str
) -> None:
    # Given a folder with two images and an embedded store whose detector flags everything
    folder = tmp_path / "watched"
    write_demo_data(folder, size=SIZE, only=["camera", "foliage"])
    with pio.Persistio(data_dir=tmp_path / "store") as store:
        DetectionWorker(store, [CrashOn(())], Settings(site)).register()
        # When it is polled once, nothing is ingested (a file must look the same twice)
        assert watch(store, folder, "door", site, interval=0.01, polls=1) == []
        # When it is polled twice, both are; a restarted watch ingests them again
        first = watch(store, folder, "door", site, interval=0.01, polls=2)
        again = watch(store, folder, "door", site, interval=0.01, polls=2)
        store.drain(timeout=30)

        # Then the ids are content ids, and the image list holds each image once
        assert len(first) == 2
        assert sorted(first) == sorted(again)
        assert sorted(r.image_id for r in review.images(store, site)) == sorted(first)

    # When another process opens the data dir (embedded volatile data lives in one process)
    with pio.Persistio(data_dir=tmp_path / "store") as reopened:
        # Then the review queue is rebuilt from its amorphous log
        assert [e.filename for e in review.pending(reopened, site)] == ["camera.jpg", "foliage.jpg"]


def stubbed_rekognition(responses: list[dict[str, Any]]) -> tuple[Any, Any]:
    import boto3  # type: ignore[import-untyped]
    from botocore.stub import ANY, Stubber  # type: ignore[import-untyped]

    client = boto3.client(
        "rekognition",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    expected = {"Image": {"Bytes": ANY}, "MaxLabels": 25, "MinConfidence": 1.0}
    for response in responses:
        stubber.add_response("detect_labels", response, expected)
    return client, stubber


BOX = {"Width": 0.5, "Height": 0.8, "Left": 0.25, "Top": 0.1}
PERSON_RESPONSE = {
    "Labels": [
        {
            "Name": "Person",
            "Confidence": 99.5,
            "Instances": [{"BoundingBox": BOX, "Confidence": 99.5}],
        },
        {"Name": "Human", "Confidence": 99.5, "Instances": []},
        {"Name": "Tree", "Confidence": 62.0},
    ]
}


def test_rekognition_adapter_maps_labels_through_a_stubbed_client() -> None:
    # Given a boto3 client stubbed with one confident and one empty answer (never the network)
    client, stubber = stubbed_rekognition([PERSON_RESPONSE, {"Labels": []}])
    detector = detectors.RekognitionDetector(client)
    image = np.zeros((100, 200, 3), np.uint8)

    # When it labels two images
    with stubber:
        first = detector.detect(image)
        second = detector.detect(image)
        stubber.assert_no_pending_responses()

    # Then people-like names become PERSON with 0-1 confidences and pixel boxes
    assert first[0] == Label(PERSON, 0.995, Box(50, 10, 100, 80))
    assert first[1:] == [Label(PERSON, 0.995), Label("tree", 0.62)]
    assert second == []


def test_rekognition_runs_in_the_pipeline(tmp_path: Path, site: str) -> None:
    # Given the stubbed Rekognition detector as the pipeline's only detector
    folder = tmp_path / "alarms"
    write_demo_data(folder, size=SIZE, only=["camera", "foliage"])
    client, stubber = stubbed_rekognition([PERSON_RESPONSE, {"Labels": []}])
    with pio.Persistio(data_dir=tmp_path / "store") as store, stubber:
        worker = DetectionWorker(store, [detectors.RekognitionDetector(client)], Settings(site))
        worker.register()

        # When two images are ingested and detected
        ingest_dir(store, folder, "door", site)
        store.drain(timeout=30)

        # Then the first (in ingest order) is queued as a person, and the histogram has the
        # service's "very confident or not at all" shape: one image at 0.9+, one at 0
        data = gather(store, site)
        assert histogram(data.detections)["rekognition"][PERSON] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        assert [e.filename for e in review.pending(store, site)] == ["camera.jpg"]


def test_demo_data_uses_bundled_images_and_records_the_truth(tmp_path: Path) -> None:
    # When every demo sample is written
    truths = write_demo_data(tmp_path, size=160)

    # Then photos and generated negatives are all there, labelled, and decodable
    assert read_ground_truth(tmp_path / GROUND_TRUTH) == {t.file: t.person for t in truths}
    assert {t.file.removesuffix(".jpg") for t in truths} == {s.name for s in SAMPLES}
    assert {t.kind for t in truths} == {"photo", "derived", "generated"}
    assert sum(t.person for t in truths) >= 4
    assert sum(not t.person for t in truths) >= 8
    assert all((tmp_path / t.file).stat().st_size > 1000 for t in truths)
