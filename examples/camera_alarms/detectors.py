"""Person detectors as plug-ins behind one small interface: an image in, labels out.

Every detector reports confidences in [0, 1] and maps its people-like labels to ``PERSON``. Each
one's confidence is scaled so that 0.5 is exactly that library's own default decision rule, which
makes one threshold (0.5) mean "the detector says yes" for all of them:

- HOG + linear SVM: OpenCV accepts a window whose SVM margin is > 0; confidence = logistic of the
  margin, so margin 0 -> 0.5. Weak windows (margin down to ``hit_threshold``) are kept as low
  confidences: the histogram needs to see the near misses, not only the hits.
- Haar cascades: OpenCV accepts a box when more than ``min_neighbors`` raw hits overlap; with n
  hits, confidence = n / (n + min_neighbors + 1), so the first accepted count gives 0.5.
- AWS Rekognition: its own 0-100 confidence, divided by 100.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import cv2
import numpy as np
from cv2.data import haarcascades  # the cascades' folder inside the opencv-python wheel

from .imaging import Image, encode_jpeg, gray
from .models import PERSON, Box, Label


class Detector(Protocol):
    """The plug-in interface: a stable name (it keys the stored results) and ``detect``."""

    @property
    def name(self) -> str: ...

    def detect(self, image: Image) -> list[Label]:
        """Labels seen in a BGR image; boxes in that image's pixels. Raising fails the item."""
        ...


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _box(rect: Sequence[Any]) -> Box:
    x, y, w, h = (int(v) for v in rect)
    return Box(x, y, w, h)


class HogPeopleDetector:
    """OpenCV's HOG descriptor with its default linear SVM people detector (Dalal & Triggs)."""

    def __init__(
        self,
        name: str = "hog_svm",
        *,
        hit_threshold: float = -1.0,
        steepness: float = 3.0,
        win_stride: int = 8,
        scale: float = 1.05,
    ) -> None:
        self._name = name
        self.hit_threshold = hit_threshold
        self.steepness = steepness  # margin +-1 -> 0.95 / 0.05
        self.win_stride = win_stride
        self.scale = scale
        self._hog = cv2.HOGDescriptor()
        people = cv2.HOGDescriptor.getDefaultPeopleDetector()
        self._hog.setSVMDetector(np.asarray(people, dtype=np.float32))

    @property
    def name(self) -> str:
        return self._name

    def detect(self, image: Image) -> list[Label]:
        height, width = image.shape[:2]
        if height < 128 or width < 64:  # smaller than one detection window: nothing to scan
            return []
        stride = (self.win_stride, self.win_stride)
        rects, weights = self._hog.detectMultiScale(
            image, hitThreshold=self.hit_threshold, winStride=stride, padding=(16, 16),
            scale=self.scale,
        )  # fmt: skip
        return [
            Label(PERSON, _logistic(self.steepness * float(w)), _box(r))
            for r, w in zip(rects, np.ravel(weights), strict=True)
        ]


class HaarCascadeDetector:
    """One of the Haar cascades that ship inside opencv-python (``cv2.data.haarcascades``)."""

    def __init__(
        self,
        name: str,
        cascade: str,
        *,
        label: str = PERSON,
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: tuple[int, int] = (24, 24),
    ) -> None:
        path = os.path.join(haarcascades, cascade)
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise FileNotFoundError(f"{name}: no usable cascade at {path}")
        self._name = name
        self._classifier = classifier
        self.label = label
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    @property
    def name(self) -> str:
        return self._name

    def detect(self, image: Image) -> list[Label]:
        # minNeighbors=1 keeps the weak groups (2+ raw hits) too, with their hit counts, so the
        # confidence histogram shows near misses; 0.5 is still OpenCV's own acceptance rule.
        rects, hits = self._classifier.detectMultiScale2(
            gray(image), scaleFactor=self.scale_factor, minNeighbors=1, minSize=self.min_size
        )
        k = self.min_neighbors
        return [
            Label(self.label, float(n) / (float(n) + k + 1), _box(r))
            for r, n in zip(rects, np.ravel(hits), strict=True)
        ]


class RekognitionClient(Protocol):
    """The one call of a boto3 ``rekognition`` client this adapter uses."""

    def detect_labels(self, **kwargs: Any) -> Mapping[str, Any]: ...


# Rekognition names people in several ways (and a label hierarchy): all count as a person.
REKOGNITION_PEOPLE = frozenset({"person", "human", "people", "pedestrian", "man", "woman", "child"})


class RekognitionDetector:
    """AWS Rekognition DetectLabels through a boto3 client (optional: needs boto3 and AWS)."""

    def __init__(
        self,
        client: RekognitionClient,
        *,
        name: str = "rekognition",
        max_labels: int = 25,
        min_confidence: float = 1.0,
    ) -> None:
        self._name = name
        self.client = client
        self.max_labels = max_labels
        # Far below the service's default of 55: the comparison needs the low-confidence answers.
        self.min_confidence = min_confidence

    @property
    def name(self) -> str:
        return self._name

    def detect(self, image: Image) -> list[Label]:
        height, width = image.shape[:2]
        response = self.client.detect_labels(
            Image={"Bytes": encode_jpeg(image)},
            MaxLabels=self.max_labels,
            MinConfidence=self.min_confidence,
        )
        labels: list[Label] = []
        for item in response.get("Labels", []):
            raw_name = str(item["Name"]).lower()
            name = PERSON if raw_name in REKOGNITION_PEOPLE else raw_name
            confidence = float(item["Confidence"]) / 100.0
            instances = item.get("Instances") or []
            if not instances:
                labels.append(Label(name, confidence))
            for instance in instances:
                bb = instance["BoundingBox"]
                box = Box(
                    round(bb["Left"] * width),
                    round(bb["Top"] * height),
                    round(bb["Width"] * width),
                    round(bb["Height"] * height),
                )
                labels.append(Label(name, float(instance["Confidence"]) / 100.0, box))
        return labels


def rekognition_client(region: str | None = None) -> RekognitionClient:
    """A real boto3 client (credentials from the usual AWS chain); imported only when asked."""
    import boto3

    client: RekognitionClient = boto3.client("rekognition", region_name=region)
    return client


# The detectors that ship inside registry packages and need no network.
BUILTIN: dict[str, Callable[[], Detector]] = {
    "hog_svm": HogPeopleDetector,
    "haar_fullbody": lambda: HaarCascadeDetector("haar_fullbody", "haarcascade_fullbody.xml"),
    "haar_upperbody": lambda: HaarCascadeDetector("haar_upperbody", "haarcascade_upperbody.xml"),
    # a frontal face implies a person: precise when people face the camera, blind otherwise
    "haar_face": lambda: HaarCascadeDetector("haar_face", "haarcascade_frontalface_alt2.xml"),
}


def build(names: Sequence[str], rekognition: RekognitionClient | None = None) -> list[Detector]:
    """Detectors by name; ``rekognition`` needs a client (a real one, or a stub in tests)."""
    found: list[Detector] = []
    for name in names:
        if name == "rekognition":
            if rekognition is None:
                raise ValueError("the rekognition detector needs a boto3 client")
            found.append(RekognitionDetector(rekognition))
        elif name in BUILTIN:
            found.append(BUILTIN[name]())
        else:
            raise ValueError(f"unknown detector {name!r}: use {[*BUILTIN, 'rekognition']}")
    return found
