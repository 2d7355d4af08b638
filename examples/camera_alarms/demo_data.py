"""Demo alarm images with their ground truth, made offline from what registry packages ship.

Real photographs come from scikit-image's *bundled* images only (files inside the wheel under
``skimage.data.data_dir``; the fetcher-backed ones would download through pooch). Security-camera
false alarms are mostly wind in plants, headlights and exposure changes: those negatives are
generated from seeded noise, so every run writes the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from .imaging import Image, encode_jpeg, fit, to_bgr

GROUND_TRUTH = "ground_truth.json"


@dataclass(frozen=True)
class Sample:
    name: str
    person: bool
    kind: str  # "photo", "derived" (a transformed photo) or "generated"
    source: str
    make: Callable[[], Image]


def bundled(function: str, filename: str) -> Callable[[], Image]:
    """A loader for a scikit-image image that must be inside the installed package."""

    def load() -> Image:
        if not os.path.exists(os.path.join(skimage.data.data_dir, filename)):
            raise FileNotFoundError(
                f"skimage.data.{function}() is not bundled in this scikit-image ({filename}); "
                "the demo never downloads"
            )
        data = getattr(skimage.data, function)()
        return to_bgr(data[0] if isinstance(data, tuple) else data)

    return load


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _u8(array: np.typing.NDArray[np.float64]) -> Image:
    return np.clip(array, 0, 255).astype(np.uint8)


def _at_dusk() -> Image:
    # low light: a dark gamma curve plus the sensor noise that comes with high gain
    base = bundled("astronaut", "astronaut.png")().astype(np.float64) / 255.0
    dark = 255.0 * 0.45 * base**1.8
    return _u8(dark + _rng(1).normal(0.0, 6.0, dark.shape))


def _mirrored() -> Image:
    return np.ascontiguousarray(bundled("camera", "camera.png")()[:, ::-1])


def _in_yard() -> Image:
    # a person filling half the frame height in a wider yard, as a camera over a door sees one
    yard = cv2.resize(bundled("gravel", "gravel.png")(), (640, 480))
    person = cv2.resize(bundled("camera", "camera.png")(), (240, 240), interpolation=cv2.INTER_AREA)
    yard[200:440, 300:540] = person
    return np.asarray(yard, dtype=np.uint8)


def _sensor_noise() -> Image:
    wall = bundled("brick", "brick.png")().astype(np.float64) * 0.15
    return _u8(wall + 40.0 + _rng(2).normal(0.0, 22.0, wall.shape))


def _foliage() -> Image:
    # leaves: blurred random fields at several scales in greens, smeared sideways by the wind
    rng = _rng(3)
    field = np.zeros((480, 640), np.float64)
    for sigma, weight in ((24.0, 0.5), (8.0, 0.3), (2.0, 0.2)):
        field += weight * np.asarray(cv2.GaussianBlur(rng.random((480, 640)), (0, 0), sigma))
    field = (field - field.min()) / (field.max() - field.min())
    wind = np.full((1, 15), 1.0 / 15)
    leaves = np.asarray(cv2.filter2D(field, -1, wind), dtype=np.float64)
    bgr = np.stack([30 + 40 * leaves, 60 + 150 * leaves, 20 + 60 * leaves], axis=-1)
    return _u8(bgr)


def _headlights() -> Image:
    # a dark wall swept by two headlight beams: big, soft, saturated blobs and a glare ramp
    wall = bundled("brick", "brick.png")().astype(np.float64) * 0.2
    beams = np.zeros(wall.shape[:2], np.float64)
    for cx in (170, 340):
        cv2.ellipse(beams, (cx, 300), (70, 45), 0, 0, 360, 1.0, -1)
    glow = np.asarray(cv2.GaussianBlur(beams, (0, 0), 30.0), dtype=np.float64) * 900.0
    ramp = np.linspace(0.0, 60.0, wall.shape[1])[None, :]
    return _u8(wall + (glow + ramp)[..., None] * np.array([0.9, 1.0, 1.0]))


def _exposure_jump() -> Image:
    # the camera switching exposure: the same scene, suddenly washed out and flat
    scene = bundled("gravel", "gravel.png")().astype(np.float64)
    return _u8(0.5 * scene + 110.0)


def photo(name: str, person: bool, filename: str, function: str | None = None) -> Sample:
    function = function or name
    return Sample(name, person, "photo", f"skimage.data.{function}()", bundled(function, filename))


SAMPLES: tuple[Sample, ...] = (
    photo("astronaut", True, "astronaut.png"),
    photo("camera", True, "camera.png"),  # a man with a camera on a tripod
    Sample("camera_mirrored", True, "derived", "camera(), flipped", _mirrored),
    Sample("astronaut_at_dusk", True, "derived", "astronaut(), dark + noise", _at_dusk),
    Sample("camera_in_yard", True, "derived", "camera() pasted on gravel()", _in_yard),
    photo("chelsea", False, "chelsea.png"),  # a cat: the classic night-time false alarm
    photo("coffee", False, "coffee.png"),
    photo("rocket", False, "rocket.jpg"),
    photo("horse", False, "horse.png"),  # a silhouette, upright-ish shapes
    photo("grass", False, "grass.png"),  # bushes and lawn
    photo("gravel", False, "gravel.png"),
    photo("brick", False, "brick.png"),  # a wall
    photo("motorcycle", False, "motorcycle_left.png", "stereo_motorcycle"),
    Sample("sensor_noise", False, "generated", "dark brick() + gaussian noise", _sensor_noise),
    Sample("foliage", False, "generated", "multi-scale noise, wind blur", _foliage),
    Sample("headlights", False, "generated", "dark brick() + two glows", _headlights),
    Sample("exposure_jump", False, "generated", "gravel(), washed out", _exposure_jump),
)


@dataclass(frozen=True)
class Truth:
    file: str
    person: bool
    kind: str
    source: str


def write_demo_data(
    directory: Path, *, size: int = 480, only: Sequence[str] | None = None
) -> list[Truth]:
    """Write the images (JPEG, as cameras upload) and ``ground_truth.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in SAMPLES if only is None or s.name in only]
    unknown = set(only or ()) - {s.name for s in SAMPLES}
    if unknown:
        raise ValueError(f"unknown demo images {sorted(unknown)}; have {[s.name for s in SAMPLES]}")
    truths: list[Truth] = []
    for sample in chosen:
        filename = f"{sample.name}.jpg"
        (directory / filename).write_bytes(encode_jpeg(fit(sample.make(), size)))
        truths.append(Truth(filename, sample.person, sample.kind, sample.source))
    document = {"images": [asdict(t) for t in truths]}
    (directory / GROUND_TRUTH).write_text(json.dumps(document, indent=2) + "\n")
    return truths


def read_ground_truth(path: Path) -> dict[str, bool]:
    """filename -> has a person, from a ``ground_truth.json``."""
    document = json.loads(path.read_text())
    return {str(item["file"]): bool(item["person"]) for item in document["images"]}
