"""Writes the link benchmark's tensors: real photographs shipped with scikit-image, turned
into what vision models send and receive over gRPC. No random data: every value comes
from an image, a filter of one, or a segmentation of one.

Usage: python tensors.py OUTDIR      (run with .venvs/skimage/bin/python)

OUTDIR/NAME.npy for each tensor below, and OUTDIR/manifest.json: name -> dtype, shape,
bytes and a one-line description. The client reads them with numpy alone, so the
benchmark's client environment (.venvs/pytriton) needs no scikit-image.
"""

import json
import os
import sys

import numpy as np
import skimage.data
from scipy.signal import fftconvolve
from skimage.color import gray2rgb, rgb2gray
from skimage.filters import gabor_kernel, threshold_local, threshold_multiotsu, threshold_otsu
from skimage.segmentation import slic
from skimage.transform import resize

# Colour photographs, as decoded by an image pipeline (uint8 HxWx3).
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
          "retina", "stereo_motorcycle"]
# Greyscale scenes and textures.
GREYS = ["camera", "moon", "coins", "brick", "grass", "gravel", "cell", "clock"]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def load(name: str) -> np.ndarray:
    image = getattr(skimage.data, name)()
    return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)


def rgb(name: str) -> np.ndarray:
    image = load(name)
    return gray2rgb(image) if image.ndim == 2 else image[..., :3]


def grey(name: str) -> np.ndarray:
    image = load(name)
    return rgb2gray(image[..., :3]) if image.ndim == 3 else image.astype(np.float64) / 255.0


def resize_crop_u8(image: np.ndarray, side: int) -> np.ndarray:
    """What torchvision's Resize(side) + CenterCrop(side) does to a uint8 image, kept uint8
    (a pipeline decodes and resizes in 8 bits before it normalises)."""
    h, w = image.shape[:2]
    scale = side / min(h, w)
    nh, nw = max(side, round(h * scale)), max(side, round(w * scale))
    resized = resize(image, (nh, nw) + image.shape[2:], order=1, preserve_range=True, anti_aliasing=True)
    top, left = (nh - side) // 2, (nw - side) // 2
    return np.clip(np.rint(resized[top:top + side, left:left + side]), 0, 255).astype(np.uint8)


def square_grey(name: str, side: int) -> np.ndarray:
    image = grey(name)
    return resize_crop_u8(np.clip(image * 255, 0, 255), side).astype(np.float64) / 255.0


def video_frames() -> np.ndarray:
    """A 12-frame clip, 360x640 RGB uint8: a camera panning across a street scene while the
    exposure drifts, as a decoder hands frames to a detection model."""
    scene = rgb("stereo_motorcycle")  # 500 x 741
    frames = []
    for k in range(12):
        top, left = 6 * k, 8 * k
        crop = scene[top:top + 360, left:left + 640].astype(np.float32)
        frames.append(np.clip(np.rint(crop * (1.0 + 0.012 * k)), 0, 255).astype(np.uint8))
    return np.stack(frames)


def imagenet_batch() -> np.ndarray:
    """NCHW float32, 8 photographs resized to 384x384 and ImageNet-normalised (14.2 MB)."""
    images = [resize_crop_u8(rgb(name), 384).astype(np.float32) / 255.0 for name in PHOTOS]
    batch = (np.stack(images) - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def activations() -> np.ndarray:
    """(2, 64, 112, 112) float32: what a first convolution + batch norm + ReLU gives for two
    224x224 images. The 64 filters are Gabor kernels (16 orientations x 4 frequencies),
    applied with stride 2; each channel is standardised and shifted by its own bias before
    the ReLU, so most values (about three quarters) are exact zeros."""
    kernels = [np.real(gabor_kernel(frequency, theta=np.pi * o / 16, n_stds=2))
               for frequency in (0.08, 0.15, 0.25, 0.35) for o in range(16)]
    biases = np.linspace(-0.2, 1.0, len(kernels))
    out = []
    for name in ("camera", "astronaut"):
        image = square_grey(name, 224)
        channels = []
        for kernel, bias in zip(kernels, biases):
            response = fftconvolve(image, kernel, mode="same")[::2, ::2]
            response = (response - response.mean()) / (response.std() + 1e-12)
            channels.append(np.maximum(response - bias, 0.0))
        out.append(np.stack(channels))
    return np.stack(out).astype(np.float32)


def masks() -> np.ndarray:
    """(16, 512, 512) bool: foreground masks of 16 images, by Otsu's threshold for half of
    them and a local (adaptive) threshold for the other half."""
    out = []
    for i, name in enumerate(PHOTOS + GREYS):
        image = square_grey(name, 512)
        if i % 2 == 0:
            out.append(image > threshold_otsu(image))
        else:
            out.append(image > threshold_local(image, block_size=51, offset=0.01))
    return np.stack(out)


def superpixels() -> np.ndarray:
    """(4, 512, 512) int32: SLIC superpixel labels of four photographs (instance ids)."""
    out = []
    for name in PHOTOS[:4]:
        image = resize_crop_u8(rgb(name), 512)
        out.append(slic(image, n_segments=600, compactness=10, start_label=1).astype(np.int32))
    return np.stack(out)


def classes() -> np.ndarray:
    """(8, 512, 512) uint8: per-pixel class maps (0-4) of eight photographs, from a
    five-class multi-Otsu segmentation, as a semantic segmentation model answers."""
    out = []
    for name in PHOTOS:
        image = square_grey(name, 512)
        out.append(np.digitize(image, bins=threshold_multiotsu(image, classes=5)).astype(np.uint8))
    return np.stack(out)


# name -> (maker, description). The client's --tensors picks among these names.
TENSORS = {
    "frames_u8": (video_frames, "video clip, 12 RGB frames 360x640, uint8 NHWC"),
    "imagenet_f32": (imagenet_batch, "8 photos 384x384, ImageNet-normalised, fp32 NCHW"),
    "imagenet_f16": (lambda: imagenet_batch().astype(np.float16), "the same batch in fp16"),
    "activations_f32": (activations, "conv1 + BN + ReLU of 2 images, fp32 (2,64,112,112)"),
    "masks_bool": (masks, "16 foreground masks 512x512 (Otsu / local threshold), bool"),
    "superpixels_i32": (superpixels, "SLIC superpixel labels of 4 photos 512x512, int32"),
    "classes_u8": (classes, "5-class segmentation maps of 8 photos 512x512, uint8"),
}


def main() -> int:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    manifest = {}
    for name, (make, description) in TENSORS.items():
        array = np.ascontiguousarray(make())
        np.save(os.path.join(out, f"{name}.npy"), array)
        zeros = float(np.count_nonzero(array == 0)) / array.size
        manifest[name] = {"dtype": array.dtype.name, "shape": list(array.shape), "bytes": array.nbytes,
                          "zero_fraction": round(zeros, 3), "description": description}
        print(f"{name:16} {array.dtype.name:8} {str(array.shape):22} {array.nbytes / 1e6:6.2f} MB"
              f"  zeros {zeros:5.1%}  {description}")
    tmp = os.path.join(out, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(out, "manifest.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
