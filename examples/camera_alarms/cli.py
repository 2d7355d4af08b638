"""``python -m examples.camera_alarms``: demo data, ingest, detection worker, review, report.

The store comes from the PERSISTIO_*_URL variables (real servers), else embedded files under
``--data-dir``. Every command is one short-lived process except ``ingest --watch`` and
``work --forever``; run as many ``work`` processes as there are cores to spare.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2

import persistio as pio

from . import detectors, review
from .demo_data import GROUND_TRUTH, read_ground_truth, write_demo_data
from .models import MODELS, AlarmImage
from .pipeline import DetectionWorker, Settings, ingest_dir, watch
from .report import accuracy_table, write_report

DEFAULT_DETECTORS = ",".join(detectors.BUILTIN)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.camera_alarms", description=__doc__)
    p.add_argument("--data-dir", help="embedded stores' directory (default: ./.persistio)")
    p.add_argument("--site", default="default", help="the site whose cameras to use")
    sub = p.add_subparsers(dest="command", required=True)

    demo_data = sub.add_parser("demo-data", help="write demo images + ground_truth.json")
    demo_data.add_argument("dir", type=Path)
    demo_data.add_argument("--size", type=int, default=480, help="longer side in pixels")
    demo_data.add_argument("--only", help="comma-separated sample names")

    ingest = sub.add_parser("ingest", help="store a folder's images and queue them for detection")
    ingest.add_argument("dir", type=Path)
    ingest.add_argument("--camera", help="camera name (default: the folder's name)")
    ingest.add_argument("--watch", action="store_true", help="keep polling for new images")
    ingest.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    ingest.add_argument("--polls", type=int, help="stop after this many polls")

    work = sub.add_parser("work", help="run the detectors on queued images")
    _work_options(work)
    work.add_argument("--forever", action="store_true", help="keep running (Ctrl-C stops)")
    work.add_argument("--timeout", type=float, default=600.0, help="drain timeout (seconds)")

    rv = sub.add_parser("review", help="the reviewer's queue").add_subparsers(
        dest="action", required=True
    )
    nxt = rv.add_parser("next", help="show the next image to review")
    nxt.add_argument("--save", type=Path, help="write the image's bytes to this file")
    mark = rv.add_parser("mark", help="record a verdict")
    mark.add_argument("image_id")
    mark.add_argument("verdict", choices=["person", "empty"])
    mark.add_argument("--reviewer", default="cli")
    truth = rv.add_parser("from-truth", help="mark every pending image from a ground_truth.json")
    truth.add_argument("file", type=Path)

    report = sub.add_parser("report", help="write PNG plots and report.md")
    report.add_argument("out_dir", type=Path)
    report.add_argument("--threshold", type=float, default=0.5)

    demo = sub.add_parser("demo", help="demo-data, ingest, work, review from truth, report")
    demo.add_argument("out_dir", type=Path)
    demo.add_argument("--images", type=Path, help="where to write the demo images")
    _work_options(demo, audit_rate=1.0)

    sub.add_parser("status", help="the detection stream and the store's health, as JSON")
    return p


def _work_options(p: argparse.ArgumentParser, audit_rate: float = 0.1) -> None:
    p.add_argument("--detectors", default=DEFAULT_DETECTORS, help="comma-separated names")
    p.add_argument("--rekognition", action="store_true", help="add AWS Rekognition (boto3)")
    p.add_argument("--region", help="AWS region for Rekognition")
    p.add_argument("--threshold", type=float, default=0.5, help="person confidence threshold")
    p.add_argument("--audit-rate", type=float, default=audit_rate, help="negatives to review")
    p.add_argument("--work-size", type=int, default=320, help="detectors' image size (pixels)")


def open_store(args: argparse.Namespace) -> pio.Persistio:
    overrides: dict[str, Any] = {"models": MODELS}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    store = pio.Persistio.from_env(**overrides)
    store.setup()
    return store


def worker(store: pio.Persistio, args: argparse.Namespace) -> DetectionWorker:
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    client = None
    if args.rekognition:
        names.append("rekognition")
        client = detectors.rekognition_client(args.region)
    settings = Settings(args.site, args.threshold, args.audit_rate, args.work_size)
    return DetectionWorker(store, detectors.build(names, client), settings).register()


def run(store: pio.Persistio, args: argparse.Namespace) -> int:
    match args.command:
        case "ingest":
            camera = args.camera or args.dir.resolve().name
            if args.watch:
                try:
                    ids = watch(
                        store, args.dir, camera, args.site, interval=args.interval, polls=args.polls
                    )
                except KeyboardInterrupt:  # the way a foreground watch ends
                    print("stopped watching")
                    return 0
            else:
                ids = ingest_dir(store, args.dir, camera, args.site)
            print(f"ingested {len(ids)} images from {args.dir} as camera {camera!r}")
        case "work":
            worker(store, args)
            if args.forever:
                try:
                    store.run_worker()
                except KeyboardInterrupt:
                    store.stop_worker()
            else:
                store.drain(timeout=args.timeout)
            print(json.dumps(store.status()["streams"]["cam_detect"]))
        case "review":
            return _review(store, args)
        case "report":
            data = write_report(store, args.out_dir, args.site, args.threshold)
            print(accuracy_table(data.accuracy))
            print(f"wrote {args.out_dir / 'report.md'} and its plots")
        case "demo":
            images = args.images or Path(tempfile.mkdtemp(prefix="camera_alarms_"))
            write_demo_data(images)
            ingest_dir(store, images, "demo_cam", args.site)
            worker(store, args)
            store.drain(timeout=600)
            review.mark_from_truth(store, args.site, read_ground_truth(images / GROUND_TRUTH))
            data = write_report(store, args.out_dir, args.site, args.threshold)
            print(accuracy_table(data.accuracy))
            print(f"images in {images}; report in {args.out_dir / 'report.md'}")
        case "status":
            print(json.dumps(store.status(), indent=2, default=str))
    return 0


def _review(store: pio.Persistio, args: argparse.Namespace) -> int:
    match args.action:
        case "next":
            entry = review.next_pending(store, args.site)
            if entry is None:
                print("nothing to review")
                return 0
            scores = ", ".join(f"{d} {c:.2f}" for d, c in sorted(entry.confidences.items()))
            print(f"{entry.image_id}  camera {entry.camera}  {entry.filename}  ({entry.reason})")
            print(f"  person confidence: {scores}")
            if args.save:
                raw = store.get(AlarmImage, "cam_raw", image_id=entry.image_id)
                if raw is None:  # past its retention, or still in the spool
                    print("  the image's bytes are not stored", file=sys.stderr)
                    return 1
                args.save.write_bytes(raw.data)
                print(f"  image written to {args.save}")
        case "mark":
            try:
                verdict = review.mark(store, args.image_id, args.verdict == "person", args.reviewer)
            except pio.NotFound as exc:
                print(exc, file=sys.stderr)
                return 1
            print(f"{verdict.image_id}: {args.verdict} (by {verdict.reviewer})")
        case "from-truth":
            marked = review.mark_from_truth(store, args.site, read_ground_truth(args.file))
            print(f"marked {len(marked)} images from {args.file}")
    return 0


def main(argv: Sequence[str] | None = None, store: pio.Persistio | None = None) -> int:
    """The CLI; tests pass their own ``store`` (left open) instead of the environment's."""
    args = parser().parse_args(argv)
    # One OpenCV thread per process: the machine is shared, and throughput comes from running
    # more worker processes, which also isolates a detector that crashes the interpreter.
    cv2.setNumThreads(1)
    if args.command == "demo-data":
        only = args.only.split(",") if args.only else None
        truths = write_demo_data(args.dir, size=args.size, only=only)
        print(f"wrote {len(truths)} images and {GROUND_TRUTH} to {args.dir}")
        return 0
    if store is not None:
        return run(store, args)
    with open_store(args) as own:
        return run(own, args)
