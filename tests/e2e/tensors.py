"""Deterministic, realistic test tensors shared by the end-to-end clients.

Standard library + numpy only, so both client environments import it.
"""

import numpy as np


def smooth_image(rng: np.random.Generator, channels: int, side: int) -> np.ndarray:
    """An image-like float32 field: smooth gradients plus a little sensor noise."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    planes = [np.sin(3 * x + c) * np.cos(2 * y - c) for c in range(channels)]
    img = np.stack(planes).astype(np.float32)
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    return img


def fp32(rng: np.random.Generator) -> np.ndarray:
    img = smooth_image(rng, 3, 128).ravel()
    # Values whose bit patterns any lossy or re-encoding path would disturb.
    img[:6] = np.array([-0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4028235e38], dtype=np.float32)
    return img


def fp16(rng: np.random.Generator) -> np.ndarray:
    return smooth_image(rng, 3, 128).astype(np.float16).ravel()


def uint8(rng: np.random.Generator) -> np.ndarray:
    """A batch of video-like frames: smooth, quantised to 8 bits."""
    frames = (smooth_image(rng, 4, 96) * 100 + 128).clip(0, 255).astype(np.uint8)
    return frames.ravel()


def boolean(rng: np.random.Generator) -> np.ndarray:
    """A segmentation mask: a few filled discs."""
    y, x = np.mgrid[0:256, 0:256]
    mask = np.zeros((256, 256), dtype=bool)
    for _ in range(5):
        cy, cx, r = rng.integers(20, 236), rng.integers(20, 236), rng.integers(8, 40)
        mask |= (y - cy) ** 2 + (x - cx) ** 2 < r**2
    return mask.ravel()


def int64(rng: np.random.Generator) -> np.ndarray:
    """Token ids: small positive integers followed by padding."""
    ids = np.zeros(16384, dtype=np.int64)
    ids[:12000] = rng.integers(0, 32000, 12000)
    return ids


def byte_strings(rng: np.random.Generator) -> np.ndarray:
    """Text records, as a BYTES tensor (object array of bytes)."""
    labels = [b"cat", b"dog", b"car", b"tree", b"person"]
    items = [
        b'{"id": %d, "label": "%s", "score": 0.%03d}' % (i, labels[i % 5], int(rng.integers(0, 1000)))
        for i in range(2000)
    ]
    return np.array(items, dtype=np.object_)


SINGLE = {
    "FP32": ("identity_fp32", fp32),
    "FP16": ("identity_fp16", fp16),
    "UINT8": ("identity_uint8", uint8),
    "BOOL": ("identity_bool", boolean),
    "INT64": ("identity_int64", int64),
    "BYTES": ("identity_bytes", byte_strings),
}


def multi(rng: np.random.Generator) -> dict:
    """The inputs of the multi-input model."""
    return {
        "image": smooth_image(rng, 3, 64).ravel(),
        "mask": (boolean(rng).astype(np.uint8) * 7),
        "ids": int64(rng)[:4096],
        "labels": byte_strings(rng)[:500],
    }


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality (dtype, shape and every byte; element-wise for BYTES)."""
    if a is None or b is None or a.shape != b.shape:
        return False
    if a.dtype == np.object_ or b.dtype == np.object_:
        return [bytes(x) for x in a.ravel()] == [bytes(x) for x in b.ravel()]
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()
