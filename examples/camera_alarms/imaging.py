"""Image helpers: ids, decoding, the detectors' working size, and conversion from scikit-image."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]  # BGR, height x width x 3, as OpenCV expects
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})


def image_id(camera: str, data: bytes) -> str:
    """A content id: the same file from the same camera is the same alarm, however often it is
    ingested (a watch restarted, a camera re-uploading); the same bytes from two cameras are two.
    """
    digest = hashlib.sha256(camera.encode() + b"\0" + data).hexdigest()
    return digest[:20]


def decode(data: bytes) -> Image:
    """Bytes of a PNG/JPEG/BMP file -> BGR image; ValueError when they are not an image."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"not a decodable image ({len(data)} bytes)")
    return np.asarray(image, dtype=np.uint8)


def encode_png(image: Image) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return bytes(buffer.tobytes())


def encode_jpeg(image: Image, quality: int = 90) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return bytes(buffer.tobytes())


def fit(image: Image, size: int) -> Image:
    """Downscale so the longer side is ``size`` (never upscale).

    Detectors scan image pyramids: their cost grows with the pixel count, and security-camera
    frames are far larger than the 64x128 people they need to find.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale >= 1.0:
        return image
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(image, shape, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def to_bgr(array: npt.NDArray[np.generic]) -> Image:
    """A scikit-image array (gray, bool, RGB or RGBA; uint8 or float in [0, 1]) -> BGR uint8."""
    data = np.asarray(array)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8) * 255
    elif data.dtype != np.uint8:
        data = np.clip(np.asarray(data, dtype=np.float64) * 255.0, 0, 255).astype(np.uint8)
    if data.ndim == 2:
        return np.asarray(cv2.cvtColor(data, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    return np.asarray(cv2.cvtColor(data[..., :3].copy(), cv2.COLOR_RGB2BGR), dtype=np.uint8)


def gray(image: Image) -> Image:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
