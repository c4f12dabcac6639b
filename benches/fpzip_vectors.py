#!/usr/bin/env python3
"""Makes the fpzip test vectors in tests/fixtures/fpzip/ with the reference library (LLNL fpzip,
as bundled by the PyPI package `fpzip`, built with FPZIP_FP_FAST and block size 0x1000 like Draw
Things' own copy):

    pip install fpzip==1.2.5 numpy
    python3 benches/fpzip_vectors.py

Each case NAME is an array of shape (nf, H, W, C) in C order, which the library stores as
nx = C, ny = W, nz = H, nf = nf, the order Draw Things uses for its NHWC image tensors. It writes
NAME.f32 (the input, little-endian f32) and NAME.fpz (the library's stream, header included), and
one line per case in cases.txt: `NAME nx ny nz nf precision`; and doubles_2x2x3.fpz, a stream
of f64 values, which drawdrop refuses. The script checks that the library
gives back the input with the bits below the precision cleared (precision 0 or 32: exactly the
input), which is what the Rust tests then expect of our decoder. The tests never run Python.
"""
import os
import sys

import fpzip
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "fpzip")


def f16_image(values):
    """Pixels in [-1, 1] as Draw Things sends them: f16, widened to f32 (exactly)."""
    return np.asarray(values, dtype=np.float32).astype(np.float16).astype(np.float32)


def from_bytes(pixels):
    return f16_image(pixels.astype(np.float32) * 2.0 / 255.0 - 1.0)


def gradient(nf, h, w, c):
    f, y, x, ch = np.meshgrid(
        np.arange(nf), np.arange(h), np.arange(w), np.arange(c), indexing="ij"
    )
    return (np.sin(x * 0.31 + ch * 0.7 + f) * np.cos(y * 0.23) * 0.9).astype(np.float32)


def smooth_image(rng, h, w):
    """A photo-like picture: smooth shapes plus a little sensor noise, as bytes."""
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    base = np.stack(
        [
            128 + 100 * np.sin(x / 9.0) * np.cos(y / 13.0),
            128 + 90 * np.cos((x + y) / 17.0),
            128 + 80 * np.sin(np.hypot(x - w / 2, y - h / 2) / 7.0),
        ],
        axis=-1,
    )
    noisy = base + rng.normal(0, 3, base.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)[np.newaxis]


def wide_range(rng, shape):
    """Values over many binades, subnormals and both zeros included (no infinities, no NaN)."""
    mantissa = rng.integers(0, 1 << 23, size=shape, dtype=np.uint32)
    exponent = rng.integers(0, 148, size=shape, dtype=np.uint32)  # 0 = subnormal .. 2^20
    sign = rng.integers(0, 2, size=shape, dtype=np.uint32) << 31
    bits = sign | (exponent << 23) | mantissa
    bits.flat[0] = 0x80000000  # -0.0
    bits.flat[1] = 0x00000000  # +0.0
    bits.flat[2] = 0x00000001  # the smallest subnormal
    return bits.view(np.float32)


def cases():
    rng = np.random.default_rng(20261201)
    shape8 = (1, 8, 8, 3)
    zeros = np.zeros(shape8, dtype=np.float32)
    zeros.flat[1::2] = -0.0
    zeros.flat[5::7] = -1.0
    yield "constant_8x8x3_p32", np.full(shape8, 0.25, dtype=np.float32), 32
    yield "constant_8x8x3_p0", np.full(shape8, -0.75, dtype=np.float32), 0
    yield "signed_zeros_8x8x3_p32", zeros, 32
    yield "gradient_8x8x3_p32", gradient(*shape8), 32
    yield "gradient_8x8x3_p12", gradient(*shape8), 12
    yield "gradient_8x8x3_p8", gradient(*shape8), 8
    yield "gradient_8x8x3_p3", gradient(*shape8), 3
    yield "noise_8x8x3_p32", rng.uniform(-1, 1, shape8).astype(np.float32), 32
    yield "wide_range_8x8x3_p32", wide_range(rng, shape8), 32
    yield "image_noise_8x8x3_p19", from_bytes(rng.integers(0, 256, shape8)), 19
    yield "image_bounds_8x8x3_p19", f16_image(rng.choice([-1.0, 1.0, 0.0, -0.0], shape8)), 19
    yield "odd_5x7x3_p32", rng.uniform(-1, 1, (1, 5, 7, 3)).astype(np.float32), 32
    yield "odd_5x7x3_p19", from_bytes(rng.integers(0, 256, (1, 5, 7, 3))), 19
    yield "fields_2x4x4x3_p32", gradient(2, 4, 4, 3), 32
    yield "image_64x64x3_p19", from_bytes(smooth_image(rng, 64, 64)), 19


def truncated(values, precision):
    bits = values.view(np.uint32)
    shift = 0 if precision in (0, 32) else 32 - precision
    return ((bits >> shift) << shift).view(np.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = []
    total = 0
    for name, values, precision in cases():
        values = np.ascontiguousarray(values, dtype=np.float32)
        stream = fpzip.compress(values, precision=precision, order="C")
        back = fpzip.decompress(stream, order="C")
        expected = truncated(values, precision)
        if back.tobytes() != expected.tobytes():
            sys.exit(f"{name}: the library did not give back the truncated input")
        with open(os.path.join(OUT, name + ".f32"), "wb") as f:
            f.write(values.astype("<f4").tobytes())
        with open(os.path.join(OUT, name + ".fpz"), "wb") as f:
            f.write(stream)
        nf, nz, ny, nx = values.shape
        lines.append(f"{name} {nx} {ny} {nz} {nf} {precision}")
        total += values.nbytes + len(stream)
    # A stream of doubles, which drawdrop refuses (Draw Things never sends them).
    doubles = fpzip.compress(gradient(1, 2, 2, 3).astype(np.float64), precision=0, order="C")
    with open(os.path.join(OUT, "doubles_2x2x3.fpz"), "wb") as f:
        f.write(doubles)
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("# name nx ny nz nf precision (made by benches/fpzip_vectors.py)\n")
        f.write("\n".join(lines) + "\n")
    print(f"{len(lines)} cases, {total} bytes, in {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
