"""Writes the arrays the tuner, .npy reader and `bloscar bench` tests read, with numpy itself.

Usage: python tests/python/arrays.py OUTDIR   (run with .venvs/skimage/bin/python)

OUTDIR/npy/      small arrays of every supported dtype in .npy format versions 1.0, 2.0
                 and 3.0, each beside NAME.bin (its raw C-order bytes) and a manifest
                 (manifest.json: name -> dtype, shape); plus arrays the reader must refuse.
OUTDIR/images/   real images shipped with scikit-image, as a model would receive them,
                 and JPEG-encoded bytes (Pillow) stored as uint8 arrays.
"""

import io
import json
import os
import sys

import numpy as np
import skimage.data
from numpy.lib import format as npy_format
from PIL import Image


def write(path, array, version):
    with open(path, "wb") as f:
        npy_format.write_array(f, array, version=version)


def npy_fixtures(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    manifest = {}
    dtypes = ["?", "u1", "i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8",
              "<f2", "<f4", "<f8", "<c8", "<c16"]
    shapes = [(), (0,), (5,), (2, 3), (2, 0, 4), (3, 4, 5)]
    for version in [(1, 0), (2, 0), (3, 0)]:
        for dt in dtypes:
            for shape in shapes:
                a = (rng.standard_normal(shape) * 100).astype(dt)
                name = "v%d_%s_%s" % (version[0], np.dtype(dt).name, "x".join(map(str, shape)) or "scalar")
                write(os.path.join(out, name + ".npy"), a, version)
                with open(os.path.join(out, name + ".bin"), "wb") as f:
                    f.write(np.ascontiguousarray(a).tobytes())
                manifest[name] = {"descr": a.dtype.str, "shape": list(shape)}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    refuse = os.path.join(out, "refused")
    os.makedirs(refuse, exist_ok=True)
    a = np.arange(12, dtype="<f4").reshape(3, 4)
    np.save(os.path.join(refuse, "big_endian.npy"), a.astype(">f4"))
    np.save(os.path.join(refuse, "fortran.npy"), np.asfortranarray(a))
    np.save(os.path.join(refuse, "strings.npy"), np.array(["a", "bc"]))
    np.save(os.path.join(refuse, "structured.npy"), np.zeros(3, dtype=[("x", "<f4"), ("y", "<i4")]))
    np.save(os.path.join(refuse, "objects.npy"), np.array([1, "a"], dtype=object), allow_pickle=True)


def jpeg_bytes(image, quality):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def images(out):
    os.makedirs(out, exist_ok=True)
    astronaut = skimage.data.astronaut()  # 512 x 512 x 3, uint8
    np.save(os.path.join(out, "astronaut_u8.npy"), astronaut)
    # What a vision model receives: a normalised float32 NCHW batch.
    batch = (astronaut.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)[None, :, None, None]
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)[None, :, None, None]
    np.save(os.path.join(out, "astronaut_f32.npy"), np.ascontiguousarray((batch - mean) / std))
    np.save(os.path.join(out, "camera_u8.npy"), skimage.data.camera())
    np.save(os.path.join(out, "astronaut_jpeg.npy"), jpeg_bytes(astronaut, 90))
    np.save(os.path.join(out, "coffee_jpeg.npy"), jpeg_bytes(skimage.data.coffee(), 90))


if __name__ == "__main__":
    root = sys.argv[1]
    npy_fixtures(os.path.join(root, "npy"))
    images(os.path.join(root, "images"))
