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


def fp64(rng: np.random.Generator) -> np.ndarray:
    """A simulation field in double precision, with the values that only survive exact."""
    field = smooth_image(rng, 2, 96).astype(np.float64).ravel()
    field += rng.normal(0, 1e-9, field.shape)
    field[:5] = np.array([-0.0, np.inf, np.nan, 5e-324, 1.7976931348623157e308])
    return field


def int8(rng: np.random.Generator) -> np.ndarray:
    """Quantised activations: a smooth field scaled to the int8 range."""
    return (smooth_image(rng, 8, 64) * 90).clip(-128, 127).astype(np.int8).ravel()


def int16(rng: np.random.Generator) -> np.ndarray:
    """A second of 16 kHz PCM audio: a few tones and a little noise."""
    t = np.arange(16000) / 16000
    wave = sum(np.sin(2 * np.pi * f * t) for f in (220, 440, 660)) * 6000
    return (wave + rng.normal(0, 50, t.shape)).clip(-32768, 32767).astype(np.int16)


def int32(rng: np.random.Generator) -> np.ndarray:
    """A superpixel label map: region ids constant over blocks of pixels."""
    y, x = np.mgrid[0:192, 0:192]
    return ((y // 12) * 16 + (x // 12) + int(rng.integers(0, 1000))).astype(np.int32).ravel()


def uint16(rng: np.random.Generator) -> np.ndarray:
    """A depth map in millimetres."""
    return (smooth_image(rng, 1, 160) * 1500 + 2000).clip(0, 65535).astype(np.uint16).ravel()


def uint32(rng: np.random.Generator) -> np.ndarray:
    """Per-bin event counts: a histogram with a long tail."""
    return rng.poisson(np.linspace(1, 5000, 20000)).astype(np.uint32)


def uint64(rng: np.random.Generator) -> np.ndarray:
    """Record ids (below 2**53, so that JSON carries them exactly), sorted as an index is."""
    return np.sort(rng.integers(0, 2**53, 8192, dtype=np.uint64))


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
    "FP64": ("identity_fp64", fp64),
    "INT8": ("identity_int8", int8),
    "INT16": ("identity_int16", int16),
    "INT32": ("identity_int32", int32),
    "UINT16": ("identity_uint16", uint16),
    "UINT32": ("identity_uint32", uint32),
    "UINT64": ("identity_uint64", uint64),
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


def triton_cases(rng: np.random.Generator):
    """The cases of the Triton identity models: (tensor label, model, inputs, {output name:
    expected array})."""
    for label, (model, make) in SINGLE.items():
        array = make(rng)
        yield label, model, {"INPUT": array}, {"OUTPUT": array}
    arrays = multi(rng)
    yield "MULTI(FP32+UINT8+INT64+BYTES)", "identity_multi", arrays, {f"{k}_out": v for k, v in arrays.items()}


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality (dtype, shape and every byte; element-wise for BYTES)."""
    if a is None or b is None or a.shape != b.shape:
        return False
    if a.dtype == np.object_ or b.dtype == np.object_:
        return [bytes(x) for x in a.ravel()] == [bytes(x) for x in b.ravel()]
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()
